//! API errors and their HTTP statuses: the one place where failures become status codes.

use super::body::{Body, json};
use crate::api::{ErrorBody, ErrorDetail};
use crate::engine::{InvokeError, PrepareError};
use crate::events::buckets::ObjectError;
use crate::invocation::Failure;
use crate::model::{InvalidConfig, InvalidName};
use crate::rollout::RolloutError;
use crate::routing::RouteError;
use crate::store::StoreError;
use http::{HeaderValue, Response, StatusCode, header};

/// An error answer: status, a stable machine-readable code, and a message for humans that
/// says what was wrong and, where known, what to do.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Set for server-side failures so a client report can be matched to the host log.
    pub error_id: Option<String>,
    pub retry_after_secs: Option<u32>,
    /// The request body was left unread: tell HTTP/1 clients not to reuse the connection,
    /// which the server closes after this answer.
    pub close_connection: bool,
}

impl ApiError {
    /// 503 for a part that is down (`database_unavailable`, `object_store_unavailable`):
    /// worth retrying shortly. The outage itself is logged once by `dependencies`, not here.
    fn unavailable(code: &'static str, e: impl std::fmt::Display) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string());
        error.retry_after_secs = Some(5);
        error
    }

    /// 507: the data directory's filesystem is full; retrying will not help until space is freed.
    fn disk_full(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string())
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            error_id: None,
            retry_after_secs: None,
            close_connection: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 403: an API key outside its namespace or role.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure on our side: logged with a fresh id that the client also sees.
    pub fn internal(message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message);
        error.error_id = Some(new_error_id());
        error
    }

    pub fn into_response(self) -> Response<Body> {
        let body = ErrorBody {
            error: self.detail(false),
        };
        let mut response = json(self.status, &body);
        if self.close_connection {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // Every 401 names the scheme that would be accepted (RFC 9110).
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    /// The `error` object; `with_status` for errors reported inside a progress stream,
    /// whose own HTTP status is already 200.
    pub fn detail(&self, with_status: bool) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.message.clone(),
            error_id: self.error_id.clone(),
            status: with_status.then_some(self.status.as_u16()),
        }
    }
}

/// 16 hex digits, unique enough to find one failure in the log.
pub fn new_error_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownFunction(_) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_function", e.to_string())
            }
            StoreError::UnknownVersion(..) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_version", e.to_string())
            }
            StoreError::UnknownAlias(..) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_alias", e.to_string())
            }
            StoreError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::VersionInUse { .. } => {
                Self::new(StatusCode::CONFLICT, "version_in_use", e.to_string())
            }
            StoreError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            StoreError::Quota(ref quota) => {
                let code = match quota.quota {
                    "functions" => "quota_functions",
                    "versions" => "quota_versions",
                    "provisioned" => "quota_provisioned",
                    "memory_mb" => "quota_memory_mb",
                    "bucket_bytes" => "quota_bucket_bytes",
                    _ => "quota",
                };
                Self::new(StatusCode::FORBIDDEN, code, e.to_string())
            }
            StoreError::InvalidConfig(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_config", e.to_string())
            }
            StoreError::InvalidAlias(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_alias", e.to_string())
            }
            StoreError::InvalidRoute(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_route", e.to_string())
            }
            StoreError::Limit(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "limit", e.to_string())
            }
            StoreError::Unavailable(_) => Self::unavailable("database_unavailable", e),
            StoreError::DiskFull(_) => Self::disk_full(e),
            StoreError::ObjectStoreUnavailable(_) => {
                Self::unavailable("object_store_unavailable", e)
            }
            other => {
                let error = Self::internal("the registry failed to store or read metadata");
                tracing::error!(error_id = ?error.error_id, error = %other, "registry failure");
                error
            }
        }
    }
}

impl From<InvalidName> for ApiError {
    fn from(e: InvalidName) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_name", e.to_string())
    }
}

impl From<InvalidConfig> for ApiError {
    fn from(e: InvalidConfig) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_config", e.to_string())
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let code = match e {
            RouteError::UnknownFunction(_) => "unknown_function",
            RouteError::UnknownVersion { .. } => "unknown_version",
            RouteError::UnknownAlias { .. } => "unknown_alias",
        };
        Self::new(StatusCode::NOT_FOUND, code, e.to_string())
    }
}

impl From<PrepareError> for ApiError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::Invalid(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_component", e.to_string())
            }
            PrepareError::Compile(_) => {
                Self::new(StatusCode::BAD_REQUEST, "compile_failed", e.to_string())
            }
            PrepareError::Link(_) => {
                Self::new(StatusCode::BAD_REQUEST, "link_failed", e.to_string())
            }
            PrepareError::DiskFull(_) => Self::disk_full(e),
            PrepareError::Unavailable(_) => Self::unavailable("object_store_unavailable", e),
            PrepareError::Storage(_) => {
                let error = Self::internal("the host could not store compiled code");
                tracing::error!(error_id = ?error.error_id, error = %e, "compiled cache failure");
                error
            }
        }
    }
}

impl From<ObjectError> for ApiError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::Invalid(text) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_object", text)
            }
            ObjectError::NotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "unknown_object", e.to_string())
            }
            ObjectError::TooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            ObjectError::Upload(_) => Self::bad_request(e.to_string()),
            ObjectError::Quota(_) => {
                Self::new(StatusCode::FORBIDDEN, "quota_bucket_bytes", e.to_string())
            }
            ObjectError::DiskFull(_) => Self::disk_full(e),
            ObjectError::Unavailable(_) => Self::unavailable("object_store_unavailable", e),
            ObjectError::Store(_) => {
                let error = Self::internal("the object store failed");
                tracing::error!(error_id = ?error.error_id, error = %e, "object store failure");
                error
            }
        }
    }
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::NotFound(text) => Self::new(StatusCode::NOT_FOUND, "not_found", text),
            RolloutError::Conflict(text) => {
                Self::new(StatusCode::CONFLICT, "rollout_conflict", text)
            }
            RolloutError::Invalid(text) => Self::bad_request(text),
            RolloutError::Registry(e) => e.into(),
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let mut error = Self::new(failure.status(), failure.code(), failure.to_string());
        if error.status.is_server_error() {
            error.error_id = Some(new_error_id());
        }
        match failure {
            Failure::Overloaded(_) | Failure::Invoke(InvokeError::Capacity) => {
                error.retry_after_secs = Some(1)
            }
            Failure::CodeUnavailable => error.retry_after_secs = Some(5),
            // The client may still be sending the rest (or nothing): stop reading it.
            Failure::TooLarge(_) | Failure::BodyTimeout(_) => error.close_connection = true,
            Failure::Load(e) => {
                tracing::error!(error_id = ?error.error_id, error = %e, "the function's code could not be loaded")
            }
            Failure::Invoke(_) => {}
        }
        error
    }
}
