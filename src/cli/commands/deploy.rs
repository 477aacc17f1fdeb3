//! `fnhost deploy NAME FILE.wasm`: upload with live progress while the host compiles.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context as _;
use clap::Args;
use http::{Method, header};
use http_body_util::BodyExt;

use super::registry::{RegistryArgs, read_component};
use super::{LimitArgs, parse_key_value, print_json};
use crate::api::{StageView, Status, UploadEvent, Uploaded};
use crate::cli::ClientArgs;
use crate::cli::client::{AdminClient, ApiFailure};
use crate::cli::units::human_size;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The function's name: a lowercase DNS label (a-z, 0-9, '-').
    pub name: String,
    /// The component: a file holding a wasi:http/proxy (WASI 0.2) or wasi:http/service
    /// (WASI 0.3) component, e.g. built for wasm32-wasip2; or an OCI artifact,
    /// oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:DIGEST, pulled here, checked
    /// against its digests and kept with the version as its source, pinned by digest.
    #[arg(value_name = "FILE|oci://...")]
    pub component: String,
    /// Environment variables for the function; when given, they replace its whole
    /// environment (repeat for several).
    #[arg(long, value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub env: Vec<(String, String)>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Send this percentage of the function's traffic ($DEFAULT) to the new $LATEST, set in
    /// the same step as the upload (a canary); the rest stays on the newest version.
    #[arg(long, value_name = "PERCENT", value_parser = super::traffic::parse_percent_arg, conflicts_with = "publish")]
    pub traffic: Option<crate::model::BasisPoints>,
    /// Publish the upload as a new version right away.
    #[arg(long)]
    pub publish: bool,
    /// With --publish: the version's description.
    #[arg(long, default_value = "", requires = "publish")]
    pub description: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: DeployArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.client)?;
    // The host would refuse a too-large upload mid-transfer, which a client sees as a reset
    // connection; ask for the limit first and say it plainly.
    let limit = client
        .get::<Status>("/v1/status")
        .await
        .map_or(u64::MAX, |status| status.limits.max_upload_bytes);
    let component = read_component(&args.component, Path::new(""), &args.registry, limit).await?;
    if component.wasm.len() as u64 > limit {
        anyhow::bail!(
            "{} is {}, larger than the host's upload limit of {}; strip it \
             (`wasm-tools strip`) or raise `fnhost serve --max-upload`",
            component.what,
            human_size(component.wasm.len()),
            human_size(limit as usize)
        );
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    let env = (!args.env.is_empty()).then(|| args.env.iter().cloned().collect());
    let patch = args.limits.patch(env);
    if !patch.is_empty() {
        query.append_pair("config", &serde_json::to_string(&patch)?);
    }
    if let Some(bp) = args.traffic {
        query.append_pair("traffic", &bp.to_string());
    }
    if let Some(source) = &component.source {
        query.append_pair("source", source);
    }
    let query = query.finish();
    let mut result = upload(
        &client,
        &args.name,
        &component.what,
        component.wasm,
        &query,
        !args.client.json,
    )
    .await?;
    if args.publish {
        let published =
            super::manage::publish_latest(&client, &args.name, args.description.clone()).await?;
        result.published = Some(published);
    }
    if print_json(&args.client, &result)? {
        return Ok(());
    }
    let latest = &result.function.latest;
    println!(
        "deployed {} $LATEST: {} ({}), exports {}: {}",
        args.name,
        latest.digest,
        human_size(latest.size as usize),
        result.handler_export,
        result.world,
    );
    if let Some(bp) = args.traffic {
        println!(
            "$DEFAULT sends {}% of {}'s traffic to $LATEST",
            bp, args.name
        );
    }
    if let Some(published) = &result.published {
        let verb = if published.created {
            "published"
        } else {
            "unchanged since"
        };
        println!("{verb} version {}", published.version.version);
    }
    Ok(())
}

/// Uploads `wasm` as `name`'s `$LATEST` (with `query`: config, traffic), showing the host's
/// progress on stderr when `show` is set, and returns what the finished upload answered.
pub(super) async fn upload(
    client: &AdminClient,
    name: &str,
    what: &str,
    wasm: Vec<u8>,
    query: &str,
    show: bool,
) -> anyhow::Result<Uploaded> {
    let path = format!(
        "/v1/functions/{name}/code{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    let progress = Progress::new(show);
    progress.show(&format!("uploading {what} ({})", human_size(wasm.len())));
    let response = client
        .send(
            Method::PUT,
            &path,
            wasm.into(),
            &[
                (header::CONTENT_TYPE, "application/wasm"),
                (header::ACCEPT, "application/x-ndjson"),
            ],
        )
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let mut result = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the upload response was cut off")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buffer.extend_from_slice(data);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: UploadEvent = serde_json::from_slice(&line)
                .context("the admin API sent an unreadable progress line")?;
            match event {
                UploadEvent::Done { result: done } => result = Some(done),
                UploadEvent::Error { error } => {
                    progress.finish();
                    return Err(ApiFailure::from_detail(500, error).into());
                }
                UploadEvent::Working { .. } => progress.heartbeat(&describe(&event)),
                _ => progress.show(&describe(&event)),
            }
        }
    }
    progress.finish();
    Ok(*result.context("the upload stream ended before the deploy finished")?)
}

fn describe(event: &UploadEvent) -> String {
    let seconds = |ms: u64| ms as f64 / 1000.0;
    match event {
        UploadEvent::Validated {
            handler_export,
            world,
            ..
        } => {
            format!("validated: component exporting {handler_export}, world {world}")
        }
        UploadEvent::Stage { elapsed_ms, detail } => match detail {
            StageView::WaitingForCompiler => {
                "waiting for another upload's compilation to finish".into()
            }
            StageView::Compiling => format!("compiling... {:.1}s", seconds(*elapsed_ms)),
            StageView::Compiled { compile_ms } => {
                format!("compiled in {:.1}s", seconds(*compile_ms))
            }
            StageView::CacheHit => "already compiled (cache hit)".into(),
            StageView::Linked => {
                "linked: every import resolved (WASI 0.2 or 0.3, wasi:http, wasi:keyvalue, wasi:config)".into()
            }
        },
        UploadEvent::Working { elapsed_ms } => {
            format!("compiling... {:.1}s", seconds(*elapsed_ms))
        }
        UploadEvent::Done { .. } => "done".into(),
        UploadEvent::Error { error } => error.message.clone(),
    }
}

/// Progress on stderr: one rewritten line on a terminal; in logs, one line per step and a
/// heartbeat every few seconds.
struct Progress {
    enabled: bool,
    terminal: bool,
    last_line: std::cell::Cell<std::time::Instant>,
}

impl Progress {
    const LOG_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            last_line: std::cell::Cell::new(std::time::Instant::now()),
        }
    }

    fn heartbeat(&self, text: &str) {
        if self.terminal || self.last_line.get().elapsed() >= Self::LOG_HEARTBEAT {
            self.show(text);
        }
    }

    fn show(&self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{text}");
        } else {
            let _ = writeln!(stderr, "{text}");
        }
        self.last_line.set(std::time::Instant::now());
        let _ = stderr.flush();
    }

    fn finish(&self) {
        if self.enabled && self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}
