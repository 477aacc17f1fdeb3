//! The admin API client used by every command except `serve`.

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ClientArgs;
use crate::api::{ErrorBody, ErrorDetail};

/// A non-2xx answer from the API, carrying its status and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiFailure {
    /// From the API's error object; `status` is used when the object does not carry one.
    pub fn from_detail(status: u16, detail: ErrorDetail) -> Self {
        let mut message = detail.message;
        if let Some(id) = detail.error_id {
            message.push_str(&format!(" (error id {id})"));
        }
        Self {
            status: detail.status.unwrap_or(status),
            code: detail.code,
            message,
        }
    }
}

pub struct AdminClient {
    base: String,
    token: String,
    /// `--namespace`: applied to every path sent (`scoped_path`).
    namespace: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let token = match &args.token {
            Some(token) => token.clone(),
            None => {
                let path = args.data_dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no admin token: could not read {}; set FNHOST_TOKEN or point \
                             --data-dir at the host's data directory",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Self {
            base: args.admin_url.trim_end_matches('/').to_string(),
            token,
            namespace: args.namespace.clone(),
            http: http_client(),
        })
    }

    /// Sends a request and returns the response if it is a success; failures become
    /// [`ApiFailure`] with the API's message.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(header::HeaderName, &str)],
    ) -> anyhow::Result<Response<Incoming>> {
        let path = scoped_path(path, self.namespace.as_deref());
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let request = request.body(Full::new(body))?;
        let response = self.http.request(request).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the admin API at {}: {}; is `fnhost serve` running? \
                 (set --admin or FNHOST_ADMIN_URL)",
                self.base,
                connect_error_text(&e)
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(failure(response).await.into())
    }

    /// The namespace every path is scoped to, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `GET path`, read as the API type `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, Bytes::new()).await
    }

    /// `DELETE path`, read as the API type `T`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::DELETE, path, Bytes::new()).await
    }

    /// A call with `body` sent as JSON, read as the API type `T`.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let bytes = serde_json::to_vec(body).context("encoding the request")?;
        self.call(method, path, bytes.into()).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<T> {
        let response = self
            .send(
                method,
                path,
                body,
                &[(header::CONTENT_TYPE, "application/json")],
            )
            .await?;
        read_answer(response).await
    }
}

/// Puts what `path` names into `namespace`, so every command takes `--namespace` without
/// knowing of it: a function or bucket (`/v1/functions/NAME/...`, `/v1/buckets/B/...`, and
/// `?function=NAME`) becomes `NAME.NS` unless it names a namespace already, and listings
/// (`/v1/functions`, `/v1/usage`, `/v1/audit`) are limited to the namespace.
pub fn scoped_path(path: &str, namespace: Option<&str>) -> String {
    let Some(namespace) = namespace.filter(|ns| !ns.is_empty()) else {
        return path.to_string();
    };
    let qualify = |name: &str| crate::model::qualify(name, namespace);
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let mut segments: Vec<String> = route.split('/').map(str::to_string).collect();
    if let ["", "v1", "functions" | "buckets" | "kv", name, ..] = segments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
        && !name.is_empty()
    {
        segments[3] = qualify(name);
    }
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if k == "function" {
                qualify(&v)
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if matches!(route, "/v1/functions" | "/v1/usage" | "/v1/audit")
        && !pairs.iter().any(|(k, _)| k == "namespace")
    {
        pairs.push(("namespace".to_string(), namespace.to_string()));
    }
    let route = segments.join("/");
    if pairs.is_empty() {
        return route;
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{route}?{query}")
}

/// Reads a success answer as the API type `T`, saying what did not match if it does not.
pub async fn read_answer<T: DeserializeOwned>(response: Response<Incoming>) -> anyhow::Result<T> {
    let bytes = response.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the admin API's answer is not what this fnhost {} expects (is the host another \
             version?)",
            env!("CARGO_PKG_VERSION")
        )
    })
}

pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Turns an error response into an [`ApiFailure`], using the JSON error body when there is one.
pub async fn failure(response: Response<Incoming>) -> ApiFailure {
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => ApiFailure::from_detail(status, body.error),
        Err(_) => ApiFailure {
            status,
            code: String::new(),
            message: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).trim()),
        },
    }
}

fn connect_error_text(error: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut last = error.to_string();
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::scoped_path;

    #[test]
    fn namespaces_apply_to_names_and_listings() {
        let ns = Some("shop");
        assert_eq!(
            scoped_path("/v1/functions/cart/code", None),
            "/v1/functions/cart/code"
        );
        assert_eq!(
            scoped_path("/v1/functions/cart/code", ns),
            "/v1/functions/cart.shop/code"
        );
        assert_eq!(
            scoped_path("/v1/functions/cart.other", ns),
            "/v1/functions/cart.other"
        );
        assert_eq!(
            scoped_path("/v1/buckets/images/objects/a", ns),
            "/v1/buckets/images.shop/objects/a"
        );
        assert_eq!(
            scoped_path("/v1/functions", ns),
            "/v1/functions?namespace=shop"
        );
        assert_eq!(
            scoped_path("/v1/usage?function=cart&by=version", ns),
            "/v1/usage?function=cart.shop&by=version&namespace=shop"
        );
        assert_eq!(
            scoped_path("/v1/audit?limit=5", ns),
            "/v1/audit?limit=5&namespace=shop"
        );
        assert_eq!(
            scoped_path("/v1/functions/cart", Some("default")),
            "/v1/functions/cart"
        );
        assert_eq!(
            scoped_path("/v1/functions", Some("default")),
            "/v1/functions?namespace=default"
        );
        assert_eq!(scoped_path("/v1/status", ns), "/v1/status");
    }
}
