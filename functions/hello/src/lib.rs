//! `hello`: answers every request with a greeting taken from the `GREETING` environment
//! variable, so two versions of the same code can be told apart by their config alone.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasip2::http::proxy::export!(Hello);

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
        let body = format!("{greeting}, world!\n");
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("static header is valid");
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(body.as_bytes())
            .expect("client went away");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("body finishes once");
    }
}
