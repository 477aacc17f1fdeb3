//! `flash-sale`: a stock counter in a `wasi:keyvalue` store that many clients buy from at
//! once. A purchase reads the stock with a compare-and-swap handle and writes it back one
//! lower only if nobody changed it meanwhile, retrying when it lost the race, so the stock
//! never goes below zero and every success took exactly one unit.
//!
//! - `POST /restock?n=N`: sets the stock to N.
//! - `POST /buy`: 200 `bought, N left`, or 409 `sold out`.
//! - `GET /stock`: the stock.
//! - `POST /count?by=N`: adds N to a counter with the atomic increment; answers the total.
//! - `GET|PUT|DELETE /kv/KEY`: one key of the store, for inspection.
//! - `GET /keys`: the store's keys, one per line.
//! - `GET /config/KEY`: a `wasi:config` value of the function's config (404 if unset).
//!
//! The store is `sale`, or the one named by the `KV_STORE` environment variable; the
//! function's config must list it (`fnhost deploy --kv sale`), else every call fails with
//! the host's `no-such-store`.

wit_bindgen::generate!({
    path: "../../wit/deps/keyvalue.wit",
    world: "wasi:keyvalue/imports",
});

/// `wasi:config`, for the sale's settings (`GET /config/KEY`).
mod runtime_config {
    wit_bindgen::generate!({
        path: "../../wit/deps/config.wit",
        world: "wasi:config/imports",
    });
    pub use self::wasi::config::store;
}

use wasi::keyvalue::atomics::{self, Cas, CasError};
use wasi::keyvalue::store::{self, Bucket};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Attempts before a purchase gives up under contention (each lost race re-reads).
const MAX_ATTEMPTS: u32 = 10_000;

struct FlashSale;

wasip2::http::proxy::export!(FlashSale);

impl wasip2::exports::http::incoming_handler::Guest for FlashSale {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match serve(&request) {
            Ok(answer) => answer,
            Err(message) => (500, format!("{message}\n").into_bytes()),
        };
        respond(out, status, &body);
    }
}

fn serve(request: &IncomingRequest) -> Result<(u16, Vec<u8>), String> {
    let path_query = request.path_with_query().unwrap_or_default();
    let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    if let Some(key) = path.strip_prefix("/config/") {
        return match runtime_config::store::get(key) {
            Ok(Some(value)) => Ok((200, value.into_bytes())),
            Ok(None) => Ok((404, b"not configured\n".to_vec())),
            Err(e) => Err(format!("wasi:config error: {e:?}")),
        };
    }
    let name = std::env::var("KV_STORE").unwrap_or_else(|_| "sale".to_string());
    let bucket = store::open(&name).map_err(|e| describe(&e))?;
    let method = request.method();
    match (method, path) {
        (Method::Post, "/restock") => {
            let n: i64 = param("n").and_then(|n| n.parse().ok()).ok_or("give ?n=N")?;
            bucket.set("stock", n.to_string().as_bytes()).map_err(|e| describe(&e))?;
            Ok((200, format!("stock {n}\n").into_bytes()))
        }
        (Method::Post, "/buy") => buy(&bucket),
        (Method::Get, "/stock") => {
            let stock = read_number(bucket.get("stock").map_err(|e| describe(&e))?)?;
            Ok((200, format!("{stock}\n").into_bytes()))
        }
        (Method::Post, "/count") => {
            let by: i64 = param("by").and_then(|n| n.parse().ok()).unwrap_or(1);
            let total = atomics::increment(&bucket, "count", by).map_err(|e| describe(&e))?;
            Ok((200, format!("{total}\n").into_bytes()))
        }
        (Method::Get, "/keys") => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor.as_deref()).map_err(|e| describe(&e))?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok((200, keys.iter().map(|k| format!("{k}\n")).collect::<String>().into_bytes()))
        }
        (method, path) if path.starts_with("/kv/") => {
            let key = &path["/kv/".len()..];
            match method {
                Method::Get => match bucket.get(key).map_err(|e| describe(&e))? {
                    Some(value) => Ok((200, value)),
                    None => Ok((404, b"no such key\n".to_vec())),
                },
                Method::Put => {
                    bucket.set(key, &read_body(request)?).map_err(|e| describe(&e))?;
                    Ok((200, b"stored\n".to_vec()))
                }
                Method::Delete => {
                    bucket.delete(key).map_err(|e| describe(&e))?;
                    Ok((200, b"deleted\n".to_vec()))
                }
                _ => Ok((405, b"GET, PUT or DELETE\n".to_vec())),
            }
        }
        _ => Ok((404, b"POST /restock?n=N, POST /buy, GET /stock, POST /count, /kv/KEY, GET /keys\n".to_vec())),
    }
}

/// Takes one unit of stock with compare-and-swap, retrying while other buyers win races.
fn buy(bucket: &Bucket) -> Result<(u16, Vec<u8>), String> {
    let mut cas = Cas::new(bucket, "stock").map_err(|e| describe(&e))?;
    for _ in 0..MAX_ATTEMPTS {
        let stock = read_number(cas.current().map_err(|e| describe(&e))?)?;
        if stock <= 0 {
            return Ok((409, b"sold out\n".to_vec()));
        }
        match atomics::swap(cas, (stock - 1).to_string().as_bytes()) {
            Ok(()) => return Ok((200, format!("bought, {} left\n", stock - 1).into_bytes())),
            Err(CasError::CasFailed(fresh)) => cas = fresh,
            Err(CasError::StoreError(e)) => return Err(describe(&e)),
        }
    }
    Ok((503, b"too much contention; try again\n".to_vec()))
}

fn read_number(value: Option<Vec<u8>>) -> Result<i64, String> {
    match value {
        None => Ok(0),
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .trim()
            .parse()
            .map_err(|_| "the stock is not a number".to_string()),
    }
}

fn describe(error: &store::Error) -> String {
    match error {
        store::Error::NoSuchStore => "key-value error: no such store (is it in the function's kv config?)".to_string(),
        store::Error::AccessDenied => "key-value error: access denied".to_string(),
        store::Error::Other(message) => format!("key-value error: {message}"),
    }
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request.consume().map_err(|()| "the body was taken")?;
    let stream = body.stream().map_err(|()| "the body stream was taken")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body: {e:?}")),
        }
    }
    Ok(bytes)
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("static header is valid");
    let response = OutgoingResponse::new(headers);
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
