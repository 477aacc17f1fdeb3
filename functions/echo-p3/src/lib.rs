//! `echo-p3`: a WASI 0.3 (`wasi:http/service`) test function, built with the `wasip3` crate.
//!
//! - `POST /echo` streams the request body back chunk by chunk as it arrives (bodies both ways,
//!   never held whole); `x-echo-bytes` trailer-free, the length is the client's to check.
//! - `GET /count` answers how many requests this instance has served: always 1 with fresh
//!   instances, counting up only when the function opted in to instance reuse.
//! - `GET /bytes?n=N` answers N bytes of `x`, written in 64 KiB chunks.
//! - `GET /sleep?ms=N` waits N ms on the WASI 0.3 monotonic clock, then answers.
//! - `GET /spin` loops forever (the host's timeout must stop it).
//! - `GET /alloc?mib=N` allocates and touches N MiB (the memory limit must stop it).
//! - `GET /env?name=X` answers the environment variable X.
//! - `GET /log?TEXT` prints `echo-p3 says TEXT` to stdout (the function's log).
//! - anything else: `echo-p3` and the method and path.

use std::sync::atomic::{AtomicU64, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

struct Echo;

wasip3::http::service::export!(Echo);

/// Requests this instance has served.
static SERVED: AtomicU64 = AtomicU64::new(0);

const CHUNK: usize = 64 * 1024;

impl wasip3::exports::http::handler::Guest for Echo {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        let param = |name: &str| -> Option<u64> {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.parse().ok())
        };
        match (request.get_method(), path) {
            (Method::Post, "/echo") => {
                let (result, result_rx) = wit_future::new(|| Ok(()));
                drop(result);
                let (mut body, _trailers) = Request::consume_body(request, result_rx);
                streamed("application/octet-stream", async move |out| {
                    let mut buf = Vec::with_capacity(CHUNK);
                    loop {
                        let (status, chunk) = body.read(buf).await;
                        if chunk.is_empty() && !matches!(status, StreamResult::Complete(_)) {
                            break;
                        }
                        let rest = out.write_all(chunk).await;
                        if !rest.is_empty() {
                            break; // the client went away
                        }
                        buf = Vec::with_capacity(CHUNK);
                    }
                })
            }
            (_, "/count") => text(format!("{served}\n")),
            (_, "/bytes") => {
                let mut left = param("n").unwrap_or(0) as usize;
                streamed("application/octet-stream", async move |out| {
                    while left > 0 {
                        let n = left.min(CHUNK);
                        if !out.write_all(vec![b'x'; n]).await.is_empty() {
                            break;
                        }
                        left -= n;
                    }
                })
            }
            (_, "/sleep") => {
                let ms = param("ms").unwrap_or(0);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                text(format!("slept {ms} ms\n"))
            }
            (_, "/spin") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            (_, "/alloc") => {
                let mib = param("mib").unwrap_or(1) as usize;
                let mut held = vec![0u8; mib << 20];
                for page in held.chunks_mut(4096) {
                    page[0] = 1;
                }
                text(format!("allocated {} MiB\n", std::hint::black_box(held).len() >> 20))
            }
            (_, "/log") => {
                println!("echo-p3 says {query}");
                text("logged\n".to_string())
            }
            (_, "/env") => {
                let name = query.strip_prefix("name=").unwrap_or_default();
                text(format!("{}\n", std::env::var(name).unwrap_or_default()))
            }
            (method, path) => text(format!("echo-p3 {method:?} {path}\n")),
        }
    }
}

fn text(body: String) -> Result<Response, ErrorCode> {
    let body = body.into_bytes();
    streamed("text/plain; charset=utf-8", async move |out| {
        out.write_all(body).await;
    })
}

/// A response whose body `write` produces after the head is returned.
fn streamed(
    content_type: &str,
    write: impl AsyncFnOnce(&mut wasip3::wit_bindgen::StreamWriter<u8>) + 'static,
) -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        content_type.as_bytes().to_vec(),
    )])
    .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let (mut contents, contents_rx) = wit_stream::new();
    let (trailers, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(contents_rx), trailers_rx);
    drop(trailers);
    wasip3::spawn_local(async move {
        write(&mut contents).await;
    });
    Ok(response)
}
