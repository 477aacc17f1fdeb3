//! Functions, versions, publishing and uploads.

use serde::{Deserialize, Serialize};

use super::{AliasView, ErrorDetail};
use crate::model::{CodeInfo, Digest, FunctionConfig, FunctionInfo, VersionInfo};

/// A function: its `$LATEST` and how many versions it has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionView {
    pub name: String,
    /// `default`, or the `NS` of a `NAME.NS` function.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// `$LATEST`: the code and config the next `publish` freezes.
    pub latest: CodeView,
    /// The newest published version, if any.
    pub newest_version: Option<u32>,
    pub version_count: u32,
    pub created_at_ms: i64,
}

/// Code plus config, as held by `$LATEST`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeView {
    pub digest: Digest,
    pub size: u64,
    /// The registry artifact the code was pulled from, pinned by its manifest's digest
    /// (`oci://REGISTRY/REPO:TAG@sha256:...`); absent for an uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub config: FunctionConfig,
    pub updated_at_ms: i64,
}

/// A published, immutable version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub function: String,
    pub version: u32,
    pub digest: Digest,
    pub size: u64,
    /// The registry artifact the code was pulled from, pinned by its manifest's digest
    /// (`oci://REGISTRY/REPO:TAG@sha256:...`); absent for an uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub config: FunctionConfig,
    pub description: String,
    pub created_at_ms: i64,
}

/// `GET /v1/functions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionView>,
}

/// `GET /v1/functions/NAME`: the function with its versions and aliases (`$DEFAULT` first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionDetail {
    #[serde(flatten)]
    pub function: FunctionView,
    pub versions: Vec<VersionView>,
    pub aliases: Vec<AliasView>,
    /// Who may call it on the data plane: `public` or `key`.
    #[serde(default)]
    pub access: crate::model::Access,
}

fn default_namespace() -> String {
    crate::model::DEFAULT_NAMESPACE.to_string()
}

/// `GET /v1/functions/NAME/versions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionList {
    pub function: String,
    pub versions: Vec<VersionView>,
}

/// `POST /v1/functions/NAME/versions`: publish `$LATEST`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// A note stored with the version.
    #[serde(default)]
    pub description: String,
}

/// What publishing answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// False when `$LATEST` was identical to the newest version, which is returned.
    pub created: bool,
    pub version: VersionView,
}

/// What a finished upload returns (and the final `done` progress event carries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uploaded {
    pub function: FunctionView,
    pub handler_export: String,
    /// The world that export belongs to (WASI 0.2 proxy or WASI 0.3 service).
    pub world: crate::model::HttpWorld,
    /// Set by `fnhost deploy --publish`, which publishes right after the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Published>,
}

/// One line of an upload's progress stream (`Accept: application/x-ndjson`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum UploadEvent {
    /// The body is a component with the right world; compilation starts.
    Validated {
        digest: Digest,
        size: u64,
        handler_export: String,
        world: crate::model::HttpWorld,
        imports: usize,
    },
    /// A step of preparing the code.
    Stage { elapsed_ms: u64, detail: StageView },
    /// Still compiling (sent every half second).
    Working { elapsed_ms: u64 },
    /// The upload is durable and in force.
    Done { result: Box<Uploaded> },
    /// The upload failed; nothing changed.
    Error { error: ErrorDetail },
}

/// A step of preparing uploaded code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum StageView {
    WaitingForCompiler,
    Compiling,
    Compiled { compile_ms: u64 },
    CacheHit,
    Linked,
}

impl From<CodeInfo> for CodeView {
    fn from(code: CodeInfo) -> Self {
        Self {
            digest: code.digest,
            size: code.size,
            source: code.source,
            config: code.config,
            updated_at_ms: code.updated_at_ms,
        }
    }
}

impl From<FunctionInfo> for FunctionView {
    fn from(info: FunctionInfo) -> Self {
        Self {
            namespace: crate::model::namespace_of(&info.name).to_string(),
            name: info.name,
            latest: info.latest.into(),
            newest_version: info.newest_version,
            version_count: info.version_count,
            created_at_ms: info.created_at_ms,
        }
    }
}

impl From<VersionInfo> for VersionView {
    fn from(version: VersionInfo) -> Self {
        Self {
            function: version.function,
            version: version.version,
            digest: version.digest,
            size: version.size,
            source: version.source,
            config: version.config,
            description: version.description,
            created_at_ms: version.created_at_ms,
        }
    }
}

/// A secret as listed: its name and when it was set, never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretView {
    pub name: String,
    pub updated_ms: i64,
}

/// `GET /v1/functions/NAME/secrets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    pub function: String,
    pub secrets: Vec<SecretView>,
}
