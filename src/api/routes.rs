//! HTTP routes of a namespace: `GET|PUT|POST|DELETE /v1/namespaces/NS/routes`.

use serde::{Deserialize, Serialize};

/// One route as written by people and manifests: `match` is `HOST/PATH/*` or `/PATH/*`,
/// `target` is `NAME[@QUALIFIER]` in the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteView {
    #[serde(rename = "match")]
    pub matches: String,
    pub target: String,
    /// The function sees the path after the prefix (`/api/cart/items` -> `/items`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_prefix: bool,
}

/// A namespace's routes: what `GET` answers, and what `PUT` sets (all at once, replacing
/// the namespace's routes in one atomic change).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRouteList {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub routes: Vec<HttpRouteView>,
}
