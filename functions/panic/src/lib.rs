//! `panic` (test function): panics on every request. On `/after-head` it first sends a 200
//! head and part of the body, then panics, so the host must abort the response rather than end
//! it cleanly. Either way the host must keep serving every other function.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingResponse, ResponseOutparam,
};

struct Panic;

wasip2::http::proxy::export!(Panic);

impl wasip2::exports::http::incoming_handler::Guest for Panic {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path == "/after-head" {
            let response = OutgoingResponse::new(Fields::new());
            let body = response.body().expect("body is taken once");
            ResponseOutparam::set(out, Ok(response));
            let stream = body.write().expect("stream is taken once");
            stream
                .blocking_write_and_flush(b"partial ")
                .expect("client went away");
            drop(stream);
            let _unfinished = body;
        }
        panic!("panic function called with {path}");
    }
}
