//! `fnhost apply`: make a host what a manifest (`fnhost.toml`) says, showing the plan first;
//! `fnhost export`: write what a host runs as a manifest, with its components.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use http::Method;
use serde::de::IgnoredAny;

use super::print_json;
use super::registry::{Planned, RegistryArgs, fetch_planned, plan_component};
use crate::api::{
    AddTrigger, AliasRequest, FunctionDetail, FunctionList, HttpRouteList, PromoteRequest,
    RolloutPhase, RolloutView, ScalingView, SetAccess, SetProvisioned, TrafficRequest, TriggerList,
};
use crate::cli::ClientArgs;
use crate::cli::client::{AdminClient, ApiFailure};
use crate::cli::manifest::plan::{self, Action, Current, CurrentFunction, LocalCode, full_patch};
use crate::cli::manifest::{self, AsyncSpec, FunctionSpec, Manifest, ReleaseSpec, Strategy};
use crate::model::{AsyncPolicy, DEFAULT_ALIAS, DEFAULT_NAMESPACE, FunctionConfig, namespace_of};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The manifest (see README.md, "Manifests").
    #[arg(
        short = 'f',
        long = "file",
        default_value = "fnhost.toml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
    /// Print the plan and change nothing. Build commands still run: the plan compares the
    /// components' digests with the host's.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove what the manifest does not name: the namespace's other functions, and
    /// aliases, triggers and routes it leaves out.
    #[arg(long)]
    pub prune: bool,
    /// Wait for the rollouts this apply starts to end; fail if one is rolled back.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the manifest (`-` for stdout).
    #[arg(
        short = 'o',
        long = "output",
        default_value = "fnhost.toml",
        value_name = "FILE"
    )]
    pub output: PathBuf,
    /// Where the components are saved, relative to the manifest's directory.
    #[arg(long, default_value = "components", value_name = "DIR")]
    pub code_dir: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let desired = manifest::load(&args.file, args.client.namespace.as_deref())?;
    let base = match args.file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    build(&desired, base, !args.client.json)?;
    let mut code = BTreeMap::new();
    let mut wasm = BTreeMap::new();
    for (id, function) in &desired.functions {
        let (digest, planned) = plan_component(&function.component, &args.registry)
            .await
            .with_context(|| {
                format!(
                    "{}: functions.{}.component",
                    args.file.display(),
                    function.name
                )
            })?;
        code.insert(id.clone(), LocalCode { digest });
        wasm.insert(id.clone(), planned);
    }
    let client = AdminClient::new(&ClientArgs {
        namespace: Some(desired.namespace.clone()),
        ..args.client.clone()
    })?;
    let current = read_current(&client, &desired.namespace).await?;
    let plan = plan::plan(&desired, &current, &code, args.prune);
    if args.client.json && args.dry_run {
        print_json(&args.client, &plan)?;
        return Ok(());
    }
    if plan.is_empty() {
        if !args.client.json {
            println!(
                "no changes: namespace {} is what {} says",
                desired.namespace,
                args.file.display()
            );
        } else {
            print_json(&args.client, &plan)?;
        }
        return Ok(());
    }
    if !args.client.json {
        println!(
            "plan for namespace {} ({} change{}):",
            desired.namespace,
            plan.actions.len(),
            if plan.actions.len() == 1 { "" } else { "s" }
        );
        print!("{}", plan.render());
    }
    if args.dry_run {
        return Ok(());
    }
    let mut rollouts = Vec::new();
    for action in &plan.actions {
        if let Some(started) = run(
            &client,
            action,
            &mut wasm,
            &args.registry,
            !args.client.json,
        )
        .await?
        {
            rollouts.push(started);
        }
    }
    if args.client.json {
        print_json(&args.client, &plan)?;
    } else {
        println!("applied {} change(s)", plan.actions.len());
    }
    if args.wait {
        for started in rollouts {
            let name = started.function.clone();
            let ended = super::rollout::follow(&client, &name, started, !args.client.json).await?;
            super::rollout::succeeded(&name, &ended)?;
        }
    }
    Ok(())
}

/// Runs each distinct build command once, in the manifest's directory, its output on stderr.
fn build(desired: &manifest::Desired, base: &Path, show: bool) -> anyhow::Result<()> {
    let mut done = std::collections::BTreeSet::new();
    for function in desired.functions.values() {
        let Some(command) = &function.build else {
            continue;
        };
        if !done.insert(command.clone()) {
            continue;
        }
        if show {
            eprintln!("building {}: {command}", function.name);
        }
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(base)
            .stdout(stderr_for_child())
            .status()
            .with_context(|| format!("cannot run the build of {}: {command}", function.name))?;
        if !status.success() {
            anyhow::bail!(
                "the build of {} failed ({status}): {command}; nothing was applied",
                function.name
            );
        }
    }
    Ok(())
}

/// Our stderr as a child's stdout, so build output never mixes into `--json` answers.
fn stderr_for_child() -> std::process::Stdio {
    use std::os::fd::AsFd as _;
    std::io::stderr().as_fd().try_clone_to_owned().map_or_else(
        |_| std::process::Stdio::inherit(),
        std::process::Stdio::from,
    )
}

/// What the host has of `namespace`.
async fn read_current(client: &AdminClient, namespace: &str) -> anyhow::Result<Current> {
    let list: FunctionList = client.get("/v1/functions").await?;
    let mut functions = BTreeMap::new();
    for view in list.functions {
        let id = view.name.clone();
        if namespace_of(&id) != namespace {
            continue;
        }
        functions.insert(id.clone(), read_function(client, &id).await?);
    }
    let routes: HttpRouteList = client
        .get(&format!("/v1/namespaces/{namespace}/routes"))
        .await?;
    Ok(Current {
        functions,
        routes: routes.routes,
    })
}

async fn read_function(client: &AdminClient, id: &str) -> anyhow::Result<CurrentFunction> {
    let detail: FunctionDetail = client.get(&format!("/v1/functions/{id}")).await?;
    let triggers: TriggerList = client.get(&format!("/v1/functions/{id}/triggers")).await?;
    let scaling: ScalingView = client.get(&format!("/v1/functions/{id}/scaling")).await?;
    let rollout: Option<RolloutView> =
        optional(client.get(&format!("/v1/functions/{id}/rollout")).await)?;
    Ok(CurrentFunction {
        detail,
        triggers: triggers.triggers,
        provisioned: scaling.policy.provisioned,
        rollout_active: rollout
            .is_some_and(|r| matches!(r.phase, RolloutPhase::Running | RolloutPhase::Paused)),
    })
}

/// `None` for a 404.
fn optional<T>(answer: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(e)
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|f| f.status == 404) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Carries out one action; a started rollout is returned for `--wait`.
async fn run(
    client: &AdminClient,
    action: &Action,
    wasm: &mut BTreeMap<String, Planned>,
    registry: &RegistryArgs,
    show: bool,
) -> anyhow::Result<Option<RolloutView>> {
    let fail = |what: String| move |e: anyhow::Error| e.context(what);
    match action {
        Action::Upload {
            function, config, ..
        } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("config", &serde_json::to_string(&full_patch(config))?);
            let planned = wasm
                .remove(function)
                .with_context(|| format!("no component read for {function}"))?;
            let component = fetch_planned(planned, registry).await?;
            if let Some(source) = &component.source {
                query.append_pair("source", source);
            }
            super::deploy::upload(
                client,
                function,
                &component.what,
                component.wasm,
                &query.finish(),
                show,
            )
            .await
            .map_err(fail(format!("uploading {function}")))?;
        }
        Action::Config {
            function, config, ..
        } => {
            let _: IgnoredAny = client
                .send_json(
                    Method::PATCH,
                    &format!("/v1/functions/{function}/config"),
                    &full_patch(config),
                )
                .await
                .map_err(fail(format!("changing the config of {function}")))?;
        }
        Action::Access { function, access } => {
            let _: IgnoredAny = client
                .send_json(
                    Method::PUT,
                    &format!("/v1/functions/{function}/access"),
                    &SetAccess { access: *access },
                )
                .await?;
        }
        Action::Provisioned { function, to, .. } => {
            let _: IgnoredAny = client
                .send_json(
                    Method::PUT,
                    &format!("/v1/functions/{function}/scaling"),
                    &SetProvisioned {
                        provisioned: Some(*to),
                        version: None,
                    },
                )
                .await?;
        }
        Action::Traffic { function, to, .. } => {
            let _: IgnoredAny = client
                .send_json(
                    Method::PUT,
                    &format!("/v1/functions/{function}/traffic"),
                    &TrafficRequest {
                        latest_percent: Some(*to),
                        sticky_header: None,
                    },
                )
                .await?;
        }
        Action::Promote { function } => {
            let _: IgnoredAny = client
                .send_json(
                    Method::POST,
                    &format!("/v1/functions/{function}/promote"),
                    &PromoteRequest {
                        description: "fnhost apply".to_string(),
                    },
                )
                .await
                .map_err(fail(format!("releasing {function}")))?;
        }
        Action::Rollout { function, start } => {
            let started: RolloutView = client
                .send_json(
                    Method::POST,
                    &format!("/v1/functions/{function}/rollout"),
                    start,
                )
                .await
                .map_err(fail(format!("starting the rollout of {function}")))?;
            if show {
                println!("{function}: {}", started.reason);
            }
            return Ok(Some(started));
        }
        Action::SetAlias {
            function,
            alias,
            request,
            ..
        } => {
            let _: IgnoredAny = client
                .send_json(
                    Method::PUT,
                    &format!("/v1/functions/{function}/aliases/{alias}"),
                    request,
                )
                .await
                .map_err(fail(format!("setting alias {alias} of {function}")))?;
        }
        Action::DeleteAlias { function, alias } => {
            let _: IgnoredAny = client
                .delete(&format!("/v1/functions/{function}/aliases/{alias}"))
                .await?;
        }
        Action::AddTrigger { function, trigger } => {
            let _: IgnoredAny = client
                .send_json(
                    Method::POST,
                    &format!("/v1/functions/{function}/triggers"),
                    trigger,
                )
                .await
                .map_err(fail(format!("adding a trigger of {function}")))?;
        }
        Action::DeleteTrigger { function, id, .. } => {
            let _: IgnoredAny = client
                .delete(&format!("/v1/functions/{function}/triggers/{id}"))
                .await?;
        }
        Action::Routes { routes, .. } => {
            let namespace = client_namespace(client);
            let _: IgnoredAny = client
                .send_json(
                    Method::PUT,
                    &format!("/v1/namespaces/{namespace}/routes"),
                    &HttpRouteList {
                        namespace: String::new(),
                        routes: routes.clone(),
                    },
                )
                .await
                .map_err(fail("setting the routes".to_string()))?;
        }
        Action::DeleteFunction { function } => {
            let _: IgnoredAny = client.delete(&format!("/v1/functions/{function}")).await?;
        }
    }
    Ok(None)
}

fn client_namespace(client: &AdminClient) -> String {
    client.namespace().unwrap_or(DEFAULT_NAMESPACE).to_string()
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let namespace = args
        .client
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let client = AdminClient::new(&ClientArgs {
        namespace: Some(namespace.clone()),
        ..args.client.clone()
    })?;
    let current = read_current(&client, &namespace).await?;
    let to_stdout = args.output == Path::new("-");
    let base = if to_stdout {
        PathBuf::from(".")
    } else {
        args.output
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let code_dir = base.join(&args.code_dir);
    std::fs::create_dir_all(&code_dir)
        .with_context(|| format!("cannot create {}", code_dir.display()))?;
    let mut functions = BTreeMap::new();
    for (id, function) in &current.functions {
        let name = id.split('.').next().unwrap_or(id).to_string();
        // Code pulled from a registry is written as the reference it was pinned to.
        if let Some(source) = &function.detail.function.latest.source {
            functions.insert(name, spec_of(function, source));
            continue;
        }
        let response = client
            .send(
                Method::GET,
                &format!("/v1/functions/{id}/code"),
                Default::default(),
                &[],
            )
            .await?;
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .with_context(|| format!("downloading the code of {id}"))?
            .to_bytes();
        let file = args.code_dir.join(format!("{name}.wasm"));
        std::fs::write(base.join(&file), &bytes)
            .with_context(|| format!("cannot write {}", base.join(&file).display()))?;
        functions.insert(name, spec_of(function, &file.display().to_string()));
    }
    let manifest = Manifest {
        namespace: (namespace != DEFAULT_NAMESPACE).then_some(namespace),
        functions,
        routes: current.routes,
    };
    let text = format!(
        "# Written by `fnhost export`; `fnhost apply -f {}` makes a host match it.\n{}",
        args.output.display(),
        toml::to_string_pretty(&manifest).context("writing the manifest")?
    );
    if to_stdout {
        print!("{text}");
    } else {
        std::fs::write(&args.output, text)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        eprintln!(
            "wrote {} ({} function{}, components in {})",
            args.output.display(),
            manifest.functions.len(),
            if manifest.functions.len() == 1 {
                ""
            } else {
                "s"
            },
            code_dir.display()
        );
    }
    Ok(())
}

/// A function as the manifest writes it: only what differs from the defaults.
fn spec_of(function: &CurrentFunction, component: &str) -> FunctionSpec {
    let config = &function.detail.function.latest.config;
    let defaults = FunctionConfig::default();
    // A field the manifest writes only when it is not the default, in the manifest's units.
    fn unless_default<T: PartialEq + Copy>(
        value: T,
        default: T,
        show: fn(T) -> String,
    ) -> Option<String> {
        (value != default).then(|| show(value))
    }
    let size: fn(u64) -> String = |bytes| {
        if bytes.is_multiple_of(1 << 20) {
            format!("{}Mi", bytes >> 20)
        } else {
            bytes.to_string()
        }
    };
    let default_alias = function
        .detail
        .aliases
        .iter()
        .find(|a| a.name == DEFAULT_ALIAS);
    let latest_percent = default_alias
        .and_then(|a| a.latest_percent)
        .unwrap_or_default();
    FunctionSpec {
        component: component.to_string(),
        build: None,
        memory: unless_default(config.memory_mb, defaults.memory_mb, |mb| format!("{mb}Mi")),
        timeout: unless_default(config.timeout_ms, defaults.timeout_ms, |ms| {
            format!("{ms}ms")
        }),
        cpu_budget: unless_default(config.cpu_budget_ms, defaults.cpu_budget_ms, |ms| {
            format!("{ms}ms")
        }),
        max_concurrency: (config.max_concurrency != defaults.max_concurrency)
            .then_some(config.max_concurrency),
        reuse: (config.reuse_requests != defaults.reuse_requests).then_some(config.reuse_requests),
        concurrency_per_instance: (config.concurrency_per_instance
            != defaults.concurrency_per_instance)
            .then_some(config.concurrency_per_instance),
        max_request_body: unless_default(
            config.max_request_body_bytes,
            defaults.max_request_body_bytes,
            size,
        ),
        max_response_body: unless_default(
            config.max_response_body_bytes,
            defaults.max_response_body_bytes,
            size,
        ),
        allow_outbound: config.allow_outbound.clone(),
        env: config.env.clone(),
        kv: config.kv.clone(),
        config: config.config.clone(),
        secrets: config.secrets.clone(),
        secret_env: config.secret_env.clone(),
        async_policy: async_spec(&config.async_policy),
        access: function.detail.access,
        provisioned: function.provisioned,
        aliases: function
            .detail
            .aliases
            .iter()
            .filter(|a| a.name != DEFAULT_ALIAS)
            .map(|a| {
                (
                    a.name.clone(),
                    AliasRequest {
                        routes: a.routes.clone(),
                        sticky_header: a.sticky_header.clone(),
                        rules: a.rules.clone(),
                        mirror: a.mirror.clone(),
                    },
                )
            })
            .collect(),
        triggers: function
            .triggers
            .iter()
            .map(|t| AddTrigger::of(&t.source, t.target.clone()))
            .collect(),
        release: (latest_percent.0.get() != 0).then(|| ReleaseSpec {
            strategy: Strategy::Manual,
            latest_percent: Some(latest_percent),
            ..Default::default()
        }),
    }
}

/// The manifest's `async` table for `policy`: only what differs from the defaults.
fn async_spec(policy: &AsyncPolicy) -> Option<AsyncSpec> {
    let defaults = AsyncPolicy::default();
    (*policy != defaults).then(|| AsyncSpec {
        retries: (policy.retries != defaults.retries).then_some(policy.retries),
        backoff: (policy.backoff_ms != defaults.backoff_ms)
            .then(|| format!("{}ms", policy.backoff_ms)),
        concurrency: (policy.concurrency != defaults.concurrency).then_some(policy.concurrency),
        on_success: policy.on_success.as_ref().map(ToString::to_string),
        on_failure: policy.on_failure.as_ref().map(ToString::to_string),
    })
}
