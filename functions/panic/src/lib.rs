//! `panic` (test function): panics on every request, before sending a response. The host
//! must answer 500 with an error id and keep serving every other function.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Panic;

wasip2::http::proxy::export!(Panic);

impl wasip2::exports::http::incoming_handler::Guest for Panic {
    fn handle(request: IncomingRequest, _out: ResponseOutparam) {
        panic!(
            "panic function called with {}",
            request.path_with_query().unwrap_or_default()
        );
    }
}
