//! Y4M (raw 8-bit 4:2:0 video) to AV1 in an IVF container, with the rav1e encoder built in
//! pure Rust (single-threaded, no assembly), so the same code runs as a wasm function and
//! natively for comparison.

use rav1e::prelude::*;

/// An encoded clip.
pub struct Encoded {
    /// AV1 in IVF: a 32-byte file header, then each frame as a 12-byte header and its data.
    pub ivf: Vec<u8>,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
}

/// Encodes a whole Y4M clip at `speed` (0 slowest and best .. 10 fastest).
pub fn transcode(y4m_bytes: &[u8], speed: u8) -> Result<Encoded, String> {
    let mut decoder =
        y4m::decode(y4m_bytes).map_err(|e| format!("the input is not a Y4M clip: {e:?}"))?;
    let (width, height) = (decoder.get_width(), decoder.get_height());
    if decoder.get_bit_depth() != 8 {
        return Err(format!(
            "the clip has {}-bit samples; send 8-bit video",
            decoder.get_bit_depth()
        ));
    }
    match decoder.get_colorspace() {
        y4m::Colorspace::C420
        | y4m::Colorspace::C420jpeg
        | y4m::Colorspace::C420paldv
        | y4m::Colorspace::C420mpeg2 => {}
        other => {
            return Err(format!(
                "the clip is {other:?}; send 4:2:0 video (ffmpeg -pix_fmt yuv420p)"
            ));
        }
    }
    let framerate = decoder.get_framerate();
    let encoder = EncoderConfig {
        width,
        height,
        time_base: Rational::new(framerate.den as u64, framerate.num as u64),
        chroma_sampling: ChromaSampling::Cs420,
        speed_settings: SpeedSettings::from_preset(speed.min(10)),
        ..Default::default()
    };
    let config = Config::new().with_encoder_config(encoder).with_threads(1);
    let mut context: Context<u8> = config
        .new_context()
        .map_err(|e| format!("the encoder refused the clip's format: {e:?}"))?;
    let mut ivf = ivf_header(width, height, framerate.num as u32, framerate.den as u32);
    let mut sent = 0;
    let mut written = 0;
    loop {
        match decoder.read_frame() {
            Ok(frame) => {
                let mut input = context.new_frame();
                let planes = [frame.get_y_plane(), frame.get_u_plane(), frame.get_v_plane()];
                for (plane, data) in input.planes.iter_mut().zip(planes) {
                    let stride = plane.cfg.width;
                    plane.copy_from_raw_u8(data, stride, 1);
                }
                context
                    .send_frame(input)
                    .map_err(|e| format!("encoding frame {sent}: {e:?}"))?;
                sent += 1;
            }
            Err(y4m::Error::EOF) => break,
            Err(e) => return Err(format!("reading frame {sent}: {e:?}")),
        }
        written += drain(&mut context, &mut ivf)?;
    }
    context.flush();
    written += drain(&mut context, &mut ivf)?;
    let count = (written as u32).to_le_bytes();
    ivf[24..28].copy_from_slice(&count);
    Ok(Encoded {
        ivf,
        frames: written,
        width,
        height,
    })
}

/// Appends every packet the encoder has ready; returns how many.
fn drain(context: &mut Context<u8>, ivf: &mut Vec<u8>) -> Result<usize, String> {
    let mut count = 0;
    loop {
        match context.receive_packet() {
            Ok(packet) => {
                ivf.extend_from_slice(&(packet.data.len() as u32).to_le_bytes());
                ivf.extend_from_slice(&packet.input_frameno.to_le_bytes());
                ivf.extend_from_slice(&packet.data);
                count += 1;
            }
            Err(EncoderStatus::Encoded) => {}
            Err(EncoderStatus::NeedMoreData | EncoderStatus::LimitReached) => return Ok(count),
            Err(e) => return Err(format!("encoding: {e:?}")),
        }
    }
}

fn ivf_header(width: usize, height: usize, rate: u32, scale: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(32);
    header.extend_from_slice(b"DKIF");
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&32u16.to_le_bytes());
    header.extend_from_slice(b"AV01");
    header.extend_from_slice(&(width as u16).to_le_bytes());
    header.extend_from_slice(&(height as u16).to_le_bytes());
    header.extend_from_slice(&rate.to_le_bytes());
    header.extend_from_slice(&scale.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes()); // frame count, set at the end
    header.extend_from_slice(&0u32.to_le_bytes());
    header
}

/// A test clip in Y4M: a moving gradient with a bright square sweeping across and a little
/// noise, so frames differ like real video does (an encoder does almost nothing on a still).
pub fn synthetic_clip(width: usize, height: usize, frames: usize) -> Vec<u8> {
    let mut out = format!("YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    let mut seed: u32 = 0x1234_5678;
    for f in 0..frames {
        out.extend_from_slice(b"FRAME\n");
        let square = (f * 4) % width.max(1);
        for y in 0..height {
            for x in 0..width {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let inside = x >= square && x < square + width / 8 && y > height / 3 && y < height / 2;
                let base = if inside { 235 } else { ((x + y + f * 2) % 200 + 16) as u32 };
                out.push((base + (seed >> 29)).min(255) as u8);
            }
        }
        for plane in 0..2 {
            for y in 0..height.div_ceil(2) {
                for x in 0..width.div_ceil(2) {
                    out.push(((x * (plane + 1) + y + f) % 64 + 96) as u8);
                }
            }
        }
    }
    out
}
