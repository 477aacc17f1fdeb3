//! `hello-p3`: the `hello` sample in the WASI 0.3 world (`wasi:http/service`, built with the
//! `wasip3` crate): the same greeting from the `GREETING` environment variable, so a 0.2 and a
//! 0.3 version of one function can be told apart, and the load benchmark runs both worlds.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Hello;

wasip3::http::service::export!(Hello);

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(_request: Request) -> Result<Response, ErrorCode> {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
        let body = format!("{greeting}, world!\n").into_bytes();
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("static header is valid");
        let (mut contents, contents_rx) = wit_stream::new();
        let (trailers, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(contents_rx), trailers_rx);
        drop(trailers);
        // The body is written after the response is returned: the host streams it as it comes.
        wasip3::spawn_local(async move {
            contents.write_all(body).await;
        });
        Ok(response)
    }
}
