//! Where traffic goes: aliases, `$DEFAULT`'s share to `$LATEST`, promote, and the history
//! of every change.

use serde::{Deserialize, Serialize};

use super::{Percent, VersionView};
use crate::model::{AliasSpec, HeaderMatch, RouteRule, VersionLabel, WeightedRoute};

/// A weighted route: `{"version": 3, "percent": 90}` (`"$LATEST"` or `"latest"` for
/// `$LATEST`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub version: VersionLabel,
    pub percent: Percent,
}

/// A header rule: requests whose `header` equals `exact` (or starts with `prefix`) go to
/// `version`, before weights apply. Exactly one of `exact` and `prefix` is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub header: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub version: VersionLabel,
}

/// An alias; `$DEFAULT` also reports `latest_percent`, custom aliases `updated_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasView {
    pub name: String,
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_percent: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<i64>,
}

/// `GET /v1/functions/NAME/aliases`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasList {
    pub function: String,
    pub aliases: Vec<AliasView>,
}

/// `PUT /v1/functions/NAME/aliases/ALIAS`: routes summing to 100, optionally sticky, rules
/// and a mirror (shadow traffic: `{"version": 5, "percent": 20}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasRequest {
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Route>,
}

/// `PUT /v1/functions/NAME/traffic`: `$DEFAULT`'s share to `$LATEST`, and optionally its
/// sticky header (`null` removes it; absent keeps it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_percent: Option<Percent>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub sticky_header: Option<Option<String>>,
}

/// Tells an explicit `null` (`Some(None)`: clear) from an absent field (`None`: keep).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /v1/functions/NAME/promote`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    #[serde(default)]
    pub description: String,
}

/// What promote answers: the version published (or found identical) and `$DEFAULT` now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    pub created: bool,
    pub version: VersionView,
    pub default: AliasView,
}

/// `GET /v1/functions/NAME/history`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub function: String,
    pub changes: Vec<HistoryChange>,
}

/// One change to an alias. `before` / `after` are the alias as it was stored (weights in
/// basis points), `null` when it was created or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryChange {
    pub id: i64,
    pub function: String,
    pub alias: String,
    pub at_ms: i64,
    pub before: Option<AliasSpec>,
    pub after: Option<AliasSpec>,
    /// `admin` or `rollout`.
    pub actor: String,
    pub reason: String,
}

impl From<&WeightedRoute> for Route {
    fn from(route: &WeightedRoute) -> Self {
        Self {
            version: route.version,
            percent: Percent(route.weight_bp),
        }
    }
}

impl From<&Route> for WeightedRoute {
    fn from(route: &Route) -> Self {
        Self {
            version: route.version,
            weight_bp: route.percent.0,
        }
    }
}

impl From<&RouteRule> for Rule {
    fn from(rule: &RouteRule) -> Self {
        let (exact, prefix) = match &rule.matcher {
            HeaderMatch::Exact(value) => (Some(value.clone()), None),
            HeaderMatch::Prefix(prefix) => (None, Some(prefix.clone())),
        };
        Self {
            header: rule.header.clone(),
            exact,
            prefix,
            version: rule.version,
        }
    }
}

impl Rule {
    pub fn into_model(self) -> Result<RouteRule, String> {
        let matcher = match (self.exact, self.prefix) {
            (Some(value), None) => HeaderMatch::Exact(value),
            (None, Some(prefix)) => HeaderMatch::Prefix(prefix),
            _ => {
                return Err(format!(
                    "rule on {:?} needs exactly one of \"exact\" or \"prefix\"",
                    self.header
                ));
            }
        };
        Ok(RouteRule {
            header: self.header,
            matcher,
            version: self.version,
        })
    }
}

impl AliasRequest {
    /// The alias this request asks for (validated further by `AliasSpec::validate`).
    pub fn into_spec(self) -> Result<AliasSpec, String> {
        if self.routes.is_empty() {
            return Err(
                "an alias needs routes: {\"routes\": [{\"version\": 3, \"percent\": 90}, ...]}"
                    .into(),
            );
        }
        Ok(AliasSpec {
            routes: self.routes.iter().map(WeightedRoute::from).collect(),
            sticky_header: self.sticky_header,
            rules: self
                .rules
                .into_iter()
                .map(Rule::into_model)
                .collect::<Result<_, _>>()?,
            mirror: self.mirror.as_ref().map(WeightedRoute::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BasisPoints;

    #[test]
    fn alias_requests_read_exactly_and_rules_need_one_matcher() {
        let request: AliasRequest = serde_json::from_str(
            r#"{"routes": [{"version": 3, "percent": 99.99}, {"version": "latest", "percent": 0.01}],
                "rules": [{"header": "app-version", "prefix": "2.", "version": 4}]}"#,
        )
        .unwrap();
        let spec = request.into_spec().unwrap();
        assert_eq!(spec.routes[1].weight_bp, BasisPoints::new(1));
        assert_eq!(spec.rules[0].matcher, HeaderMatch::Prefix("2.".into()));
        let both = Rule {
            header: "x".into(),
            exact: Some("a".into()),
            prefix: Some("b".into()),
            version: VersionLabel::Latest,
        };
        assert!(both.into_model().unwrap_err().contains("exactly one"));
        assert!(serde_json::from_str::<AliasRequest>(r#"{"routes": [], "weights": 1}"#).is_err());
    }

    #[test]
    fn traffic_request_tells_null_from_absent() {
        let keep: TrafficRequest = serde_json::from_str(r#"{"latest_percent": 5}"#).unwrap();
        assert_eq!(keep.sticky_header, None);
        let clear: TrafficRequest = serde_json::from_str(r#"{"sticky_header": null}"#).unwrap();
        assert_eq!(clear.sticky_header, Some(None));
        let text = serde_json::to_string(&clear).unwrap();
        assert_eq!(text, r#"{"sticky_header":null}"#);
    }
}
