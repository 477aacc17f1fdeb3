//! Commands that read or change registry state: functions, versions, publish, config, delete,
//! status. Each prints a table, or the API's JSON with `--json`.

use http::Method;
use serde::Serialize;

use super::{
    ConfigArgs, DeleteArgs, NameArgs, PublishArgs, fetch_for_table, print_json, short_digest,
};
use crate::api::{
    Deleted, FunctionDetail, FunctionList, FunctionView, NodeList, PublishRequest, Published,
    ScalingView, SetProvisioned, Status, VersionList,
};
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;

pub async fn functions(args: ClientArgs) -> anyhow::Result<()> {
    let answer: FunctionList = AdminClient::new(&args)?.get("/v1/functions").await?;
    if print_json(&args, &answer)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer
        .functions
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.newest_version.map_or("-".into(), |v| v.to_string()),
                f.version_count.to_string(),
                short_digest(&f.latest.digest),
                format!("{}Mi", f.latest.config.memory_mb),
                format!("{}ms", f.latest.config.timeout_ms),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "NAME",
                "NEWEST",
                "VERSIONS",
                "LATEST DIGEST",
                "MEMORY",
                "TIMEOUT"
            ],
            &rows
        )
    );
    Ok(())
}

pub async fn versions(args: NameArgs) -> anyhow::Result<()> {
    let answer: VersionList = AdminClient::new(&args.client)?
        .get(&format!("/v1/functions/{}/versions", args.name))
        .await?;
    if print_json(&args.client, &answer)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                short_digest(&v.digest),
                format!("{}Mi", v.config.memory_mb),
                format!("{}ms", v.config.timeout_ms),
                v.config.env.len().to_string(),
                // The registry artifact as pushed (tag, or the digest when there is none).
                v.source.as_deref().map_or("-".into(), short_source),
                v.description.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "VERSION",
                "DIGEST",
                "MEMORY",
                "TIMEOUT",
                "ENV",
                "SOURCE",
                "DESCRIPTION"
            ],
            &rows
        )
    );
    Ok(())
}

/// `oci://r/repo:tag@sha256:...` as `oci://r/repo:tag@sha256:0123456789ab`: enough to
/// tell versions apart in a table; `--json` has the whole digest.
fn short_source(source: &str) -> String {
    match source.split_once("@sha256:") {
        Some((name, hex)) => format!("{name}@sha256:{}", &hex[..hex.len().min(12)]),
        None => source.to_string(),
    }
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let answer = publish_latest(
        &AdminClient::new(&args.client)?,
        &args.name,
        args.description,
    )
    .await?;
    if print_json(&args.client, &answer)? {
        return Ok(());
    }
    let version = &answer.version;
    if answer.created {
        println!(
            "published {} version {} ({})",
            args.name, version.version, version.digest
        );
    } else {
        println!(
            "{} $LATEST is identical to version {}; nothing new to publish",
            args.name, version.version
        );
    }
    Ok(())
}

/// Publishes `name`'s `$LATEST` (shared with `deploy --publish`).
pub async fn publish_latest(
    client: &AdminClient,
    name: &str,
    description: String,
) -> anyhow::Result<Published> {
    client
        .send_json(
            Method::POST,
            &format!("/v1/functions/{name}/versions"),
            &PublishRequest { description },
        )
        .await
}

/// What `fnhost config --json` prints: the function (when one was read or changed) and its
/// warm capacity.
#[derive(Serialize)]
struct ConfigShown {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    function: Option<FunctionView>,
    scaling: ScalingView,
}

pub async fn config(args: ConfigArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.client)?;
    let env = if args.clear_env {
        Some(Default::default())
    } else {
        (!args.env.is_empty()).then(|| args.env.iter().cloned().collect())
    };
    let patch = args.limits.patch(env);
    let (name, version) = match args.name.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (args.name.as_str(), None),
    };
    if version.is_some() && (!patch.is_empty() || args.provisioned.is_none()) {
        anyhow::bail!(
            "{} names a version: only --provisioned can be set on one. A published version's \
             config is frozen; change $LATEST with `fnhost config {name} ...` and publish",
            args.name
        );
    }
    let scaling: Option<ScalingView> = match args.provisioned {
        Some(count) => Some(
            client
                .send_json(
                    Method::PUT,
                    &format!("/v1/functions/{name}/scaling"),
                    &SetProvisioned {
                        provisioned: Some(count),
                        version: version.map(str::to_string),
                    },
                )
                .await?,
        ),
        None => None,
    };
    let function: Option<FunctionView> = if !patch.is_empty() {
        Some(
            client
                .send_json(
                    Method::PATCH,
                    &format!("/v1/functions/{name}/config"),
                    &patch,
                )
                .await?,
        )
    } else if version.is_none() {
        let detail: FunctionDetail = client.get(&format!("/v1/functions/{name}")).await?;
        Some(detail.function)
    } else {
        None
    };
    let scaling = match scaling {
        Some(scaling) => scaling,
        None => client.get(&format!("/v1/functions/{name}/scaling")).await?,
    };
    let shown = ConfigShown { function, scaling };
    if print_json(&args.client, &shown)? {
        return Ok(());
    }
    if let Some(function) = &shown.function {
        print_latest_config(function);
    }
    print_scaling(&shown.scaling);
    Ok(())
}

fn print_latest_config(function: &FunctionView) {
    let latest = &function.latest;
    let config = &latest.config;
    println!("function {} ($LATEST)", function.name);
    println!("  digest:  {}", latest.digest);
    println!("  memory:  {}Mi", config.memory_mb);
    println!("  timeout: {}ms", config.timeout_ms);
    match config.cpu_budget_ms {
        0 => println!("  cpu budget: none"),
        ms => println!("  cpu budget: {ms}ms"),
    }
    println!("  max concurrency: {}", config.max_concurrency);
    println!(
        "  max bodies: request {} bytes, response {} bytes",
        config.max_request_body_bytes, config.max_response_body_bytes
    );
    if config.allow_outbound.is_empty() {
        println!("  outbound HTTP: denied");
    } else {
        println!("  outbound HTTP: {}", config.allow_outbound.join(", "));
    }
    let pairs = |label: &str, map: &std::collections::BTreeMap<String, String>| {
        println!("  {label}:");
        for (key, value) in map {
            println!("    {key}={value}");
        }
    };
    if config.env.is_empty() {
        println!("  env:     (none)");
    } else {
        pairs("env", &config.env);
    }
    if !config.config.is_empty() {
        pairs("wasi:config", &config.config);
    }
    for (label, names) in [
        ("key-value stores", &config.kv),
        ("secrets (wasi:config)", &config.secrets),
        ("secrets (env)", &config.secret_env),
    ] {
        if !names.is_empty() {
            println!("  {label}: {}", names.join(", "));
        }
    }
}

fn print_scaling(scaling: &ScalingView) {
    let policy = &scaling.policy;
    let mut provisioned = format!("{} for $DEFAULT", policy.provisioned);
    for (version, count) in &policy.versions {
        provisioned.push_str(&format!(", {count} on version {version}"));
    }
    println!("  provisioned: {provisioned}");
    if scaling.nodes > 1 {
        println!(
            "  fleet:       totals split over {} live nodes; the pools below are node {}'s part",
            scaling.nodes, scaling.node
        );
    }
    let rows: Vec<Vec<String>> = scaling
        .pools
        .iter()
        .map(|pool| {
            vec![
                pool.version.to_string(),
                pool.warm.to_string(),
                pool.target.to_string(),
                pool.provisioned.to_string(),
                pool.in_flight.to_string(),
                format!("{:.1}s", pool.idle_ms as f64 / 1000.0),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("  warm pools: none (no recent traffic, nothing provisioned)");
    } else {
        println!("  warm pools:");
        for line in table::render(
            &[
                "VERSION",
                "WARM",
                "TARGET",
                "PROVISIONED",
                "IN FLIGHT",
                "IDLE",
            ],
            &rows,
        )
        .lines()
        {
            println!("    {line}");
        }
    }
}

pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let path = match args.version {
        Some(n) => format!("/v1/functions/{}/versions/{n}", args.name),
        None => format!("/v1/functions/{}", args.name),
    };
    let answer: Deleted = AdminClient::new(&args.client)?.delete(&path).await?;
    if print_json(&args.client, &answer)? {
        return Ok(());
    }
    match args.version {
        Some(n) => println!("deleted {} version {n}", args.name),
        None => println!("deleted function {} and all its versions", args.name),
    }
    Ok(())
}

pub async fn nodes(args: ClientArgs) -> anyhow::Result<()> {
    let Some(answer) = fetch_for_table::<NodeList>(&args, "/v1/nodes").await? else {
        return Ok(());
    };
    let ago = |ms: i64| format!("{:.1}s", (answer.now_ms - ms).max(0) as f64 / 1000.0);
    let rows: Vec<Vec<String>> = answer
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.data_address.clone(),
                n.admin_address.clone(),
                n.version.clone(),
                ago(n.started_ms),
                n.in_flight.to_string(),
                n.warm_instances.to_string(),
                format!("{} ago", ago(n.heartbeat_ms)),
                if answer.rollout_driver.as_ref() == Some(&n.id) {
                    "drives rollouts".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "DATA PLANE",
                "ADMIN",
                "VERSION",
                "UPTIME",
                "IN FLIGHT",
                "WARM",
                "HEARTBEAT",
                "ROLE"
            ],
            &rows
        )
    );
    if !answer.fleet {
        println!(
            "(one node: the registry is SQLite; run nodes with --registry postgres://... for a fleet)"
        );
    }
    Ok(())
}

pub async fn status(args: ClientArgs) -> anyhow::Result<()> {
    let answer: Status = AdminClient::new(&args)?.get("/v1/status").await?;
    // The status is a flat document either way; humans get it pretty-printed too.
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
