//! `PUT /v1/functions/NAME/code`: a new `$LATEST`.
//!
//! The body is the component; the query may carry config (`env=KEY=VALUE`, repeatable and
//! replacing the environment; `memory_mb`; `timeout_ms`). Cheap checks (name, size, component
//! structure, exported world) answer 4xx at once. Compilation can take many seconds for a
//! 20 MB JavaScript or Python component, so a client that sends
//! `Accept: application/x-ndjson` gets a 200 stream of progress events ending in `done` or
//! `error`; other clients get one JSON answer when the work is finished. Either way the
//! upload is acknowledged only after the code is compiled, linked and durably stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use super::functions::function_name;
use crate::api::{StageView, UploadEvent, Uploaded};
use crate::app::App;
use crate::drain::discard;
use crate::engine::{ComponentSummary, Stage, check_component};
use crate::model::{
    BasisPoints, ConfigPatch, Digest, FunctionConfig, FunctionName, NewCode, OciReference, Why,
};
use crate::server::body::{Body, BoxError, json};
use crate::server::error::ApiError;

pub const PROGRESS_CONTENT_TYPE: &str = "application/x-ndjson";
/// How often a progress stream reports that compilation is still running.
const HEARTBEAT: Duration = Duration::from_millis(500);

pub async fn upload(
    host: &Arc<App>,
    name: &str,
    actor: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // Check name and config first, so a mistake is refused before a large body is read.
    let checked = function_name(name).and_then(|name| {
        let query = upload_query(request.uri().query())?;
        query.patch.apply(&FunctionConfig::default())?;
        Ok((name, query))
    });
    let (name, query) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            discard(request.into_body()).await;
            return Err(error);
        }
    };
    let wants_progress = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(PROGRESS_CONTENT_TYPE));
    let wasm = read_limited(host.max_upload_bytes, request).await?;
    let (digest, summary, wasm) = tokio::task::spawn_blocking(move || {
        let summary = check_component(&wasm);
        (Digest::of(&wasm), summary, wasm)
    })
    .await
    .expect("validation task panicked");
    let summary = summary.map_err(crate::engine::PrepareError::from)?;
    let job = UploadJob {
        name,
        code: NewCode {
            digest,
            size: wasm.len() as u64,
            source: query.source,
        },
        wasm,
        patch: query.patch,
        latest_bp: query.latest_bp,
        summary,
        actor: actor.to_string(),
    };
    if !wants_progress {
        let uploaded = job.run(host, &|_| {}).await?;
        return Ok(json(StatusCode::OK, &uploaded));
    }
    Ok(job.stream(host.clone()))
}

struct UploadJob {
    name: FunctionName,
    code: NewCode,
    wasm: Bytes,
    patch: ConfigPatch,
    /// `traffic=P`: `$DEFAULT`'s new share to `$LATEST`, set in the same commit.
    latest_bp: Option<BasisPoints>,
    summary: ComponentSummary,
    /// Who deployed, for the alias history.
    actor: String,
}

impl UploadJob {
    async fn run(
        self,
        host: &App,
        stage: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<Uploaded, ApiError> {
        host.engine
            .prepare(
                self.code.digest,
                self.wasm.clone(),
                self.summary.world,
                stage,
            )
            .await
            .inspect_err(|e| {
                if let Some(part) = e.outage() {
                    host.registry.dependencies().failed(part, e);
                }
            })?;
        let function = host
            .registry
            .set_latest(
                &self.name,
                self.wasm,
                self.code.clone(),
                self.patch,
                self.latest_bp,
                Why::by(
                    self.actor.clone(),
                    match self.latest_bp {
                        Some(bp) => {
                            format!(
                                "deployed {} with traffic: $LATEST at {}%",
                                self.code.digest, bp
                            )
                        }
                        None => format!("deployed {}", self.code.digest),
                    },
                ),
            )
            .await?;
        tracing::info!(function = %self.name, digest = %self.code.digest, "deployed new $LATEST");
        Ok(Uploaded {
            function: function.into(),
            handler_export: self.summary.handler_export,
            world: self.summary.world,
            published: None,
        })
    }

    /// Runs the job in its own task, streaming progress lines; the task finishes the deploy
    /// even if the client goes away, so a disconnect never leaves a half-applied upload.
    fn stream(self, host: Arc<App>) -> Response<Body> {
        let (lines, receiver) = mpsc::channel::<Bytes>(64);
        let received = UploadEvent::Validated {
            digest: self.code.digest,
            size: self.wasm.len() as u64,
            handler_export: self.summary.handler_export.clone(),
            world: self.summary.world,
            imports: self.summary.imports.len(),
        };
        let _ = lines.try_send(line(&received));
        tokio::spawn(async move {
            let started = Instant::now();
            let stage_lines = lines.clone();
            let on_stage = move |stage: Stage| {
                let _ = stage_lines.try_send(line(&UploadEvent::Stage {
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    detail: stage_view(stage),
                }));
            };
            let work = self.run(&host, &on_stage);
            tokio::pin!(work);
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.tick().await;
            let outcome = loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = heartbeat.tick() => {
                        let _ = lines.try_send(line(&UploadEvent::Working {
                            elapsed_ms: started.elapsed().as_millis() as u64,
                        }));
                    }
                }
            };
            let last = match outcome {
                Ok(uploaded) => UploadEvent::Done {
                    result: Box::new(uploaded),
                },
                Err(error) => UploadEvent::Error {
                    error: error.detail(true),
                },
            };
            let _ = lines.send(line(&last)).await;
        });
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            let next = receiver.recv().await?;
            Some((Ok::<_, BoxError>(Frame::data(next)), receiver))
        });
        let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROGRESS_CONTENT_TYPE),
        );
        response
    }
}

fn stage_view(stage: Stage) -> StageView {
    match stage {
        Stage::WaitingForCompiler => StageView::WaitingForCompiler,
        Stage::Compiling => StageView::Compiling,
        Stage::Compiled { compile_ms } => StageView::Compiled { compile_ms },
        Stage::CacheHit => StageView::CacheHit,
        Stage::Linked => StageView::Linked,
    }
}

fn line(event: &UploadEvent) -> Bytes {
    let mut bytes = serde_json::to_vec(event).expect("events serialize");
    bytes.push(b'\n');
    bytes.into()
}

/// Reads the upload, refusing it with 413 as soon as it is known to exceed the limit.
async fn read_limited(limit: u64, request: Request<Incoming>) -> Result<Bytes, ApiError> {
    let too_large = || {
        let mut error = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the upload exceeds the host's limit of {limit} bytes; strip debug info \
                 (`wasm-tools strip`) or raise `fnhost serve --max-upload`"
            ),
        );
        error.close_connection = true;
        error
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut wasm = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("the upload was interrupted: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if (wasm.len() + data.len()) as u64 > limit {
            // Read a little further so the client, still sending, gets to see the answer.
            discard(body).await;
            return Err(too_large());
        }
        wasm.extend_from_slice(data);
    }
    Ok(wasm.freeze())
}

/// What an upload's query says besides the code.
#[derive(Debug)]
struct UploadQuery {
    patch: ConfigPatch,
    /// `traffic=P`: `$DEFAULT`'s new share to `$LATEST`.
    latest_bp: Option<BasisPoints>,
    /// `source=oci://...@sha256:...`: the registry artifact the code was pulled from.
    source: Option<String>,
}

/// Parses `env=KEY=VALUE` (repeatable), `memory_mb=N`, `timeout_ms=N`, `config=JSON`,
/// `traffic=P` (`$DEFAULT`'s percentage to `$LATEST`) and `source=oci://...` (where the
/// client pulled the code from, pinned by digest).
fn upload_query(query: Option<&str>) -> Result<UploadQuery, ApiError> {
    let mut patch = ConfigPatch::default();
    let mut latest_bp = None;
    let mut source = None;
    let mut env = BTreeMap::new();
    let mut saw_env = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "env" => {
                saw_env = true;
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    ApiError::bad_request(format!("env {value:?} must be KEY=VALUE"))
                })?;
                env.insert(k.to_string(), v.to_string());
            }
            "memory_mb" => patch.memory_mb = Some(number(&key, &value)?),
            "timeout_ms" => patch.timeout_ms = Some(number(&key, &value)?),
            "config" => {
                let given: ConfigPatch = serde_json::from_str(&value).map_err(|e| {
                    ApiError::bad_request(format!("config is not a valid config change: {e}"))
                })?;
                merge(&mut patch, given);
            }
            "traffic" => {
                latest_bp = Some(
                    BasisPoints::parse(&value)
                        .map_err(|e| ApiError::bad_request(format!("traffic: {e}")))?,
                )
            }
            "source" => {
                let reference = OciReference::parse(&value)
                    .map_err(|e| ApiError::bad_request(format!("source: {e}")))?;
                if reference.digest.is_none() {
                    return Err(ApiError::bad_request(format!(
                        "source {value:?} names no digest: a version's source is pinned, \
                         oci://REGISTRY/REPO:TAG@sha256:..."
                    )));
                }
                source = Some(reference.to_string());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown upload parameter {other:?}; use config, env, memory_mb, timeout_ms, \
                     traffic or source"
                )));
            }
        }
    }
    if saw_env {
        patch.env = Some(env);
    }
    Ok(UploadQuery {
        patch,
        latest_bp,
        source,
    })
}

/// Fields set in `given` override `patch`.
fn merge(patch: &mut ConfigPatch, given: ConfigPatch) {
    let ConfigPatch {
        env,
        memory_mb,
        timeout_ms,
        cpu_budget_ms,
        allow_outbound,
        max_concurrency,
        max_request_body_bytes,
        max_response_body_bytes,
        kv,
        config,
        secrets,
        secret_env,
        async_policy,
        reuse_requests,
        concurrency_per_instance,
    } = given;
    patch.env = env.or(patch.env.take());
    patch.memory_mb = memory_mb.or(patch.memory_mb);
    patch.timeout_ms = timeout_ms.or(patch.timeout_ms);
    patch.cpu_budget_ms = cpu_budget_ms.or(patch.cpu_budget_ms);
    patch.allow_outbound = allow_outbound.or(patch.allow_outbound.take());
    patch.max_concurrency = max_concurrency.or(patch.max_concurrency);
    patch.max_request_body_bytes = max_request_body_bytes.or(patch.max_request_body_bytes);
    patch.max_response_body_bytes = max_response_body_bytes.or(patch.max_response_body_bytes);
    patch.kv = kv.or(patch.kv.take());
    patch.config = config.or(patch.config.take());
    patch.secrets = secrets.or(patch.secrets.take());
    patch.secret_env = secret_env.or(patch.secret_env.take());
    patch.reuse_requests = reuse_requests.or(patch.reuse_requests);
    patch.concurrency_per_instance = concurrency_per_instance.or(patch.concurrency_per_instance);
    let base = &mut patch.async_policy;
    base.retries = async_policy.retries.or(base.retries);
    base.backoff_ms = async_policy.backoff_ms.or(base.backoff_ms);
    base.concurrency = async_policy.concurrency.or(base.concurrency);
    base.on_success = async_policy.on_success.or(base.on_success.take());
    base.on_failure = async_policy.on_failure.or(base.on_failure.take());
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{key} must be a whole number, got {value:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_config_parses_env_and_limits() {
        let query = upload_query(Some(
            "env=GREETING%3DHi%20there&env=B%3D&memory_mb=64&traffic=12.5",
        ))
        .unwrap();
        assert_eq!(query.latest_bp, Some(BasisPoints::new(1250)));
        assert_eq!(query.source, None);
        let patch = query.patch;
        let env = patch.env.unwrap();
        assert_eq!(env["GREETING"], "Hi there");
        assert_eq!(env["B"], "");
        assert_eq!(patch.memory_mb, Some(64));
        assert_eq!(patch.timeout_ms, None);
        assert!(upload_query(Some("env=NOEQUALS")).is_err());
        assert!(upload_query(Some("memory_mb=lots")).is_err());
        assert!(upload_query(Some("colour=blue")).is_err());
        assert!(upload_query(Some("traffic=101")).is_err());
        assert!(upload_query(None).unwrap().patch.is_empty());
    }

    #[test]
    fn a_source_must_be_a_pinned_oci_reference() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = format!("oci://127.0.0.1:5000/shop/cart:v1@{digest}");
        let query = upload_query(Some(&format!("source={}", urlencode(&pinned)))).unwrap();
        assert_eq!(query.source.as_deref(), Some(pinned.as_str()));
        let e = upload_query(Some("source=oci%3A%2F%2Fghcr.io%2Fcart%3Av1")).unwrap_err();
        assert!(e.message.contains("no digest"), "{}", e.message);
        let e = upload_query(Some("source=cart.wasm")).unwrap_err();
        assert!(e.message.contains("oci://"), "{}", e.message);
    }

    fn urlencode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
