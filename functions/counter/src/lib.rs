//! `counter`: counts the requests this instance has served in a global and a heap value and
//! answers with both. fnhost gives every request a fresh instance, so the answer must always
//! be `1 1`; anything else means state leaked from one request to the next.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

static SERVED: AtomicU32 = AtomicU32::new(0);
static HEAP: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Counter;

wasip2::http::proxy::export!(Counter);

impl wasip2::exports::http::incoming_handler::Guest for Counter {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
        let heap_len = {
            let mut heap = HEAP.lock().unwrap();
            heap.push(1);
            heap.len()
        };
        let body = format!("{served} {heap_len}\n");
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
