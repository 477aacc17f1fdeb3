//! Commands that read or change registry state: functions, versions, publish, config, delete,
//! status. Each prints a table, or the API's JSON with `--json`.

use http::Method;
use serde_json::Value;

use super::{ConfigArgs, DeleteArgs, NameArgs, PublishArgs};
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;

pub async fn functions(args: ClientArgs) -> anyhow::Result<()> {
    let answer = AdminClient::new(&args)?
        .call(Method::GET, "/v1/functions", None)
        .await?;
    if print_json(&args, &answer)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list(&answer["functions"])
        .iter()
        .map(|f| {
            vec![
                text(&f["name"]),
                f["newest_version"]
                    .as_u64()
                    .map_or("-".into(), |v| v.to_string()),
                text(&f["version_count"]),
                short_digest(&f["latest"]["digest"]),
                format!("{}Mi", f["latest"]["config"]["memory_mb"]),
                format!("{}ms", f["latest"]["config"]["timeout_ms"]),
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
    let answer = AdminClient::new(&args.client)?
        .call(
            Method::GET,
            &format!("/v1/functions/{}/versions", args.name),
            None,
        )
        .await?;
    if print_json(&args.client, &answer)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list(&answer["versions"])
        .iter()
        .map(|v| {
            vec![
                text(&v["version"]),
                short_digest(&v["digest"]),
                format!("{}Mi", v["config"]["memory_mb"]),
                format!("{}ms", v["config"]["timeout_ms"]),
                v["config"]["env"]
                    .as_object()
                    .map_or(0, |env| env.len())
                    .to_string(),
                text(&v["description"]),
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
                "DESCRIPTION"
            ],
            &rows
        )
    );
    Ok(())
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let answer = AdminClient::new(&args.client)?
        .call(
            Method::POST,
            &format!("/v1/functions/{}/versions", args.name),
            Some(serde_json::json!({ "description": args.description })),
        )
        .await?;
    if print_json(&args.client, &answer)? {
        return Ok(());
    }
    let version = &answer["version"];
    if answer["created"].as_bool() == Some(true) {
        println!(
            "published {} version {} ({})",
            args.name,
            version["version"],
            text(&version["digest"])
        );
    } else {
        println!(
            "{} $LATEST is identical to version {}; nothing new to publish",
            args.name, version["version"]
        );
    }
    Ok(())
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
    let scaling = match args.provisioned {
        Some(count) => Some(
            client
                .call(
                    Method::PUT,
                    &format!("/v1/functions/{name}/scaling"),
                    Some(serde_json::json!({ "provisioned": count, "version": version })),
                )
                .await?,
        ),
        None => None,
    };
    let answer = if !patch.is_empty() {
        Some(
            client
                .call(
                    Method::PATCH,
                    &format!("/v1/functions/{name}/config"),
                    Some(serde_json::to_value(&patch)?),
                )
                .await?,
        )
    } else if version.is_none() {
        Some(
            client
                .call(Method::GET, &format!("/v1/functions/{name}"), None)
                .await?,
        )
    } else {
        None
    };
    let scaling = match scaling {
        Some(scaling) => scaling,
        None => {
            client
                .call(Method::GET, &format!("/v1/functions/{name}/scaling"), None)
                .await?
        }
    };
    let shown = match answer {
        Some(Value::Object(mut config)) => {
            config.insert("scaling".into(), scaling.clone());
            Value::Object(config)
        }
        _ => scaling.clone(),
    };
    if print_json(&args.client, &shown)? {
        return Ok(());
    }
    if shown.get("latest").is_some() {
        print_latest_config(&shown);
    }
    print_scaling(&scaling);
    Ok(())
}

fn print_latest_config(answer: &Value) {
    let latest = &answer["latest"];
    println!("function {} ($LATEST)", text(&answer["name"]));
    println!("  digest:  {}", text(&latest["digest"]));
    println!("  memory:  {}Mi", latest["config"]["memory_mb"]);
    let config = &latest["config"];
    println!("  timeout: {}ms", config["timeout_ms"]);
    match config["cpu_budget_ms"].as_u64() {
        Some(ms) if ms > 0 => println!("  cpu budget: {ms}ms"),
        _ => println!("  cpu budget: none"),
    }
    println!("  max concurrency: {}", config["max_concurrency"]);
    println!(
        "  max bodies: request {} bytes, response {} bytes",
        config["max_request_body_bytes"], config["max_response_body_bytes"]
    );
    let outbound: Vec<String> = config["allow_outbound"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if outbound.is_empty() {
        println!("  outbound HTTP: denied");
    } else {
        println!("  outbound HTTP: {}", outbound.join(", "));
    }
    let env = latest["config"]["env"].as_object();
    match env {
        Some(env) if !env.is_empty() => {
            println!("  env:");
            for (key, value) in env {
                println!("    {key}={}", text(value));
            }
        }
        _ => println!("  env:     (none)"),
    }
}

fn print_scaling(scaling: &Value) {
    let policy = &scaling["policy"];
    let mut provisioned = format!("{} for $DEFAULT", policy["provisioned"]);
    if let Some(versions) = policy["versions"].as_object() {
        for (version, count) in versions {
            provisioned.push_str(&format!(", {count} on version {version}"));
        }
    }
    println!("  provisioned: {provisioned}");
    let rows: Vec<Vec<String>> = list(&scaling["pools"])
        .iter()
        .map(|pool| {
            vec![
                text(&pool["version"]),
                text(&pool["warm"]),
                text(&pool["target"]),
                text(&pool["provisioned"]),
                text(&pool["in_flight"]),
                format!("{:.1}s", pool["idle_ms"].as_f64().unwrap_or(0.0) / 1000.0),
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
    let answer = AdminClient::new(&args.client)?
        .call(Method::DELETE, &path, None)
        .await?;
    if print_json(&args.client, &answer)? {
        return Ok(());
    }
    match args.version {
        Some(n) => println!("deleted {} version {n}", args.name),
        None => println!("deleted function {} and all its versions", args.name),
    }
    Ok(())
}

pub async fn status(args: ClientArgs) -> anyhow::Result<()> {
    let answer = AdminClient::new(&args)?
        .call(Method::GET, "/v1/status", None)
        .await?;
    // The status is a flat document either way; humans get it pretty-printed too.
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

fn print_json(args: &ClientArgs, answer: &Value) -> anyhow::Result<bool> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    }
    Ok(args.json)
}

fn list(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `sha256:` plus 12 hex digits: enough to tell versions apart in a table.
fn short_digest(value: &Value) -> String {
    let full = text(value);
    full.chars().take("sha256:".len() + 12).collect()
}
