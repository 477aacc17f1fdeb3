//! Components in OCI registries: `fnhost push FILE oci://...`, and reading a component named
//! `oci://...` for `deploy` and `apply` (pulled here, then uploaded with its pinned source).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{parse_millis, read_file};
use crate::cli::manifest::ComponentRef;
use crate::cli::oci::{self, RegistryOptions, auth::Credentials};
use crate::model::{Digest, OciReference};

/// How to reach OCI registries; shared by `deploy`, `apply` and `push`.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Registry username. Default: the Docker client's (`docker login`, from
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json and its credential helpers);
    /// anonymous when it has none.
    #[arg(long, env = "FNHOST_REGISTRY_USERNAME", value_name = "USER")]
    pub registry_username: Option<String>,
    /// Registry password or access token, with --registry-username.
    #[arg(
        long,
        env = "FNHOST_REGISTRY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub registry_password: Option<String>,
    /// A registry (HOST or HOST:PORT) to speak plain HTTP to instead of HTTPS (repeat for
    /// several). Registries on loopback (localhost, 127.0.0.1, ::1) always speak HTTP.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Limit on each request to a registry; one that hangs fails after it.
    #[arg(long, value_parser = parse_millis, default_value = "30s", value_name = "DURATION")]
    pub registry_timeout: u64,
}

impl RegistryArgs {
    pub fn options(&self) -> anyhow::Result<RegistryOptions> {
        let credentials = match (&self.registry_username, &self.registry_password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!("--registry-username needs --registry-password"),
            (None, Some(_)) => anyhow::bail!("--registry-password needs --registry-username"),
        };
        Ok(RegistryOptions {
            credentials,
            insecure: self.insecure_registry.clone(),
            timeout: Duration::from_millis(self.registry_timeout.max(1)),
        })
    }
}

/// A component read for upload: its bytes, how to name it, and its pinned source.
pub(super) struct Component {
    pub wasm: Vec<u8>,
    /// The file or the pinned reference, for messages.
    pub what: String,
    /// The pinned reference when pulled from a registry.
    pub source: Option<String>,
}

/// Reads `component`: a file path (relative to `base`), or `oci://...`, pulled (at most
/// `max_bytes`) and checked against its manifest's digests.
pub(super) async fn read_component(
    component: &str,
    base: &Path,
    registry: &RegistryArgs,
    max_bytes: u64,
) -> anyhow::Result<Component> {
    if !OciReference::is_oci(component) {
        let path = base.join(component);
        return Ok(Component {
            wasm: read_file(&path)?,
            what: path.display().to_string(),
            source: None,
        });
    }
    let reference = OciReference::parse(component)?;
    let pulled = oci::pull(&reference, &registry.options()?, max_bytes).await?;
    let pinned = pulled.reference.to_string();
    Ok(Component {
        wasm: pulled.wasm,
        what: pinned.clone(),
        source: Some(pinned),
    })
}

/// A manifest's component, read far enough to plan: a file's bytes, or a registry
/// artifact resolved to its pinned manifest (pulled only if it is to be uploaded).
pub(super) enum Planned {
    File { wasm: Vec<u8>, what: String },
    Registry(OciReference),
}

/// The digest `component` has (for the plan) and what to upload if it changed.
pub(super) async fn plan_component(
    component: &ComponentRef,
    registry: &RegistryArgs,
) -> anyhow::Result<(Digest, Planned)> {
    match component {
        ComponentRef::File(path) => {
            let wasm = read_file(path)?;
            let what = path.display().to_string();
            Ok((Digest::of(&wasm), Planned::File { wasm, what }))
        }
        ComponentRef::Oci(reference) => {
            let resolved = oci::resolve(reference, &registry.options()?).await?;
            let digest = resolved
                .layer
                .digest
                .strip_prefix("sha256:")
                .and_then(Digest::from_hex)
                .with_context(|| {
                    format!(
                        "{reference}: the component's digest {} is not sha256",
                        resolved.layer.digest
                    )
                })?;
            Ok((digest, Planned::Registry(resolved.reference)))
        }
    }
}

/// The bytes of a planned component, pulled now if it lives in a registry.
pub(super) async fn fetch_planned(
    planned: Planned,
    registry: &RegistryArgs,
) -> anyhow::Result<Component> {
    match planned {
        Planned::File { wasm, what } => Ok(Component {
            wasm,
            what,
            source: None,
        }),
        Planned::Registry(pinned) => {
            read_component(&pinned.to_string(), Path::new(""), registry, u64::MAX).await
        }
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component to push: a wasi:http component, checked as `deploy` would check it.
    pub file: PathBuf,
    /// Where to: oci://REGISTRY/REPOSITORY:TAG. The tag then names the artifact's digest,
    /// which `deploy` pins.
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `fnhost push --json`.
#[derive(Debug, Serialize)]
struct Pushed {
    /// The reference pinned to the manifest's digest: what to deploy.
    reference: String,
    manifest_digest: String,
    /// The component's sha256: the digest the host shows for the deployed code.
    digest: String,
    size: u64,
}

pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    let reference = OciReference::parse(&args.reference)?;
    let wasm = read_file(&args.file)?;
    let summary = crate::engine::check_component(&wasm).with_context(|| {
        format!(
            "{} is not a component fnhost can run, so it was not pushed",
            args.file.display()
        )
    })?;
    let digest = Digest::of(&wasm);
    let size = wasm.len() as u64;
    // The CNCF wasm OCI artifact's config: what the component is, for registries and tools.
    // SOURCE_DATE_EPOCH (the reproducible-builds convention) fixes the time, so the same
    // file pushed twice makes the same digest.
    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(chrono::Utc::now);
    let config = serde_json::json!({
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [digest.to_string()],
        "component": {
            "exports": [summary.handler_export],
            "imports": summary.imports,
            "target": null,
        },
    });
    let title = args.file.file_name().map_or("component.wasm".into(), |n| {
        n.to_string_lossy().into_owned()
    });
    let pinned = oci::push(
        wasm.into(),
        config,
        &title,
        &reference,
        &args.registry.options()?,
    )
    .await?;
    let pushed = Pushed {
        manifest_digest: pinned.digest.clone().unwrap_or_default(),
        reference: pinned.to_string(),
        digest: digest.to_string(),
        size,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&pushed)?);
        return Ok(());
    }
    println!(
        "pushed {} ({}) as {}\ndeploy it with: fnhost deploy NAME {}",
        args.file.display(),
        crate::cli::units::human_size(size as usize),
        pushed.reference,
        pushed.reference
    );
    Ok(())
}
