//! `spin-kv`: a Spin application's component, written against spin-sdk 3 and nothing of
//! fnhost, to show Spin components run unchanged: `GET /kv/KEY` and `PUT /kv/KEY` read and
//! write the `default` store with Spin's key-value API, `GET /keys` lists it, `POST /visits`
//! counts, and `GET /var/NAME` reads a Spin variable.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.path().to_string();
    let answer = |status: u16, body: String| Response::builder().status(status).body(body).build();
    if let Some(name) = path.strip_prefix("/var/") {
        return Ok(match spin_sdk::variables::get(name) {
            Ok(value) => answer(200, value),
            Err(e) => answer(404, format!("{e}\n")),
        });
    }
    let store = match Store::open_default() {
        Ok(store) => store,
        Err(e) => return Ok(answer(403, format!("{e}\n"))),
    };
    if let Some(key) = path.strip_prefix("/kv/") {
        return Ok(match request.method() {
            Method::Put => {
                store.set(key, request.body())?;
                answer(200, "stored\n".into())
            }
            Method::Delete => {
                store.delete(key)?;
                answer(200, "deleted\n".into())
            }
            _ => match store.get(key)? {
                Some(value) => answer(200, String::from_utf8_lossy(&value).into_owned()),
                None => answer(404, format!("no key {key}\n")),
            },
        });
    }
    Ok(match path.as_str() {
        "/keys" => {
            let mut keys = store.get_keys()?;
            keys.sort();
            answer(200, keys.join("\n"))
        }
        "/visits" => {
            let seen = store
                .get("visits")?
                .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            store.set("visits", (seen + 1).to_string().as_bytes())?;
            answer(200, format!("{}\n", seen + 1))
        }
        _ => answer(404, "try /kv/KEY, /keys, /visits or /var/NAME\n".into()),
    })
}
