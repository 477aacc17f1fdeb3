//! From what a manifest asks for and what the host has to the changes that close the gap, in
//! the order they must run: code and config, access, provisioned concurrency, the release,
//! aliases, triggers, routes, then (with `--prune`) what the manifest no longer names.
//!
//! Pure: the caller reads the host's state and the components' digests; `plan` compares.
//! Applying a plan and planning again gives no actions (what `fnhost apply` twice shows).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Desired, DesiredFunction, Release};
use crate::api::{
    AddTrigger, AliasRequest, AliasView, FunctionDetail, HttpRouteView, Percent, StartRollout,
    TriggerView,
};
use crate::model::{
    Access, AliasSpec, AsyncPatch, ConfigPatch, DEFAULT_ALIAS, Destination, Digest, FunctionConfig,
    HttpRoute, TriggerSource,
};

/// What the host has of one function.
#[derive(Clone, Debug)]
pub struct CurrentFunction {
    pub detail: FunctionDetail,
    pub triggers: Vec<TriggerView>,
    pub provisioned: u32,
    /// A rollout is running or paused: apply does not start another.
    pub rollout_active: bool,
}

/// What the host has of the manifest's namespace.
#[derive(Clone, Debug, Default)]
pub struct Current {
    pub functions: BTreeMap<String, CurrentFunction>,
    pub routes: Vec<HttpRouteView>,
}

/// A component as read from disk.
#[derive(Clone, Debug)]
pub struct LocalCode {
    pub digest: Digest,
}

/// One change, with what it needs to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Upload the code with the whole config (a new function, or changed code).
    Upload {
        function: String,
        created: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<Digest>,
        to: Digest,
        /// Config fields that change with it (`field: old -> new`).
        config_changes: Vec<String>,
        #[serde(skip)]
        config: FunctionConfig,
    },
    /// Change `$LATEST`'s config only.
    Config {
        function: String,
        changes: Vec<String>,
        #[serde(skip)]
        config: FunctionConfig,
    },
    Access {
        function: String,
        access: Access,
    },
    Provisioned {
        function: String,
        from: u32,
        to: u32,
    },
    /// `$DEFAULT`'s share to `$LATEST` (manual releases).
    Traffic {
        function: String,
        from: Percent,
        to: Percent,
    },
    /// Publish `$LATEST` and give it all of `$DEFAULT`.
    Promote {
        function: String,
    },
    /// Roll `$LATEST` out through `$DEFAULT`.
    Rollout {
        function: String,
        #[serde(skip)]
        start: StartRollout,
    },
    SetAlias {
        function: String,
        alias: String,
        created: bool,
        #[serde(skip)]
        request: AliasRequest,
    },
    DeleteAlias {
        function: String,
        alias: String,
    },
    AddTrigger {
        function: String,
        trigger: AddTrigger,
    },
    DeleteTrigger {
        function: String,
        id: i64,
        source: TriggerSource,
    },
    /// The namespace's routes become `routes` (all at once).
    Routes {
        added: Vec<String>,
        removed: Vec<String>,
        routes: Vec<HttpRouteView>,
    },
    DeleteFunction {
        function: String,
    },
}

/// The changes, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub namespace: String,
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// One line per change, `+` adds, `~` changes, `-` removes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for action in &self.actions {
            let line = match action {
                Action::Upload {
                    function,
                    created: true,
                    to,
                    ..
                } => format!("+ {function}: create with code {}", short(to)),
                Action::Upload {
                    function,
                    from,
                    to,
                    config_changes,
                    ..
                } => {
                    let from = from.as_ref().map_or("none".to_string(), short);
                    let mut line = format!("~ {function}: code {from} -> {}", short(to));
                    for change in config_changes {
                        line.push_str(&format!("\n~ {function}: {change}"));
                    }
                    line
                }
                Action::Config {
                    function, changes, ..
                } => changes
                    .iter()
                    .map(|c| format!("~ {function}: {c}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Action::Access { function, access } => {
                    format!("~ {function}: access {}", access.as_str())
                }
                Action::Provisioned { function, from, to } => {
                    format!("~ {function}: provisioned {from} -> {to}")
                }
                Action::Traffic { function, from, to } => {
                    format!("~ {function}: $DEFAULT sends {to}% to $LATEST (was {from}%)")
                }
                Action::Promote { function } => {
                    format!("~ {function}: publish $LATEST and send it all of $DEFAULT")
                }
                Action::Rollout { function, start } => {
                    let steps: Vec<String> =
                        start.steps_bp().iter().map(|bp| format!("{bp}%")).collect();
                    format!(
                        "~ {function}: roll $LATEST out through $DEFAULT ({})",
                        steps.join(", ")
                    )
                }
                Action::SetAlias {
                    function,
                    alias,
                    created,
                    ..
                } => format!(
                    "{} {function}: alias {alias}",
                    if *created { "+" } else { "~" }
                ),
                Action::DeleteAlias { function, alias } => format!("- {function}: alias {alias}"),
                Action::AddTrigger { function, trigger } => match trigger.source() {
                    Ok(source) => format!("+ {function}: trigger {source}"),
                    Err(_) => format!("+ {function}: trigger"),
                },
                Action::DeleteTrigger {
                    function,
                    id,
                    source,
                } => format!("- {function}: trigger {id} ({source})"),
                Action::Routes { added, removed, .. } => added
                    .iter()
                    .map(|r| format!("+ route {r}"))
                    .chain(removed.iter().map(|r| format!("- route {r}")))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Action::DeleteFunction { function } => format!("- {function}: delete function"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

fn short(digest: &Digest) -> String {
    digest.to_string()[..19].to_string()
}

/// The changes that make the host what `desired` says; `prune` also removes what it does
/// not name (functions of the namespace, aliases, triggers, routes).
pub fn plan(
    desired: &Desired,
    current: &Current,
    code: &BTreeMap<String, LocalCode>,
    prune: bool,
) -> Plan {
    let mut actions = Vec::new();
    for (id, want) in &desired.functions {
        let local = &code[id];
        function_actions(want, current.functions.get(id), local, prune, &mut actions);
    }
    if let Some(routes) = routes_action(desired, &current.routes, prune) {
        actions.push(routes);
    }
    if prune {
        for id in current.functions.keys() {
            if !desired.functions.contains_key(id) {
                actions.push(Action::DeleteFunction {
                    function: id.clone(),
                });
            }
        }
    }
    Plan {
        namespace: desired.namespace.clone(),
        actions,
    }
}

fn function_actions(
    want: &DesiredFunction,
    have: Option<&CurrentFunction>,
    local: &LocalCode,
    prune: bool,
    actions: &mut Vec<Action>,
) {
    let function = want.id.clone();
    let latest = have.map(|h| &h.detail.function.latest);
    let code_changes = latest.is_none_or(|l| l.digest != local.digest);
    let config_changes = latest.map_or_else(Vec::new, |l| config_diff(&l.config, &want.config));
    if code_changes {
        actions.push(Action::Upload {
            function: function.clone(),
            created: have.is_none(),
            from: latest.map(|l| l.digest),
            to: local.digest,
            config_changes,
            config: want.config.clone(),
        });
    } else if !config_changes.is_empty() {
        actions.push(Action::Config {
            function: function.clone(),
            changes: config_changes,
            config: want.config.clone(),
        });
    }
    let access = have.map_or(Access::Public, |h| h.detail.access);
    if access != want.access {
        actions.push(Action::Access {
            function: function.clone(),
            access: want.access,
        });
    }
    let provisioned = have.map_or(0, |h| h.provisioned);
    if provisioned != want.provisioned {
        actions.push(Action::Provisioned {
            function: function.clone(),
            from: provisioned,
            to: want.provisioned,
        });
    }
    let versions = have.map_or(&[][..], |h| &h.detail.versions[..]);
    let newest = versions.iter().max_by_key(|v| v.version);
    // Whether `$LATEST` (as it will be) differs from the newest version: what a release
    // publishes. Comparing with the version, not with what changed now, lets a re-apply
    // finish a release an earlier apply could not.
    let unreleased = newest.is_none_or(|v| v.digest != local.digest || v.config != want.config);
    match &want.release {
        Release::Manual { latest_percent } => {
            let from = have
                .and_then(|h| default_alias(&h.detail.aliases))
                .and_then(|d| d.latest_percent)
                .unwrap_or_default();
            if from != *latest_percent {
                actions.push(Action::Traffic {
                    function: function.clone(),
                    from,
                    to: *latest_percent,
                });
            }
        }
        Release::Immediate if unreleased => actions.push(Action::Promote {
            function: function.clone(),
        }),
        Release::Rollout(start) if unreleased && !have.is_some_and(|h| h.rollout_active) => {
            // A rollout compares a candidate with what serves now; the first release has
            // nothing to compare with, so it is published at once.
            actions.push(if newest.is_none() {
                Action::Promote {
                    function: function.clone(),
                }
            } else {
                Action::Rollout {
                    function: function.clone(),
                    start: start.clone(),
                }
            });
        }
        Release::Immediate | Release::Rollout(_) => {}
    }
    let have_aliases: BTreeMap<&str, &AliasView> = have
        .map(|h| {
            h.detail
                .aliases
                .iter()
                .filter(|a| a.name != DEFAULT_ALIAS)
                .map(|a| (a.name.as_str(), a))
                .collect()
        })
        .unwrap_or_default();
    for (alias, request) in &want.aliases {
        let existing = have_aliases.get(alias.as_str());
        let same =
            existing.is_some_and(|view| alias_spec(&as_request(view)) == alias_spec(request));
        if !same {
            actions.push(Action::SetAlias {
                function: function.clone(),
                alias: alias.clone(),
                created: existing.is_none(),
                request: request.clone(),
            });
        }
    }
    if prune {
        for alias in have_aliases.keys() {
            if !want.aliases.contains_key(*alias) {
                actions.push(Action::DeleteAlias {
                    function: function.clone(),
                    alias: alias.to_string(),
                });
            }
        }
    }
    let mut unmatched: Vec<&TriggerView> =
        have.map_or_else(Vec::new, |h| h.triggers.iter().collect());
    for trigger in &want.triggers {
        let wanted = trigger.source().ok();
        match unmatched
            .iter()
            .position(|t| Some(&t.source) == wanted.as_ref() && t.target == trigger.target)
        {
            Some(i) => {
                unmatched.remove(i);
            }
            None => actions.push(Action::AddTrigger {
                function: function.clone(),
                trigger: trigger.clone(),
            }),
        }
    }
    if prune {
        for trigger in unmatched {
            actions.push(Action::DeleteTrigger {
                function: function.clone(),
                id: trigger.id,
                source: trigger.source.clone(),
            });
        }
    }
}

fn default_alias(aliases: &[AliasView]) -> Option<&AliasView> {
    aliases.iter().find(|a| a.name == DEFAULT_ALIAS)
}

fn as_request(view: &AliasView) -> AliasRequest {
    AliasRequest {
        routes: view.routes.clone(),
        sticky_header: view.sticky_header.clone(),
        rules: view.rules.clone(),
        mirror: view.mirror.clone(),
    }
}

/// An alias as the host would store it, for comparing.
fn alias_spec(request: &AliasRequest) -> Option<AliasSpec> {
    let mut spec = request.clone().into_spec().ok()?;
    spec.validate().ok()?;
    Some(spec)
}

/// The routes action, if the namespace's routes must change. Without `prune`, routes the
/// manifest does not name stay.
fn routes_action(desired: &Desired, current: &[HttpRouteView], prune: bool) -> Option<Action> {
    if !desired.has_routes && !prune {
        return None;
    }
    // (match, (function, qualifier, strip_prefix)): a route as the host stores it.
    type Key = (String, (String, Option<String>, bool));
    let key = |view: &HttpRouteView| -> Option<Key> {
        let route = HttpRoute::parse(
            &desired.namespace,
            &view.matches,
            &view.target,
            view.strip_prefix,
        )
        .ok()?;
        Some((
            route.matches.to_string(),
            (route.function, route.qualifier, route.strip_prefix),
        ))
    };
    let have: BTreeMap<_, _> = current
        .iter()
        .filter_map(|v| key(v).map(|k| (k, v)))
        .collect();
    let want: BTreeMap<_, _> = desired
        .routes
        .iter()
        .filter_map(|v| key(v).map(|k| (k, v)))
        .collect();
    let want_matches: BTreeSet<&String> = want.keys().map(|(m, _)| m).collect();
    let mut routes: Vec<HttpRouteView> = want.values().map(|v| (*v).clone()).collect();
    let mut removed = Vec::new();
    for ((matches, _), view) in &have {
        if want_matches.contains(matches) {
            continue;
        }
        if prune {
            removed.push(format!("{matches} -> {}", view.target));
        } else {
            routes.push((*view).clone());
        }
    }
    let mut added = Vec::new();
    for ((matches, target), view) in &want {
        if !have.contains_key(&(matches.clone(), target.clone())) {
            let strip = if view.strip_prefix {
                " (prefix stripped)"
            } else {
                ""
            };
            added.push(format!("{matches} -> {}{strip}", view.target));
        }
    }
    // A changed route shows as added; the old one it replaces is not listed as removed.
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    Some(Action::Routes {
        added,
        removed,
        routes,
    })
}

/// `field: old -> new` for every config field that differs (maps and lists by entry).
pub fn config_diff(from: &FunctionConfig, to: &FunctionConfig) -> Vec<String> {
    let flatten = |config: &FunctionConfig| {
        let mut flat = BTreeMap::new();
        flatten_json(
            "",
            &serde_json::to_value(config).expect("configs serialize"),
            &mut flat,
        );
        flat
    };
    let (a, b) = (flatten(from), flatten(to));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(none)".into());
            format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

fn flatten_json(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The config change that sets every field to `config`'s value.
pub fn full_patch(config: &FunctionConfig) -> ConfigPatch {
    let async_policy = &config.async_policy;
    ConfigPatch {
        env: Some(config.env.clone()),
        memory_mb: Some(config.memory_mb),
        timeout_ms: Some(config.timeout_ms),
        cpu_budget_ms: Some(config.cpu_budget_ms),
        allow_outbound: Some(config.allow_outbound.clone()),
        max_concurrency: Some(config.max_concurrency),
        max_request_body_bytes: Some(config.max_request_body_bytes),
        max_response_body_bytes: Some(config.max_response_body_bytes),
        kv: Some(config.kv.clone()),
        config: Some(config.config.clone()),
        secrets: Some(config.secrets.clone()),
        secret_env: Some(config.secret_env.clone()),
        async_policy: AsyncPatch {
            retries: Some(async_policy.retries),
            backoff_ms: Some(async_policy.backoff_ms),
            concurrency: Some(async_policy.concurrency),
            on_success: Some(destination(&async_policy.on_success)),
            on_failure: Some(destination(&async_policy.on_failure)),
        },
        reuse_requests: Some(config.reuse_requests),
        concurrency_per_instance: Some(config.concurrency_per_instance),
    }
}

/// A destination as a patch sets it (`none` removes it).
fn destination(destination: &Option<Destination>) -> String {
    destination
        .as_ref()
        .map_or_else(|| "none".to_string(), Destination::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CodeView, FunctionView, VersionView};
    use std::path::Path;

    const MANIFEST: &str = r#"
[functions.web]
component = "web.wasm"
env = { GREETING = "Hello" }
release = { strategy = "immediate" }

[functions.web.aliases.prod]
routes = [{ version = 1, percent = 100 }]

[[functions.web.triggers]]
cron = "0 * * * * *"

[[routes]]
match = "shop.example.com/*"
target = "web"
"#;

    fn desired() -> Desired {
        super::super::parse(MANIFEST, Path::new("fnhost.toml"), None).unwrap()
    }

    fn code(byte: u8) -> BTreeMap<String, LocalCode> {
        [(
            "web".to_string(),
            LocalCode {
                digest: Digest::of(&[byte]),
            },
        )]
        .into()
    }

    /// The host after the manifest was applied with code `byte`.
    fn applied(desired: &Desired, byte: u8) -> Current {
        let want = &desired.functions["web"];
        let digest = Digest::of(&[byte]);
        let version = VersionView {
            function: "web".into(),
            version: 1,
            digest,
            size: 1,
            source: None,
            config: want.config.clone(),
            description: String::new(),
            created_at_ms: 0,
        };
        let detail = FunctionDetail {
            function: FunctionView {
                name: "web".into(),
                namespace: "default".into(),
                latest: CodeView {
                    digest,
                    size: 1,
                    source: None,
                    config: want.config.clone(),
                    updated_at_ms: 0,
                },
                newest_version: Some(1),
                version_count: 1,
                created_at_ms: 0,
            },
            versions: vec![version],
            aliases: vec![AliasView {
                name: "prod".into(),
                routes: want.aliases["prod"].routes.clone(),
                sticky_header: None,
                rules: Vec::new(),
                latest_percent: None,
                mirror: None,
                updated_at_ms: Some(0),
            }],
            access: Access::Public,
        };
        Current {
            functions: [(
                "web".to_string(),
                CurrentFunction {
                    detail,
                    triggers: vec![TriggerView {
                        id: 7,
                        function: "web".into(),
                        target: None,
                        source: want.triggers[0].source().unwrap(),
                        created_ms: 0,
                    }],
                    provisioned: 0,
                    rollout_active: false,
                },
            )]
            .into(),
            routes: desired.routes.clone(),
        }
    }

    fn names(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| {
                serde_json::to_value(a).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn from_nothing_everything_is_created_in_order() {
        let plan = plan(&desired(), &Current::default(), &code(1), false);
        assert_eq!(
            names(&plan),
            ["upload", "promote", "set_alias", "add_trigger", "routes"]
        );
        let text = plan.render();
        assert!(text.contains("+ web: create with code sha256:"), "{text}");
        assert!(text.contains("+ route shop.example.com/* -> web"), "{text}");
    }

    #[test]
    fn applied_state_plans_nothing() {
        let desired = desired();
        let plan = plan(&desired, &applied(&desired, 1), &code(1), true);
        assert!(plan.is_empty(), "{}", plan.render());
    }

    #[test]
    fn one_env_change_is_one_config_change_and_its_release() {
        let desired = desired();
        let current = applied(&desired, 1);
        let mut changed = desired.clone();
        let web = changed.functions.get_mut("web").unwrap();
        web.config.env.insert("GREETING".into(), "Hola".into());
        let config = web.config.clone();
        let plan = plan(&changed, &current, &code(1), false);
        assert_eq!(names(&plan), ["config", "promote"]);
        assert!(
            plan.render()
                .contains("~ web: env.GREETING: \"Hello\" -> \"Hola\""),
            "{}",
            plan.render()
        );
        // An earlier apply changed $LATEST but its release did not happen: the release is
        // still planned, the config is not.
        let mut half = current.clone();
        half.functions
            .get_mut("web")
            .unwrap()
            .detail
            .function
            .latest
            .config = config;
        assert_eq!(
            names(&super::plan(&changed, &half, &code(1), false)),
            ["promote"]
        );
    }

    #[test]
    fn new_code_uploads_and_a_rollout_is_not_started_twice() {
        let mut desired = desired();
        let web = desired.functions.get_mut("web").unwrap();
        web.release = Release::Rollout(StartRollout::default());
        let mut current = applied(&desired, 1);
        assert_eq!(
            names(&plan(&desired, &current, &code(2), false)),
            ["upload", "rollout"]
        );
        current.functions.get_mut("web").unwrap().rollout_active = true;
        assert_eq!(
            names(&plan(&desired, &current, &code(2), false)),
            ["upload"]
        );
    }

    #[test]
    fn removals_need_prune() {
        let mut desired = desired();
        let current = applied(&desired, 1);
        desired.functions.get_mut("web").unwrap().aliases.clear();
        desired.functions.get_mut("web").unwrap().triggers.clear();
        desired.routes.clear();
        assert!(plan(&desired, &current, &code(1), false).is_empty());
        assert_eq!(
            names(&plan(&desired, &current, &code(1), true)),
            ["delete_alias", "delete_trigger", "routes"]
        );
        let mut nothing = desired.clone();
        nothing.functions.clear();
        let pruned = plan(&nothing, &current, &BTreeMap::new(), true);
        assert!(names(&pruned).contains(&"delete_function".to_string()));
    }
}
