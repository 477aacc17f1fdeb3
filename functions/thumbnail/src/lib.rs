//! `thumbnail`: centre-crops and resizes an image (JPEG, PNG or WebP) and stamps a
//! semi-transparent "fnhost" watermark in the corner, answering the result: JPEG for JPEG
//! input, PNG otherwise (with `fnhost-output-key` renaming a `.webp` key to `.png`).
//!
//! Size: `?size=WxH` on the request, else the `THUMBNAIL_SIZE` env var, else 256x256. Used by
//! object triggers (the body is the uploaded object) and over plain HTTP:
//! `curl --data-binary @a.jpg http://HOST/thumbnail/`. Anything that is not a decodable image
//! gets 400 with the decoder's reason.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{ImageFormat, Rgba, RgbaImage};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const DEFAULT_SIZE: (u32, u32) = (256, 256);
const MAX_SIZE: u32 = 4096;

struct Thumbnail;

wasip2::http::proxy::export!(Thumbnail);

impl wasip2::exports::http::incoming_handler::Guest for Thumbnail {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request
            .path_with_query()
            .and_then(|p| p.split_once('?').map(|(_, q)| q.to_string()))
            .unwrap_or_default();
        let subject = header(&request, "ce-subject");
        let size = match size(&query) {
            Ok(size) => size,
            Err(e) => return respond(out, 400, "text/plain", e.as_bytes(), None),
        };
        let input = read_body(request);
        match thumbnail(&input, size) {
            Ok((bytes, content_type, extension)) => {
                // Tell the trigger where to store the result when the format changed.
                let output_key = subject.and_then(|key| rename(&key, extension));
                respond(out, 200, content_type, &bytes, output_key)
            }
            Err(e) => respond(out, 400, "text/plain", e.as_bytes(), None),
        }
    }
}

/// The thumbnail's bytes, content type and file extension.
fn thumbnail(input: &[u8], (width, height): (u32, u32)) -> Result<(Vec<u8>, &'static str, &'static str), String> {
    if input.is_empty() {
        return Err("send an image (JPEG, PNG or WebP) as the request body".into());
    }
    let format = image::guess_format(input)
        .map_err(|_| "not a supported image: expected JPEG, PNG or WebP".to_string())?;
    let decoded = image::load_from_memory_with_format(input, format)
        .map_err(|e| format!("the image could not be decoded: {e}"))?;
    let (w, h) = (decoded.width(), decoded.height());
    // Centre crop to the target's aspect ratio, then resize.
    let (crop_w, crop_h) = if u64::from(w) * u64::from(height) > u64::from(h) * u64::from(width) {
        ((u64::from(h) * u64::from(width) / u64::from(height)).max(1) as u32, h)
    } else {
        (w, (u64::from(w) * u64::from(height) / u64::from(width)).max(1) as u32)
    };
    let cropped = decoded.crop_imm((w - crop_w) / 2, (h - crop_h) / 2, crop_w, crop_h);
    let mut resized = imageops::resize(&cropped.to_rgba8(), width, height, FilterType::Triangle);
    watermark(&mut resized);
    let mut bytes = Vec::new();
    let (out_format, content_type, extension) = match format {
        ImageFormat::Jpeg => (ImageFormat::Jpeg, "image/jpeg", "jpg"),
        _ => (ImageFormat::Png, "image/png", "png"),
    };
    let encoded = if out_format == ImageFormat::Jpeg {
        image::DynamicImage::ImageRgba8(resized)
            .to_rgb8()
            .write_to(&mut Cursor::new(&mut bytes), out_format)
    } else {
        resized.write_to(&mut Cursor::new(&mut bytes), out_format)
    };
    encoded.map_err(|e| format!("encoding the thumbnail failed: {e}"))?;
    Ok((bytes, content_type, extension))
}

/// `WxH` from `?size=`, else `THUMBNAIL_SIZE`, else the default.
fn size(query: &str) -> Result<(u32, u32), String> {
    let from_query = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("size="))
        .map(str::to_string);
    let Some(text) = from_query.or_else(|| std::env::var("THUMBNAIL_SIZE").ok()) else {
        return Ok(DEFAULT_SIZE);
    };
    let parsed = text
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| (1..=MAX_SIZE).contains(&w) && (1..=MAX_SIZE).contains(&h));
    parsed.ok_or_else(|| format!("size {text:?} must be WIDTHxHEIGHT, each 1 to {MAX_SIZE}"))
}

/// "fnhost" in a 5x7 pixel font, scaled to the image, white at 55 % opacity over a dark band
/// in the bottom-right corner.
fn watermark(image: &mut RgbaImage) {
    const GLYPHS: [(char, [u8; 7]); 6] = [
        ('f', [0b00110, 0b01000, 0b11110, 0b01000, 0b01000, 0b01000, 0b01000]),
        ('n', [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001]),
        ('h', [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001]),
        ('o', [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110]),
        ('s', [0b00000, 0b00000, 0b01111, 0b10000, 0b01110, 0b00001, 0b11110]),
        ('t', [0b01000, 0b01000, 0b11110, 0b01000, 0b01000, 0b01001, 0b00110]),
    ];
    let text = "fnhost";
    let scale = (image.width().min(image.height()) / 96).max(1);
    let (glyph_w, glyph_h) = (6 * scale, 7 * scale);
    let text_w = glyph_w * text.len() as u32;
    let margin = 2 * scale;
    if text_w + 2 * margin > image.width() || glyph_h + 2 * margin > image.height() {
        return;
    }
    let x0 = image.width() - text_w - margin;
    let y0 = image.height() - glyph_h - margin;
    for y in y0.saturating_sub(scale)..image.height().min(y0 + glyph_h + scale) {
        for x in x0.saturating_sub(scale)..image.width() {
            blend(image.get_pixel_mut(x, y), Rgba([0, 0, 0, 255]), 0.25);
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let rows = GLYPHS.iter().find(|(c, _)| *c == ch).map(|(_, rows)| rows).unwrap();
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5u32 {
                if bits & (1 << (4 - col)) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = x0 + i as u32 * glyph_w + col * scale + dx;
                        let y = y0 + row as u32 * scale + dy;
                        blend(image.get_pixel_mut(x, y), Rgba([255, 255, 255, 255]), 0.55);
                    }
                }
            }
        }
    }
}

fn blend(pixel: &mut Rgba<u8>, over: Rgba<u8>, alpha: f32) {
    for c in 0..3 {
        pixel[c] = (pixel[c] as f32 * (1.0 - alpha) + over[c] as f32 * alpha).round() as u8;
    }
}

/// `img/a.webp` -> `img/a.png` when the extension changes; `None` when it stays.
fn rename(key: &str, extension: &str) -> Option<String> {
    let (stem, current) = key.rsplit_once('.')?;
    let same = current.eq_ignore_ascii_case(extension)
        || (extension == "jpg" && current.eq_ignore_ascii_case("jpeg"));
    (!same).then(|| format!("{stem}.{extension}"))
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    let Ok(stream) = body.stream() else {
        return bytes;
    };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    bytes
}

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8], output_key: Option<String>) {
    let mut headers = vec![("content-type".to_string(), content_type.as_bytes().to_vec())];
    if let Some(key) = output_key {
        headers.push(("fnhost-output-key".to_string(), key.into_bytes()));
    }
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid headers"));
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken once");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("client went away");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("body finishes once");
}
