//! `transcode`: Y4M video in, AV1 (in IVF) out, encoded with rav1e in the function itself.
//!
//! The body is the raw clip (8-bit 4:2:0 Y4M, as `ffmpeg -pix_fmt yuv420p -f yuv4mpegpipe`
//! writes). `?speed=N` picks rav1e's preset (0 best .. 10 fastest, the default). The answer
//! is the AV1 stream with `x-frames` and `x-encode-ms`; its `fnhost-output-key` names the
//! output object after the input (`replays/a.y4m` -> `replays/a.ivf`) when an object
//! trigger sent it, or `?key=` when given, so it works both from a bucket trigger and as an
//! asynchronous invocation with a bucket destination. A clip it cannot read gets 400 (not
//! worth retrying).

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Transcode;

wasip2::http::proxy::export!(Transcode);

impl wasip2::exports::http::incoming_handler::Guest for Transcode {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request
            .path_with_query()
            .and_then(|p| p.split_once('?').map(|(_, q)| q.to_string()))
            .unwrap_or_default();
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        let speed = match param("speed").map(|s| s.parse::<u8>()) {
            None => 10,
            Some(Ok(speed)) if speed <= 10 => speed,
            Some(_) => return respond(out, 400, "text/plain", b"speed is 0 to 10", &[]),
        };
        let output_key = param("key").or_else(|| {
            header(&request, "ce-subject").map(|subject| match subject.rsplit_once('.') {
                Some((stem, _)) => format!("{stem}.ivf"),
                None => format!("{subject}.ivf"),
            })
        });
        let input = read_body(request);
        let started = std::time::Instant::now();
        match transcode_core::transcode(&input, speed) {
            Ok(encoded) => {
                let millis = started.elapsed().as_millis().to_string();
                let mut headers = vec![
                    ("x-frames", encoded.frames.to_string()),
                    ("x-encode-ms", millis),
                    ("x-resolution", format!("{}x{}", encoded.width, encoded.height)),
                ];
                if let Some(key) = output_key {
                    headers.push(("fnhost-output-key", key));
                }
                respond(out, 200, "video/x-ivf", &encoded.ivf, &headers)
            }
            Err(e) => respond(out, 400, "text/plain", e.as_bytes(), &[]),
        }
    }
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
    while let Ok(chunk) = stream.blocking_read(256 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    bytes
}

fn respond(
    out: ResponseOutparam,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, String)],
) {
    let mut headers = vec![("content-type".to_string(), content_type.as_bytes().to_vec())];
    for (name, value) in extra {
        headers.push((name.to_string(), value.clone().into_bytes()));
    }
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid headers"));
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken once");
    for chunk in body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}
