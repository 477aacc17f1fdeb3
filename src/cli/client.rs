//! The admin API client used by every command except `serve`.

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ClientArgs;

/// A non-2xx answer from the API, carrying its status and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

pub struct AdminClient {
    base: String,
    token: String,
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

    /// A JSON call: sends `body` (if any) and parses the JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let response = self
            .send(
                method,
                path,
                bytes,
                &[(header::CONTENT_TYPE, "application/json")],
            )
            .await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).context("the admin API answered with invalid JSON")
    }
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
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |key: &str| {
        error
            .and_then(|e| e.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut message = text("message")
        .unwrap_or_else(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).trim()));
    if let Some(id) = text("error_id") {
        message.push_str(&format!(" (error id {id})"));
    }
    ApiFailure {
        status,
        code: text("code").unwrap_or_default(),
        message,
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
