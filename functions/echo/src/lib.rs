//! `echo`: reflects the request back. The method, path-with-query and request headers come back
//! as `echo-method`, `echo-path` and `echo-headers` (a JSON object, ASCII-escaped) response
//! headers; the request body is streamed back as the response body, chunk by chunk, so large
//! bodies exercise streaming in both directions without buffering in the guest.

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use wasip2::io::streams::StreamError;

struct Echo;

wasip2::http::proxy::export!(Echo);

impl wasip2::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = method_name(&request.method());
        let path = request.path_with_query().unwrap_or_default();
        let headers_json = headers_as_json(&request.headers().entries());
        let mut reply = vec![
            ("echo-method".to_string(), method.into_bytes()),
            ("echo-path".to_string(), path.into_bytes()),
            ("echo-headers".to_string(), headers_json.into_bytes()),
        ];
        if let Some((_, ct)) = request
            .headers()
            .entries()
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            reply.push(("content-type".to_string(), ct));
        }
        let response = OutgoingResponse::new(Fields::from_list(&reply).expect("valid headers"));
        let outgoing = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));

        let incoming = request.consume().expect("body is consumed once");
        let input = incoming.stream().expect("stream is taken once");
        let output = outgoing.write().expect("stream is taken once");
        loop {
            match input.blocking_read(64 * 1024) {
                // blocking-write-and-flush takes at most 4096 bytes per call.
                Ok(chunk) => {
                    for part in chunk.chunks(4096) {
                        output
                            .blocking_write_and_flush(part)
                            .expect("client went away");
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    panic!("reading request body: {}", e.to_debug_string())
                }
            }
        }
        drop(input);
        IncomingBody::finish(incoming);
        drop(output);
        OutgoingBody::finish(outgoing, None).expect("body finishes once");
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// Renders headers as a JSON object of name -> list of values, escaping everything outside
/// printable ASCII so the result is a valid header value.
fn headers_as_json(entries: &[(String, Vec<u8>)]) -> String {
    let mut names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::from("{");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, name);
        out.push_str(":[");
        let values = entries.iter().filter(|(n, _)| n == name);
        for (j, (_, value)) in values.enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_json_string(&mut out, &String::from_utf8_lossy(value));
        }
        out.push(']');
    }
    out.push('}');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}
