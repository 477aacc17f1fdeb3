//! Builds the functions in `functions/` for wasm32-wasip2, once per process. Shared by the
//! integration tests and the benches (included with `#[path]`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of a function from `functions/`, built for wasm32-wasip2 (once per test process).
pub fn wasm_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("functions");
        let target = root.join("target");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("running cargo to build functions/");
        assert!(
            status.success(),
            "building functions/ failed; is the target installed? `rustup target add wasm32-wasip2`"
        );
        target.join("wasm32-wasip2").join("release")
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "no function {name} in functions/");
    path
}

pub fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(wasm_path(name)).unwrap()
}
