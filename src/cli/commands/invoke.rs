//! `fnhost invoke NAME[@VERSION]`: one call through the data plane, for a quick check.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};

use super::{parse_key_value, read_file};
use crate::cli::DEFAULT_DATA_URL;
use crate::cli::client::{failure, http_client};

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// NAME, NAME@N (a version) or NAME@latest.
    pub target: String,
    /// Path and query after the function name, e.g. /items?id=3.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Request body; with it the method defaults to POST.
    #[arg(long, short = 'd', conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the request body from a file.
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// HTTP method (default: GET, or POST with a body).
    #[arg(long, short = 'X')]
    pub method: Option<Method>,
    /// Request header NAME=VALUE (repeat for several).
    #[arg(long, short = 'H', value_parser = parse_key_value, value_name = "NAME=VALUE")]
    pub header: Vec<(String, String)>,
    /// Print the status line and response headers before the body.
    #[arg(long, short = 'i')]
    pub include: bool,
    /// Queue the call instead (stored durably, run later with the function's retries and
    /// destinations) and print its id; follow it with `fnhost invocations show ID --wait`.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Data plane base URL.
    #[arg(long, env = "FNHOST_URL", default_value = DEFAULT_DATA_URL, value_name = "URL")]
    pub url: String,
    /// The function's namespace: NAME means NAME.NS.
    #[arg(long, env = "FNHOST_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// An invoker key for a function with `access key` (sent as `Authorization: Bearer`).
    #[arg(
        long,
        env = "FNHOST_INVOKE_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,
}

pub async fn run(args: InvokeArgs) -> anyhow::Result<()> {
    let body: Option<Bytes> = match (&args.data, &args.data_file) {
        (Some(data), _) => Some(data.clone().into()),
        (None, Some(path)) => Some(read_file(path)?.into()),
        (None, None) => None,
    };
    let method = args.method.clone().unwrap_or(if body.is_some() {
        Method::POST
    } else {
        Method::GET
    });
    let path = if args.path.starts_with('/') {
        args.path.clone()
    } else {
        format!("/{}", args.path)
    };
    let target = match (args.target.split_once('@'), args.namespace.as_deref()) {
        (_, None) => args.target.clone(),
        (Some((name, qualifier)), Some(ns)) => {
            format!("{}@{qualifier}", crate::model::qualify(name, ns))
        }
        (None, Some(ns)) => crate::model::qualify(&args.target, ns),
    };
    let url = format!("{}/{target}{path}", args.url.trim_end_matches('/'));
    let mut request = Request::builder().method(method).uri(&url);
    if let Some(key) = &args.key {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    for (name, value) in &args.header {
        request = request.header(name, value);
    }
    if args.asynchronous {
        request = request.header(crate::async_lane::INVOCATION_TYPE, "async");
    }
    let request = request.body(Full::new(body.unwrap_or_default()))?;
    let response = http_client()
        .request(request)
        .await
        .with_context(|| format!("cannot reach the data plane at {url}; is `fnhost serve` running? (set --url or FNHOST_URL)"))?;
    if !response.status().is_success() && !args.include {
        return Err(failure(response).await.into());
    }
    if args.asynchronous && !args.include {
        let body = response.into_body().collect().await?.to_bytes();
        let accepted: crate::api::InvocationAccepted = serde_json::from_slice(&body)
            .context("the data plane's answer to an asynchronous call")?;
        println!("{}", accepted.id);
        eprintln!(
            "queued for {} version {}; follow it with: fnhost invocations show {} --wait",
            accepted.function,
            accepted.version.as_deref().unwrap_or("-"),
            accepted.id
        );
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    if args.include {
        writeln!(stdout, "{:?} {}", response.version(), response.status())?;
        for (name, value) in response.headers() {
            writeln!(
                stdout,
                "{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            )?;
        }
        writeln!(stdout)?;
    }
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            stdout.write_all(data)?;
        }
    }
    stdout.flush()?;
    Ok(())
}
