//! The native side of the transcoding benchmark: encodes the same synthetic clip the wasm
//! function gets, with the same encoder build, and prints frames per second.
//!
//! `cargo run --release --manifest-path functions/Cargo.toml -p transcode-core --bin
//! encode-bench -- [WIDTH HEIGHT FRAMES SPEED]` (default 320 240 30 10); `--write FILE`
//! writes the clip instead.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if args.first().map(String::as_str) == Some("--write") {
        let file = args.get(1).expect("--write FILE [WIDTH HEIGHT FRAMES]");
        let clip = transcode_core::synthetic_clip(number(2, 320), number(3, 240), number(4, 30));
        std::fs::write(file, clip).expect("writing the clip");
        return;
    }
    let (width, height, frames, speed) = (number(0, 320), number(1, 240), number(2, 30), number(3, 10));
    let clip = transcode_core::synthetic_clip(width, height, frames);
    let started = std::time::Instant::now();
    let encoded = transcode_core::transcode(&clip, speed as u8).expect("encoding");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "native: {} frames {}x{} at speed {speed} in {:.2} s: {:.1} frames/s, {} bytes of AV1",
        encoded.frames,
        encoded.width,
        encoded.height,
        seconds,
        encoded.frames as f64 / seconds,
        encoded.ivf.len()
    );
}
