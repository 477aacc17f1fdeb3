//! A client of the OCI distribution API (what Docker registries, GHCR, ECR, Harbor and
//! `docker-registry` speak), enough to pull a wasm component by tag or digest and to push
//! one as the CNCF wasm OCI artifact (`wkg oci push`'s layout: config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer).
//!
//! The CLI pulls, not the host: a CI runner holds the registry credentials, the host gets
//! bytes whose digest was checked plus the pinned reference they came from, and a fleet's
//! nodes all serve the one copy in the shared object store; no node pulls by tag on its own.

pub mod auth;

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::model::{Digest, OciReference};
use auth::{Challenge, Credentials};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER: &str = "application/wasm";
/// Layer types that carry a wasm binary: the CNCF layout's, Spin's and wasm-to-oci's.
const WASM_LAYERS: &[&str] = &[
    WASM_LAYER,
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];
/// Manifests are small; a registry sending more is not answering the question asked.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// How to reach registries: credentials, which ones speak plain HTTP, how long to wait.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    pub credentials: Option<Credentials>,
    /// Registries (`host[:port]`) spoken to over plain HTTP; loopback ones always are.
    pub insecure: Vec<String>,
    /// Limit on each request to the registry (a registry that hangs fails after it).
    pub timeout: Duration,
}

/// A component pulled and checked: its bytes hash to the layer digest its manifest names.
pub struct Pulled {
    /// The reference as given, pinned to the manifest's digest.
    pub reference: OciReference,
    pub wasm: Vec<u8>,
}

/// What a reference resolves to, without downloading the component.
pub struct Resolved {
    pub reference: OciReference,
    pub layer: Descriptor,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing)]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// Set on an index (multi-platform list).
    manifests: Option<Vec<Descriptor>>,
}

/// Resolves `reference` to its manifest and the one wasm layer in it.
pub async fn resolve(
    reference: &OciReference,
    options: &RegistryOptions,
) -> anyhow::Result<Resolved> {
    let mut session = Session::new(reference, options)?;
    session.resolve(reference).await
}

/// Pulls the component `reference` names, refusing one larger than `max_bytes` and bytes
/// whose sha256 is not the layer digest the manifest names.
pub async fn pull(
    reference: &OciReference,
    options: &RegistryOptions,
    max_bytes: u64,
) -> anyhow::Result<Pulled> {
    let mut session = Session::new(reference, options)?;
    let resolved = session.resolve(reference).await?;
    let layer = &resolved.layer;
    anyhow::ensure!(
        layer.size <= max_bytes,
        "{reference}: the component is {} bytes, more than the host's upload limit of \
         {max_bytes} bytes",
        layer.size
    );
    let wasm = session.blob(reference, layer).await?;
    let digest = Digest::of(&wasm);
    anyhow::ensure!(
        digest.to_string() == layer.digest,
        "{reference}: the registry sent a component whose sha256 is {digest}, not the {} its \
         manifest names; nothing was deployed (the registry's storage may be corrupt, or \
         something between here and it changed the bytes)",
        layer.digest
    );
    Ok(Pulled {
        reference: resolved.reference,
        wasm,
    })
}

/// Pushes `wasm` to `reference` (which must name a tag) as a CNCF wasm OCI artifact;
/// `config` is the artifact's config document. Returns the reference pinned to the
/// manifest's digest.
pub async fn push(
    wasm: Bytes,
    config: serde_json::Value,
    title: &str,
    reference: &OciReference,
    options: &RegistryOptions,
) -> anyhow::Result<OciReference> {
    let tag = reference
        .tag
        .as_deref()
        .filter(|_| reference.digest.is_none())
        .with_context(|| {
            format!("{reference}: push to a tag (oci://REGISTRY/REPO:TAG); a digest is what the push makes")
        })?;
    let mut session = Session::new(reference, options)?;
    let config = Bytes::from(serde_json::to_vec(&config)?);
    let config_descriptor = session
        .upload_blob(reference, config, WASM_CONFIG, None)
        .await?;
    let layer = session
        .upload_blob(
            reference,
            wasm,
            WASM_LAYER,
            Some(
                [(
                    "org.opencontainers.image.title".to_string(),
                    title.to_string(),
                )]
                .into(),
            ),
        )
        .await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor,
        "layers": [layer],
    });
    let body = Bytes::from(serde_json::to_vec(&manifest)?);
    let digest = Digest::of(&body).to_string();
    let url = format!(
        "{}/v2/{}/manifests/{tag}",
        session.base, reference.repository
    );
    let response = session
        .send(
            Method::PUT,
            &url,
            &[(header::CONTENT_TYPE, OCI_MANIFEST)],
            Some(body),
            "pull,push",
            reference,
        )
        .await?;
    expect(response, reference, "storing the manifest").await?;
    Ok(reference.resolved(&digest))
}

/// One conversation with one registry: the HTTP client and the authorization it earned.
struct Session {
    http: reqwest::Client,
    /// `https://host[:port]` (or `http://` for loopback and `--insecure-registry`).
    base: String,
    registry: String,
    credentials: Option<Credentials>,
    /// The `Authorization` value that last worked, reused until a `401` asks again.
    authorization: Option<String>,
    timeout: Duration,
}

impl Session {
    fn new(reference: &OciReference, options: &RegistryOptions) -> anyhow::Result<Self> {
        let plain = reference.is_loopback()
            || options.insecure.iter().any(|r| {
                r == &reference.registry || reference.registry.split(':').next() == Some(r)
            });
        let scheme = if plain { "http" } else { "https" };
        let credentials = match &options.credentials {
            Some(given) => Some(given.clone()),
            None => auth::from_docker_config(&reference.registry)?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .timeout(options.timeout)
            .user_agent(concat!("fnhost/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the registry client")?;
        Ok(Self {
            http,
            base: format!("{scheme}://{}", reference.registry),
            registry: reference.registry.clone(),
            credentials,
            authorization: None,
            timeout: options.timeout,
        })
    }

    async fn resolve(&mut self, reference: &OciReference) -> anyhow::Result<Resolved> {
        let (manifest, digest) = self.manifest(reference, reference.api_reference()).await?;
        let manifest = match manifest.manifests {
            Some(entries) => {
                let chosen = choose_platform(reference, &entries)?;
                self.manifest(reference, &chosen.digest).await?.0
            }
            None => manifest,
        };
        let layer = wasm_layer(reference, &manifest)?;
        Ok(Resolved {
            reference: reference.resolved(&digest),
            layer,
        })
    }

    /// The manifest at `at` (a tag or digest) and its digest, checked against a pinned one.
    async fn manifest(
        &mut self,
        reference: &OciReference,
        at: &str,
    ) -> anyhow::Result<(Manifest, String)> {
        let url = format!("{}/v2/{}/manifests/{at}", self.base, reference.repository);
        let accept = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST].join(", ");
        let response = self
            .send(
                Method::GET,
                &url,
                &[(header::ACCEPT, &accept)],
                None,
                "pull",
                reference,
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            let what = if at.starts_with("sha256:") {
                format!("no manifest with digest {at}")
            } else {
                format!("no tag {at:?}")
            };
            let detail = registry_errors(response).await;
            let hint = match &reference.digest {
                Some(_) => "check the reference".to_string(),
                None => format!("check the name, or push it first (fnhost push FILE {reference})"),
            };
            anyhow::bail!(
                "{reference}: the repository {} at {} has {what}{detail}; {hint}",
                reference.repository,
                self.registry
            );
        }
        let response = expect(response, reference, "reading the manifest").await?;
        let body = read_limited(response, MAX_MANIFEST_BYTES as u64, reference, "manifest").await?;
        let digest = Digest::of(&body).to_string();
        if at.starts_with("sha256:") {
            anyhow::ensure!(
                digest == at,
                "{reference}: the registry sent a manifest whose sha256 is {digest}, not {at}"
            );
        }
        let manifest: Manifest = serde_json::from_slice(&body).with_context(|| {
            format!("{reference}: the registry's answer is not an OCI manifest")
        })?;
        Ok((manifest, digest))
    }

    async fn blob(
        &mut self,
        reference: &OciReference,
        layer: &Descriptor,
    ) -> anyhow::Result<Vec<u8>> {
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base, reference.repository, layer.digest
        );
        let response = self
            .send(Method::GET, &url, &[], None, "pull", reference)
            .await?;
        let response = expect(response, reference, "downloading the component").await?;
        read_limited(response, layer.size, reference, "component").await
    }

    /// Uploads `bytes` unless the repository has them already; their descriptor.
    async fn upload_blob(
        &mut self,
        reference: &OciReference,
        bytes: Bytes,
        media_type: &str,
        annotations: Option<std::collections::BTreeMap<String, String>>,
    ) -> anyhow::Result<Descriptor> {
        let digest = Digest::of(&bytes).to_string();
        let descriptor = Descriptor {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size: bytes.len() as u64,
            annotations,
            platform: None,
        };
        let repo = &reference.repository;
        let existing = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let head = self
            .send(Method::HEAD, &existing, &[], None, "pull,push", reference)
            .await?;
        if head.status().is_success() {
            return Ok(descriptor);
        }
        let start = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let started = self
            .send(Method::POST, &start, &[], None, "pull,push", reference)
            .await?;
        let started = expect(started, reference, "starting an upload").await?;
        let location = started
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .with_context(|| {
                format!("{reference}: the registry started an upload without a Location")
            })?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("digest=");
        url.push_str(&digest);
        let put = self
            .send(
                Method::PUT,
                &url,
                &[(header::CONTENT_TYPE, "application/octet-stream")],
                Some(bytes),
                "pull,push",
                reference,
            )
            .await?;
        expect(put, reference, "uploading a blob").await?;
        Ok(descriptor)
    }

    /// Sends a request, answering a `401` once with what its challenge asks for (Basic
    /// credentials, or a Bearer token for `actions` on the repository).
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Option<Bytes>,
        actions: &str,
        reference: &OciReference,
    ) -> anyhow::Result<reqwest::Response> {
        let mut answered = false;
        loop {
            let mut request = self.http.request(method.clone(), url);
            for (name, value) in headers {
                request = request.header(name, *value);
            }
            if let Some(authorization) = &self.authorization {
                request = request.header(header::AUTHORIZATION, authorization);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = request.send().await.map_err(|e| self.unreachable(e))?;
            if response.status() != StatusCode::UNAUTHORIZED || answered {
                if response.status() == StatusCode::UNAUTHORIZED {
                    anyhow::bail!(
                        "{reference}: the registry {} refused the credentials{}; check them \
                         (--registry-username, --registry-password, or `docker login {}`)",
                        self.registry,
                        self.credentials
                            .as_ref()
                            .map(|c| format!(" of {}", c.username))
                            .unwrap_or_default(),
                        self.registry
                    );
                }
                return Ok(response);
            }
            answered = true;
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge);
            self.authorization = Some(match challenge {
                Some(Challenge::Basic) => self.need_credentials(reference)?.basic_header(),
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let scope = scope.unwrap_or_else(|| {
                        format!("repository:{}:{actions}", reference.repository)
                    });
                    format!(
                        "Bearer {}",
                        self.token(&realm, service, &scope, reference).await?
                    )
                }
                None => anyhow::bail!(
                    "{reference}: the registry {} asks for an authentication fnhost does not \
                     speak (only Basic and Bearer tokens)",
                    self.registry
                ),
            });
        }
    }

    fn need_credentials(&self, reference: &OciReference) -> anyhow::Result<&Credentials> {
        self.credentials.as_ref().with_context(|| {
            format!(
                "{reference}: the registry {} needs credentials: pass --registry-username and \
                 --registry-password (or FNHOST_REGISTRY_USERNAME and FNHOST_REGISTRY_PASSWORD), \
                 or `docker login {}`",
                self.registry, self.registry
            )
        })
    }

    /// A token from the registry's token service (the Docker registry token flow),
    /// authenticated with the credentials when there are any (anonymous otherwise).
    async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: &str,
        reference: &OciReference,
    ) -> anyhow::Result<String> {
        let mut query = vec![("scope", scope.to_string())];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(credentials) = &self.credentials {
            request = request.header(header::AUTHORIZATION, credentials.basic_header());
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status() == StatusCode::UNAUTHORIZED
            || response.status() == StatusCode::FORBIDDEN
        {
            let _ = self.need_credentials(reference)?;
            anyhow::bail!(
                "{reference}: the token service {realm} refused the credentials of {} for {scope}",
                self.credentials
                    .as_ref()
                    .map_or("", |c| c.username.as_str())
            );
        }
        let response = expect(response, reference, "getting a registry token").await?;
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = read_limited(response, MAX_MANIFEST_BYTES as u64, reference, "token").await?;
        let token: Token = serde_json::from_slice(&body)
            .with_context(|| format!("{reference}: the token service {realm} answered no token"))?;
        token
            .token
            .or(token.access_token)
            .with_context(|| format!("{reference}: the token service {realm} answered no token"))
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_timeout() {
            anyhow::anyhow!(
                "the registry {} did not answer within {:?} ({}); nothing was deployed or \
                 pushed. Is it up? (--registry-timeout raises the limit)",
                self.registry,
                self.timeout,
                self.base
            )
        } else if e.is_connect() {
            anyhow::anyhow!(
                "could not connect to the registry {} at {}: {}{}",
                self.registry,
                self.base,
                error_chain(&e),
                if self.base.starts_with("https") {
                    "; a registry that speaks plain HTTP must be named with --insecure-registry"
                } else {
                    ""
                }
            )
        } else {
            anyhow::anyhow!(
                "talking to the registry {} failed: {}",
                self.registry,
                error_chain(&e)
            )
        }
    }
}

/// The innermost cause ("Connection refused (os error 111)"): the outer layers of an HTTP
/// client's error repeat the URL the message already names.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The response if it succeeded; otherwise an error with the registry's own explanation.
async fn expect(
    response: reqwest::Response,
    reference: &OciReference,
    doing: &str,
) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let detail = registry_errors(response).await;
    anyhow::bail!("{reference}: {doing} failed: the registry answered {status}{detail}")
}

/// `: CODE message; ...` from the distribution API's `{"errors": [...]}` body, or "".
async fn registry_errors(response: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<RegistryError>,
    }
    #[derive(Deserialize)]
    struct RegistryError {
        code: String,
        #[serde(default)]
        message: String,
    }
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) if !errors.errors.is_empty() => {
            let list: Vec<String> = errors
                .errors
                .iter()
                .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
                .collect();
            format!(" ({})", list.join("; "))
        }
        _ => String::new(),
    }
}

/// Reads at most `limit` bytes of the body, refusing more.
async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
    reference: &OciReference,
    what: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("{reference}: reading the {what} from the registry"))?
    {
        anyhow::ensure!(
            (out.len() + chunk.len()) as u64 <= limit,
            "{reference}: the registry sent more than the {limit} bytes of the {what}"
        );
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An index lists one manifest per platform: take the wasm one.
fn choose_platform<'a>(
    reference: &OciReference,
    entries: &'a [Descriptor],
) -> anyhow::Result<&'a Descriptor> {
    let is_wasm = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.architecture == "wasm" || p.os.starts_with("wasi"))
    };
    let wasm: Vec<&Descriptor> = entries.iter().filter(is_wasm).collect();
    match (wasm.as_slice(), entries) {
        ([one], _) => Ok(one),
        ([], [only]) => Ok(only),
        _ => {
            let platforms: Vec<String> = entries
                .iter()
                .map(|d| {
                    d.platform.as_ref().map_or("unknown".to_string(), |p| {
                        format!("{}/{}", p.os, p.architecture)
                    })
                })
                .collect();
            anyhow::bail!(
                "{reference} is an index of {} manifests ({}) without exactly one for wasm; \
                 name the one to deploy by its digest (oci://{}/{}@sha256:...)",
                entries.len(),
                platforms.join(", "),
                reference.registry,
                reference.repository
            )
        }
    }
}

/// The manifest's one wasm layer.
fn wasm_layer(reference: &OciReference, manifest: &Manifest) -> anyhow::Result<Descriptor> {
    let wasm: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| WASM_LAYERS.contains(&l.media_type.as_str()))
        .collect();
    match wasm.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let types: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            let kind = manifest
                .config
                .as_ref()
                .map_or("", |c| c.media_type.as_str());
            anyhow::bail!(
                "{reference} is not a wasm component artifact: none of its layers is \
                 application/wasm (config {kind:?}, layers {types:?}{}); push the component \
                 with `fnhost push`, `wkg oci push` or `oras push ...:application/wasm`",
                manifest
                    .media_type
                    .as_deref()
                    .map(|t| format!(", manifest {t}"))
                    .unwrap_or_default()
            )
        }
        many => anyhow::bail!(
            "{reference} has {} wasm layers (a multi-component app?); fnhost runs one \
             component per function: push each component as its own artifact",
            many.len()
        ),
    }
}
