//! Request routing: from `NAME[@QUALIFIER]` to the deployment (code + config) that serves it.
//!
//! The data plane reads an immutable [`RoutingTable`] snapshot through an `ArcSwap`: a lookup
//! is a pointer load and a hash probe, takes no lock and never touches the database. Admin
//! writes build a new snapshot and swap it in whole, so a request sees either the old routes
//! or the new ones, never a mix.

mod alias;
pub mod split;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

pub use alias::AliasRoutes;

use crate::model::{
    AliasSpec, BasisPoints, DEFAULT_ALIAS, DefaultPolicy, Digest, FunctionConfig, Qualifier,
    RouteTable, ScalingPolicy, VersionLabel, WeightedRoute,
};
use alias::CompiledRule;

/// What a request runs: one function's code and config at one version.
#[derive(Debug)]
pub struct Deployment {
    pub function: Arc<str>,
    pub label: VersionLabel,
    pub digest: Digest,
    pub config: FunctionConfig,
    /// `label` rendered once for the `fnhost-version` response header.
    pub version_header: http::HeaderValue,
    /// The version's meter, looked up at its first invocation and kept for the rest.
    pub meter: std::sync::OnceLock<Arc<crate::metering::VersionMeter>>,
    /// The function's secrets, sealed (function-wide: every version sees the current ones;
    /// the config says which it reads).
    pub secrets: Arc<Vec<crate::model::SecretRow>>,
    /// Who may call the function on the data plane (function-wide, like `secrets`), checked
    /// once the request is routed, before anything else.
    pub access: crate::model::Access,
}

impl Deployment {
    pub fn new(
        function: Arc<str>,
        label: VersionLabel,
        digest: Digest,
        config: FunctionConfig,
    ) -> Self {
        let version_header =
            http::HeaderValue::from_str(&label.to_string()).expect("labels are ASCII");
        Self {
            function,
            label,
            digest,
            config,
            version_header,
            meter: std::sync::OnceLock::new(),
            secrets: Arc::default(),
            access: crate::model::Access::Public,
        }
    }
}

/// The routes of one function: its deployments and its aliases, `$DEFAULT` included.
#[derive(Debug)]
pub struct FunctionRoutes {
    pub latest: Arc<Deployment>,
    pub versions: BTreeMap<u32, Arc<Deployment>>,
    pub default: Arc<AliasRoutes>,
    pub aliases: HashMap<String, Arc<AliasRoutes>>,
    /// Provisioned concurrency, read by the scaler (not by the request path).
    pub scaling: ScalingPolicy,
}

impl FunctionRoutes {
    /// Compiles stored alias specs against the function's deployments. Specs only name
    /// versions that exist (the registry checks), so a missing one is skipped defensively.
    pub fn new<'a>(
        latest: Arc<Deployment>,
        versions: BTreeMap<u32, Arc<Deployment>>,
        default_policy: &DefaultPolicy,
        aliases: impl IntoIterator<Item = (&'a str, &'a AliasSpec)>,
    ) -> Self {
        let lookup = |label: VersionLabel| match label {
            VersionLabel::Latest => Some(latest.clone()),
            VersionLabel::Number(n) => versions.get(&n).cloned(),
        };
        let compile = |name: &str,
                       routes: &[WeightedRoute],
                       sticky: Option<&str>,
                       rules: &[crate::model::RouteRule],
                       mirror: Option<&WeightedRoute>| {
            Arc::new(AliasRoutes {
                name: Arc::from(name),
                header_value: HeaderValue::from_str(name).expect("alias names are ASCII"),
                rules: rules
                    .iter()
                    .filter_map(|rule| {
                        Some(CompiledRule {
                            header: HeaderName::from_bytes(rule.header.as_bytes()).ok()?,
                            matcher: rule.matcher.clone(),
                            target: lookup(rule.version)?,
                        })
                    })
                    .collect(),
                targets: routes
                    .iter()
                    .filter(|route| route.weight_bp > BasisPoints::ZERO)
                    .filter_map(|route| Some((lookup(route.version)?, route.weight_bp.get())))
                    .collect(),
                sticky_header: sticky.and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
                mirror: mirror.and_then(|m| Some((lookup(m.version)?, m.weight_bp.get()))),
            })
        };
        let newest = versions.keys().next_back().copied();
        let default = compile(
            DEFAULT_ALIAS,
            &default_policy.routes(newest),
            default_policy.sticky_header.as_deref(),
            &[],
            None,
        );
        let aliases = aliases
            .into_iter()
            .map(|(name, spec)| {
                let routes = compile(
                    name,
                    &spec.routes,
                    spec.sticky_header.as_deref(),
                    &spec.rules,
                    spec.mirror.as_ref(),
                );
                (name.to_string(), routes)
            })
            .collect();
        Self {
            latest,
            versions,
            default,
            aliases,
            scaling: ScalingPolicy::default(),
        }
    }

    /// The modules requests can reach now: `$LATEST`'s and those of every alias's
    /// targets (what a node fetches ahead of requests, in a fleet).
    pub fn routed_digests(&self) -> std::collections::BTreeSet<Digest> {
        std::iter::once(&self.latest)
            .chain(self.default.reachable())
            .chain(self.aliases.values().flat_map(|alias| alias.reachable()))
            .map(|deployment| deployment.digest)
            .collect()
    }

    /// The deployment of one version label, if it exists.
    pub fn deployment(&self, label: VersionLabel) -> Option<&Arc<Deployment>> {
        match label {
            VersionLabel::Latest => Some(&self.latest),
            VersionLabel::Number(n) => self.versions.get(&n),
        }
    }
}

/// What a `NAME[@QUALIFIER]` names: one deployment, or an alias that chooses per request.
#[derive(Debug)]
pub enum Resolved<'a> {
    Deployment(&'a Arc<Deployment>),
    Alias(&'a Arc<AliasRoutes>),
}

/// Why a request has no target; the data plane answers each with 404 and this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("function {0:?} not found")]
    UnknownFunction(String),
    #[error("function {function:?} has no version {qualifier}")]
    UnknownVersion { function: String, qualifier: String },
    #[error("function {function:?} has no version or alias {qualifier:?}")]
    UnknownAlias { function: String, qualifier: String },
}

/// One immutable snapshot of every function's routes.
#[derive(Debug, Default)]
pub struct RoutingTable {
    functions: HashMap<Arc<str>, Arc<FunctionRoutes>>,
    /// HTTP routes by host and path prefix, tried before the direct `/NAME@Q/` address.
    http: Arc<RouteTable>,
}

impl RoutingTable {
    /// Resolves `function[@qualifier]`: no qualifier is `$DEFAULT`; a number or `latest`
    /// names a deployment; anything else names an alias.
    pub fn resolve(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Resolved<'_>, RouteError> {
        let routes = self
            .functions
            .get(function)
            .ok_or_else(|| RouteError::UnknownFunction(function.to_string()))?;
        let Some(text) = qualifier else {
            return Ok(Resolved::Alias(&routes.default));
        };
        match Qualifier::parse(text) {
            Some(Qualifier::Latest) => Ok(Resolved::Deployment(&routes.latest)),
            Some(Qualifier::Version(n)) => routes
                .versions
                .get(&n)
                .map(Resolved::Deployment)
                .ok_or_else(|| RouteError::UnknownVersion {
                    function: function.to_string(),
                    qualifier: text.to_string(),
                }),
            None if text == DEFAULT_ALIAS => Ok(Resolved::Alias(&routes.default)),
            None => routes
                .aliases
                .get(text)
                .map(Resolved::Alias)
                .ok_or_else(|| RouteError::UnknownAlias {
                    function: function.to_string(),
                    qualifier: text.to_string(),
                }),
        }
    }

    /// The HTTP routes by host and path.
    pub fn http_routes(&self) -> &RouteTable {
        &self.http
    }

    /// One function's routes.
    pub fn function(&self, name: &str) -> Option<&Arc<FunctionRoutes>> {
        self.functions.get(name)
    }

    /// Every function's routes, in no particular order.
    pub fn functions(&self) -> impl Iterator<Item = &Arc<FunctionRoutes>> {
        self.functions.values()
    }

    /// Every function's name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(|name| &**name)
    }

    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

/// The live routing table. Readers never block; writers are serialised by the registry.
#[derive(Default)]
pub struct Router {
    table: ArcSwap<RoutingTable>,
}

impl Router {
    /// The current snapshot; hold it for the whole request so routing stays consistent.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }

    /// Swaps in a table where `function` has `routes` (or is gone, for `None`).
    ///
    /// Callers must serialise calls (the registry holds its write lock): two concurrent
    /// read-modify-write swaps would lose one update.
    pub fn replace_function(&self, function: &str, routes: Option<FunctionRoutes>) {
        let current = self.table.load();
        let mut functions = current.functions.clone();
        match routes {
            Some(routes) => functions.insert(Arc::from(function), Arc::new(routes)),
            None => functions.remove(function),
        };
        self.table.store(Arc::new(RoutingTable {
            functions,
            http: current.http.clone(),
        }));
    }

    /// Swaps in a table with these HTTP routes (serialised like `replace_function`).
    pub fn replace_http_routes(&self, http: RouteTable) {
        let current = self.table.load();
        self.table.store(Arc::new(RoutingTable {
            functions: current.functions.clone(),
            http: Arc::new(http),
        }));
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::model::{HeaderMatch, RouteRule};

    fn deployment(label: VersionLabel) -> Arc<Deployment> {
        Arc::new(Deployment::new(
            Arc::from("f"),
            label,
            Digest::of(label.to_string().as_bytes()),
            FunctionConfig::default(),
        ))
    }

    fn routes(versions: &[u32], latest_bp: u32, aliases: &[(&str, AliasSpec)]) -> FunctionRoutes {
        FunctionRoutes::new(
            deployment(VersionLabel::Latest),
            versions
                .iter()
                .map(|&n| (n, deployment(VersionLabel::Number(n))))
                .collect(),
            &DefaultPolicy {
                latest_bp: BasisPoints::new(latest_bp),
                sticky_header: None,
            },
            aliases.iter().map(|(name, spec)| (*name, spec)),
        )
    }

    fn router_with(routes: FunctionRoutes) -> Router {
        let router = Router::default();
        router.replace_function("f", Some(routes));
        router
    }

    fn pick(router: &Router, qualifier: Option<&str>, headers: &HeaderMap) -> VersionLabel {
        match router.snapshot().resolve("f", qualifier).unwrap() {
            Resolved::Deployment(d) => d.label,
            Resolved::Alias(a) => a.choose(headers).label,
        }
    }

    #[test]
    fn default_is_newest_version_else_latest() {
        let none = HeaderMap::new();
        assert_eq!(
            pick(&router_with(routes(&[], 0, &[])), None, &none),
            VersionLabel::Latest
        );
        assert_eq!(
            pick(&router_with(routes(&[1, 3], 0, &[])), None, &none),
            VersionLabel::Number(3)
        );
        assert_eq!(
            pick(&router_with(routes(&[1, 3], FULL_BP, &[])), None, &none),
            VersionLabel::Latest
        );
    }

    const FULL_BP: u32 = crate::model::FULL.get();

    #[test]
    fn default_sends_its_share_to_latest() {
        let router = router_with(routes(&[2], 1000, &[]));
        let none = HeaderMap::new();
        let to_latest = (0..20_000)
            .filter(|_| pick(&router, None, &none) == VersionLabel::Latest)
            .count();
        assert!((1700..2300).contains(&to_latest), "{to_latest} of 20000");
    }

    #[test]
    fn qualifiers_pick_versions_and_unknowns_say_what_is_missing() {
        let router = router_with(routes(&[1, 2], 0, &[]));
        let none = HeaderMap::new();
        assert_eq!(pick(&router, Some("1"), &none), VersionLabel::Number(1));
        assert_eq!(pick(&router, Some("latest"), &none), VersionLabel::Latest);
        assert_eq!(
            pick(&router, Some("$DEFAULT"), &none),
            VersionLabel::Number(2)
        );
        let table = router.snapshot();
        assert!(matches!(
            table.resolve("f", Some("9")),
            Err(RouteError::UnknownVersion { .. })
        ));
        assert!(matches!(
            table.resolve("f", Some("prod")),
            Err(RouteError::UnknownAlias { .. })
        ));
        assert_eq!(
            table.resolve("g", None).unwrap_err(),
            RouteError::UnknownFunction("g".into())
        );
    }

    #[test]
    fn rules_apply_before_weights_and_sticky_users_stay() {
        let spec = AliasSpec {
            routes: vec![
                WeightedRoute {
                    version: VersionLabel::Number(1),
                    weight_bp: BasisPoints::new(5000),
                },
                WeightedRoute {
                    version: VersionLabel::Number(2),
                    weight_bp: BasisPoints::new(5000),
                },
            ],
            sticky_header: Some("user-id".into()),
            rules: vec![RouteRule {
                header: "app-version".into(),
                matcher: HeaderMatch::Prefix("2.".into()),
                version: VersionLabel::Number(3),
            }],
            mirror: None,
        };
        let router = router_with(routes(&[1, 2, 3], 0, &[("prod", spec)]));
        let mut headers = HeaderMap::new();
        headers.insert("app-version", "2.7.1".parse().unwrap());
        headers.insert("user-id", "ada".parse().unwrap());
        for _ in 0..100 {
            assert_eq!(
                pick(&router, Some("prod"), &headers),
                VersionLabel::Number(3)
            );
        }
        headers.remove("app-version");
        let first = pick(&router, Some("prod"), &headers);
        assert_ne!(first, VersionLabel::Number(3));
        assert!((0..100).all(|_| pick(&router, Some("prod"), &headers) == first));
    }

    #[test]
    fn a_held_snapshot_is_unaffected_by_later_swaps() {
        let router = router_with(routes(&[1], 0, &[]));
        let before = router.snapshot();
        router.replace_function("f", None);
        assert!(before.resolve("f", None).is_ok());
        assert!(router.snapshot().resolve("f", None).is_err());
    }
}
