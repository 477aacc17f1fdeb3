//! Request routing: from `NAME[@QUALIFIER]` to the deployment (code + config) that serves it.
//!
//! The data plane reads an immutable [`RoutingTable`] snapshot through an `ArcSwap`: a lookup
//! is a pointer load and a hash probe, takes no lock and never touches the database. Admin
//! writes build a new snapshot and swap it in whole, so a request sees either the old routes
//! or the new ones, never a mix.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::registry::{Digest, FunctionConfig, Qualifier, VersionLabel};

/// What a request runs: one function's code and config at one version.
#[derive(Debug)]
pub struct Deployment {
    pub function: Arc<str>,
    pub label: VersionLabel,
    pub digest: Digest,
    pub config: FunctionConfig,
    /// `label` rendered once for the `fnhost-version` response header.
    pub version_header: http::HeaderValue,
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
        }
    }
}

/// The routes of one function.
#[derive(Debug)]
pub struct FunctionRoutes {
    pub latest: Arc<Deployment>,
    pub versions: BTreeMap<u32, Arc<Deployment>>,
}

impl FunctionRoutes {
    /// The target of a plain `/NAME/...` request: the newest published version, else `$LATEST`.
    pub fn default_target(&self) -> &Arc<Deployment> {
        self.versions
            .last_key_value()
            .map(|(_, d)| d)
            .unwrap_or(&self.latest)
    }
}

/// Why a request has no target; the data plane answers each with 404 and this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("function {0:?} not found")]
    UnknownFunction(String),
    #[error("function {function:?} has no version {qualifier}")]
    UnknownVersion { function: String, qualifier: String },
    #[error(
        "function {function:?}: {qualifier:?} is not a version; use a version number or 'latest'"
    )]
    BadQualifier { function: String, qualifier: String },
}

/// One immutable snapshot of every function's routes.
#[derive(Debug, Default)]
pub struct RoutingTable {
    functions: HashMap<Arc<str>, Arc<FunctionRoutes>>,
}

impl RoutingTable {
    pub fn resolve(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<&Arc<Deployment>, RouteError> {
        let routes = self
            .functions
            .get(function)
            .ok_or_else(|| RouteError::UnknownFunction(function.to_string()))?;
        let Some(text) = qualifier else {
            return Ok(routes.default_target());
        };
        match Qualifier::parse(text) {
            Some(Qualifier::Latest) => Ok(&routes.latest),
            Some(Qualifier::Version(n)) => {
                routes
                    .versions
                    .get(&n)
                    .ok_or_else(|| RouteError::UnknownVersion {
                        function: function.to_string(),
                        qualifier: text.to_string(),
                    })
            }
            None => Err(RouteError::BadQualifier {
                function: function.to_string(),
                qualifier: text.to_string(),
            }),
        }
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
        self.table.store(Arc::new(RoutingTable { functions }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(label: VersionLabel, byte: u8) -> Arc<Deployment> {
        Arc::new(Deployment::new(
            Arc::from("f"),
            label,
            Digest::of(&[byte]),
            FunctionConfig::default(),
        ))
    }

    fn router_with(versions: &[u32]) -> Router {
        let router = Router::default();
        router.replace_function(
            "f",
            Some(FunctionRoutes {
                latest: deployment(VersionLabel::Latest, 0),
                versions: versions
                    .iter()
                    .map(|&n| (n, deployment(VersionLabel::Number(n), n as u8)))
                    .collect(),
            }),
        );
        router
    }

    #[test]
    fn default_is_newest_version_else_latest() {
        let table = router_with(&[]).snapshot();
        assert_eq!(
            table.resolve("f", None).unwrap().label,
            VersionLabel::Latest
        );
        let table = router_with(&[1, 3]).snapshot();
        assert_eq!(
            table.resolve("f", None).unwrap().label,
            VersionLabel::Number(3)
        );
    }

    #[test]
    fn qualifiers_pick_versions_and_unknowns_say_what_is_missing() {
        let router = router_with(&[1, 2]);
        let table = router.snapshot();
        assert_eq!(
            table.resolve("f", Some("1")).unwrap().label,
            VersionLabel::Number(1)
        );
        assert_eq!(
            table.resolve("f", Some("latest")).unwrap().label,
            VersionLabel::Latest
        );
        assert!(matches!(
            table.resolve("f", Some("9")),
            Err(RouteError::UnknownVersion { .. })
        ));
        assert!(matches!(
            table.resolve("f", Some("x!")),
            Err(RouteError::BadQualifier { .. })
        ));
        assert_eq!(
            table.resolve("g", None).unwrap_err(),
            RouteError::UnknownFunction("g".into())
        );
    }

    #[test]
    fn a_held_snapshot_is_unaffected_by_later_swaps() {
        let router = router_with(&[1]);
        let before = router.snapshot();
        router.replace_function("f", None);
        assert!(before.resolve("f", None).is_ok());
        assert!(router.snapshot().resolve("f", None).is_err());
    }
}
