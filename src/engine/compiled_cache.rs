//! On-disk cache of compiled components: `<data-dir>/compiled/<sha256>-<engine>.cwasm`.
//!
//! The key pairs the module digest with a hash of everything that makes machine code
//! compatible (wasmtime version, settings, CPU features), so a host upgrade or a config change
//! misses the cache instead of loading incompatible code. Files are written once, atomically,
//! and never rewritten: wasmtime mmaps them and uses them as copy-on-write memory images.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::durable_file;
use crate::model::Digest;

pub struct CompiledCache {
    dir: PathBuf,
    /// 16 hex digits of the engine's compatibility hash.
    engine_key: String,
}

impl CompiledCache {
    pub fn open(dir: PathBuf, engine: &wasmtime::Engine) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        durable_file::remove_leftovers(&dir)?;
        let mut hasher = StableHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        let cache = Self { dir, engine_key };
        cache.remove_incompatible()?;
        Ok(cache)
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(self.file_name(digest))
    }

    /// The artifact's file name, which is also its name in the fleet's shared store: the
    /// engine hash in it keeps nodes of different builds apart.
    pub fn file_name(&self, digest: &Digest) -> String {
        format!("{}-{}.cwasm", digest.to_hex(), self.engine_key)
    }

    /// Drops an artifact that failed to load, so the next load recompiles.
    pub fn evict(&self, digest: &Digest) {
        let _ = fs::remove_file(self.path(digest));
    }

    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Digests with an artifact for this engine.
    pub fn digests(&self) -> io::Result<Vec<Digest>> {
        let suffix = format!("-{}.cwasm", self.engine_key);
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(digest) = name.strip_suffix(&suffix).and_then(Digest::from_hex) {
                out.push(digest);
            }
        }
        Ok(out)
    }

    /// Artifacts from another wasmtime build can never load again: reclaim their space.
    fn remove_incompatible(&self) -> io::Result<()> {
        let suffix = format!("-{}.cwasm", self.engine_key);
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".cwasm") && !name.ends_with(&suffix) {
                tracing::info!(file = %name, "removing compiled artifact of another engine build");
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Feeds `Hash` output into sha256: `DefaultHasher` is not stable across Rust releases, and
/// this key must stay the same across restarts of the same build.
struct StableHasher(Sha256);

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}
