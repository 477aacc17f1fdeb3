//! `hostile` (test function): misbehaves on purpose, one behaviour per path, so tests can check
//! the host contains each one and keeps serving everyone else.
//!
//! - `/loop`: spins forever (CPU-bound; stopped by the timeout or CPU budget)
//! - `/crunch?n=N`: N rounds of CPU-bound arithmetic, then answers (for throughput figures)
//! - `/hog`: allocates 1 MiB blocks without end (stopped by the memory limit)
//! - `/alloc?mib=N`: allocates and touches N MiB, answers their checksum, frees them (a
//!   big-memory job within its limit)
//! - `/recurse`: unbounded recursion (stack overflow)
//! - `/sleep?ms=N`: sleeps N ms in a host call (stopped by the wall-clock timeout)
//! - `/probe`: tries to read host files and environment; answers what it could see
//! - `/outbound?url=U`: makes an outbound HTTP GET; answers the status or the error
//! - `/flood?kib=N`: prints N KiB to stdout and stderr, then answers
//! - `/echo-size`: reads the whole request body and answers its length
//! - `/fields?n=N&kib=K`: creates N header-field resources of K KiB each and holds them all
//!   (host memory outside linear memory; stopped by the resource and field caps)
//! - any other path: answers 200 (naming the `VARIANT` env var, if set), or, driven by
//!   config (for rollout tests), waits `DELAY_MS` first and answers 500 for `FAIL_PERCENT`
//!   percent of requests (at random), or while its `fnhost-attempt` header is at most
//!   `FAIL_ATTEMPTS` (an event that fails twice, then succeeds); a request marked
//!   `fnhost-shadow` is logged as such

use std::io::Write;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

struct Hostile;

wasip2::http::proxy::export!(Hostile);

impl wasip2::exports::http::incoming_handler::Guest for Hostile {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_and_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query.as_str(), ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        let shadow = request
            .headers()
            .get("fnhost-shadow")
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let attempt: u64 = request
            .headers()
            .get("fnhost-attempt")
            .first()
            .and_then(|v| String::from_utf8_lossy(v).parse().ok())
            .unwrap_or(0);
        let answer = match path {
            "/loop" => spin(),
            "/crunch" => crunch(param("n").and_then(|v| v.parse().ok()).unwrap_or(10_000_000)),
            "/hog" => hog(),
            "/alloc" => alloc(param("mib").and_then(|v| v.parse().ok()).unwrap_or(1)),
            "/recurse" => format!("depth {}", recurse(1)),
            "/sleep" => {
                let ms: u64 = param("ms").and_then(|v| v.parse().ok()).unwrap_or(60_000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                format!("slept {ms} ms")
            }
            "/probe" => probe(),
            "/outbound" => outbound(&param("url").unwrap_or_default()),
            "/flood" => {
                let kib: usize = param("kib").and_then(|v| v.parse().ok()).unwrap_or(1024);
                let line = [b'x'; 1023];
                for _ in 0..kib {
                    let _ = std::io::stdout().write_all(&line).and_then(|_| std::io::stdout().write_all(b"\n"));
                    let _ = std::io::stderr().write_all(&line).and_then(|_| std::io::stderr().write_all(b"\n"));
                }
                format!("flooded {kib} KiB")
            }
            "/echo-size" => format!("{} bytes", body_len(request)),
            "/fields" => {
                let n: usize = param("n").and_then(|v| v.parse().ok()).unwrap_or(100_000);
                let kib: usize = param("kib").and_then(|v| v.parse().ok()).unwrap_or(60);
                fields(n, kib)
            }
            _ => {
                let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
                if let Some(ms) = env("DELAY_MS") {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                let fail = env("FAIL_PERCENT").unwrap_or(0);
                if let Some(value) = shadow {
                    println!("shadow request (fnhost-shadow: {value})");
                }
                if env("FAIL_ATTEMPTS").is_some_and(|n| attempt <= n) {
                    respond(out, 500, &format!("failing attempt {attempt} on purpose (FAIL_ATTEMPTS)"));
                    return;
                }
                if wasip2::random::random::get_random_u64() % 100 < fail {
                    respond(out, 500, "failing on purpose (FAIL_PERCENT)");
                    return;
                }
                let variant = std::env::var("VARIANT").unwrap_or_default();
                format!("paths: /loop /hog /recurse /sleep /probe /outbound /flood /echo-size {variant}")
            }
        };
        respond(out, 200, &answer);
    }
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream is taken once");
    for chunk in text.as_bytes().chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("client went away");
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("body finishes once");
}

fn fields(n: usize, kib: usize) -> String {
    let value = vec![b'v'; kib * 1024];
    let mut held = Vec::new();
    for i in 0..n {
        let fields = Fields::new();
        if let Err(e) = fields.append("x-big", &value) {
            return format!("field {i} refused: {e:?}");
        }
        held.push(fields);
    }
    format!("holding {} fields", held.len())
}

fn spin() -> String {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// CPU-bound work that finishes: `n` rounds of a multiply-add, for throughput figures.
fn crunch(n: u64) -> String {
    let mut x: u64 = 1;
    for _ in 0..n {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    format!("crunched {n}: {x}")
}

fn alloc(mib: usize) -> String {
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for i in 0..mib {
        blocks.push(vec![i as u8; 1 << 20]);
    }
    let sum: u64 = blocks.iter().map(|b| u64::from(b[b.len() / 2])).sum();
    format!("allocated {mib} MiB, checksum {sum}")
}

fn hog() -> String {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every block so the memory is really used.
        blocks.push(vec![1u8; 1 << 20]);
        if blocks.len() > 1 << 20 {
            return format!("{} blocks", blocks.len());
        }
    }
}

/// Recursion with no addressable locals, so it exhausts the wasm call stack (not the
/// shadow stack in linear memory).
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + 1
}

fn probe() -> String {
    let passwd = match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("READ {} bytes", text.len()),
        Err(e) => format!("denied ({e})"),
    };
    let root = match std::fs::read_dir("/") {
        Ok(entries) => format!("LISTED {} entries", entries.count()),
        Err(e) => format!("denied ({e})"),
    };
    let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let tcp = match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(_) => "CONNECTED".to_string(),
        Err(e) => format!("denied ({e})"),
    };
    format!(
        "passwd: {passwd}\nroot: {root}\nenv: {}\ntcp: {tcp}\n",
        env.join(",")
    )
}

fn outbound(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("bad url {url:?}");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).unwrap();
    request
        .set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http }))
        .unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(e) => return format!("error: {e:?}"),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => format!("status {}", response.status()),
        Some(Ok(Err(e))) => format!("error: {e:?}"),
        other => format!("error: {other:?}"),
    }
}

fn body_len(request: IncomingRequest) -> usize {
    let body = request.consume().expect("body is consumed once");
    let stream = body.stream().expect("stream is taken once");
    let mut total = 0;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => total += chunk.len(),
            Err(StreamError::Closed) => return total,
            Err(StreamError::LastOperationFailed(e)) => {
                panic!("reading the request body failed: {}", e.to_debug_string())
            }
        }
    }
}
