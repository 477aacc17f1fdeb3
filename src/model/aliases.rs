//! Alias records: how an alias splits traffic between versions, and the `$DEFAULT` policy.
//!
//! Weights are basis points (see `routing::split`) and must add up to exactly 100 %. These
//! types are what the database stores (as JSON) and what the routing snapshot is built from.

use serde::{Deserialize, Serialize};

use super::VersionLabel;
use super::percent::{BasisPoints, FULL};

/// The name of the built-in alias every function has.
pub const DEFAULT_ALIAS: &str = "$DEFAULT";

/// One weighted route of an alias.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedRoute {
    pub version: VersionLabel,
    pub weight_bp: BasisPoints,
}

/// How a rule compares a header's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMatch {
    Exact(String),
    Prefix(String),
}

impl HeaderMatch {
    /// Length of the value matched, in bytes.
    pub fn value_len(&self) -> usize {
        match self {
            Self::Exact(text) | Self::Prefix(text) => text.len(),
        }
    }

    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            Self::Exact(expected) => value == expected.as_bytes(),
            Self::Prefix(prefix) => value.starts_with(prefix.as_bytes()),
        }
    }
}

/// A rule: requests whose `header` matches go to `version`, before any weights apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    pub header: String,
    #[serde(flatten)]
    pub matcher: HeaderMatch,
    pub version: VersionLabel,
}

/// A custom alias: rules first, then weights; sticky by a header's value when configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasSpec {
    pub routes: Vec<WeightedRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RouteRule>,
    /// Shadow traffic: a share of the alias's requests is also sent to this version, whose
    /// answer is compared with the primary's and then dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<WeightedRoute>,
}

/// `$DEFAULT`: the newest published version, except for `latest_bp` of traffic that goes to
/// `$LATEST`. As in SCF, this is how a release is canaried, grown and rolled back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultPolicy {
    #[serde(default)]
    pub latest_bp: BasisPoints,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
}

/// A change to `$DEFAULT`'s policy; fields left `None` keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultPolicyPatch {
    pub latest_bp: Option<BasisPoints>,
    /// `Some(None)` removes the sticky header.
    pub sticky_header: Option<Option<String>>,
}

impl DefaultPolicyPatch {
    pub fn apply(&self, policy: &mut DefaultPolicy) {
        if let Some(bp) = self.latest_bp {
            policy.latest_bp = bp;
        }
        if let Some(header) = &self.sticky_header {
            policy.sticky_header = header.clone();
        }
    }
}

/// Who changed where traffic goes, and why; recorded with every alias change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Why {
    /// `admin` (the host admin token), `key:ID` (an API key) or `rollout` (the automatic
    /// rollout).
    pub actor: String,
    pub reason: String,
}

impl Why {
    pub fn admin(reason: impl Into<String>) -> Self {
        Self::by("admin", reason)
    }

    /// A change made by `actor` (`Principal::actor`).
    pub fn by(actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            reason: reason.into(),
        }
    }

    pub fn rollout(reason: impl Into<String>) -> Self {
        Self::by("rollout", reason)
    }
}

/// A change of where traffic goes, made by an automatic rollout together with its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrafficChange {
    /// `$DEFAULT`'s share to `$LATEST`, in basis points.
    LatestShare(BasisPoints),
    /// A custom alias's new spec.
    Alias { alias: String, spec: AliasSpec },
    /// Publish `$LATEST` and give it all of `$DEFAULT`'s traffic.
    Promote,
}

/// One recorded alias change. `before` / `after` are the alias as it was (for `$DEFAULT`,
/// its effective routes and sticky header), `None` when it was created or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub id: i64,
    pub function: String,
    pub alias: String,
    pub at_ms: i64,
    pub before: Option<AliasSpec>,
    pub after: Option<AliasSpec>,
    pub actor: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid alias: {0}")]
pub struct InvalidAlias(pub String);

/// Alias names share the function-name rule, minus what a qualifier already means.
pub fn check_alias_name(name: &str) -> Result<(), InvalidAlias> {
    if !super::tenancy::is_label(name) || name == "healthz" || name == "readyz" {
        return Err(InvalidAlias(format!(
            "alias name {name:?}: {}",
            super::NAME_RULE.replace("function names", "alias names")
        )));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) || name == "latest" || name == "default" {
        return Err(InvalidAlias(format!(
            "alias name {name:?} would be read as a version; choose another"
        )));
    }
    Ok(())
}

/// Header names are compared lowercase, as HTTP does.
pub fn check_header_name(name: &str) -> Result<String, InvalidAlias> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|h| h.as_str().to_string())
        .map_err(|_| InvalidAlias(format!("{name:?} is not a valid HTTP header name")))
}

/// Most weighted routes of one alias.
pub const MAX_ROUTES: usize = 100;
/// Most header rules of one alias: every request through the alias scans them.
pub const MAX_RULES: usize = 64;
/// Longest header value a rule matches.
pub const MAX_RULE_VALUE_BYTES: usize = 256;

impl AliasSpec {
    /// Checks weights, duplicates, header names and sizes (version existence is the
    /// database's job).
    pub fn validate(&mut self) -> Result<(), InvalidAlias> {
        if self.routes.is_empty() {
            return Err(InvalidAlias("an alias needs at least one route".into()));
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(InvalidAlias(format!(
                "an alias has at most {MAX_ROUTES} routes, not {}",
                self.routes.len()
            )));
        }
        if self.rules.len() > MAX_RULES {
            return Err(InvalidAlias(format!(
                "an alias has at most {MAX_RULES} header rules (each request scans them all), not {}",
                self.rules.len()
            )));
        }
        if let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.matcher.value_len() > MAX_RULE_VALUE_BYTES)
        {
            return Err(InvalidAlias(format!(
                "the rule on header {} matches a value of {} bytes; at most {MAX_RULE_VALUE_BYTES}",
                rule.header,
                rule.matcher.value_len()
            )));
        }
        let total: BasisPoints = self.routes.iter().map(|r| r.weight_bp).sum();
        if total != FULL {
            return Err(InvalidAlias(format!(
                "route weights sum to {}%, they must add up to exactly 100%",
                total
            )));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if self.routes[..i].iter().any(|r| r.version == route.version) {
                return Err(InvalidAlias(format!(
                    "version {} appears twice; give it one weight",
                    route.version
                )));
            }
        }
        if let Some(header) = &self.sticky_header {
            self.sticky_header = Some(check_header_name(header)?);
        }
        for rule in &mut self.rules {
            rule.header = check_header_name(&rule.header)?;
        }
        if let Some(mirror) = &self.mirror
            && !(BasisPoints::new(1)..=FULL).contains(&mirror.weight_bp)
        {
            return Err(InvalidAlias(format!(
                "the mirror share {}% must be above 0 and at most 100%",
                mirror.weight_bp
            )));
        }
        Ok(())
    }

    /// Every version the alias can send traffic to.
    pub fn targets(&self) -> impl Iterator<Item = VersionLabel> + '_ {
        self.routes
            .iter()
            .map(|r| r.version)
            .chain(self.rules.iter().map(|r| r.version))
            .chain(self.mirror.iter().map(|m| m.version))
    }
}

impl DefaultPolicy {
    pub fn validate(&mut self) -> Result<(), InvalidAlias> {
        if self.latest_bp > FULL {
            return Err(InvalidAlias(format!(
                "$LATEST's share {}% is more than 100%",
                self.latest_bp
            )));
        }
        if let Some(header) = &self.sticky_header {
            self.sticky_header = Some(check_header_name(header)?);
        }
        Ok(())
    }

    /// The weighted routes `$DEFAULT` resolves to, given the newest published version.
    pub fn routes(&self, newest: Option<u32>) -> Vec<WeightedRoute> {
        match newest {
            None => vec![WeightedRoute {
                version: VersionLabel::Latest,
                weight_bp: FULL,
            }],
            Some(n) => vec![
                WeightedRoute {
                    version: VersionLabel::Number(n),
                    weight_bp: self.latest_bp.rest(),
                },
                WeightedRoute {
                    version: VersionLabel::Latest,
                    weight_bp: self.latest_bp,
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(routes: &[(VersionLabel, u32)]) -> AliasSpec {
        AliasSpec {
            routes: routes
                .iter()
                .map(|&(version, weight_bp)| WeightedRoute {
                    version,
                    weight_bp: BasisPoints::new(weight_bp),
                })
                .collect(),
            sticky_header: Some("User-ID".into()),
            rules: vec![],
            mirror: None,
        }
    }

    #[test]
    fn weights_must_sum_to_exactly_100_and_the_error_says_the_sum() {
        let mut ok = spec(&[
            (VersionLabel::Number(3), 9000),
            (VersionLabel::Number(4), 1000),
        ]);
        ok.validate().unwrap();
        assert_eq!(ok.sticky_header.as_deref(), Some("user-id"));
        let mut short = spec(&[(VersionLabel::Number(3), 9000), (VersionLabel::Latest, 999)]);
        assert_eq!(
            short.validate().unwrap_err().0,
            "route weights sum to 99.99%, they must add up to exactly 100%"
        );
        let mut twice = spec(&[
            (VersionLabel::Number(3), 5000),
            (VersionLabel::Number(3), 5000),
        ]);
        assert!(twice.validate().is_err());
        assert!(spec(&[]).validate().is_err());
    }

    #[test]
    fn alias_names_exclude_qualifiers() {
        assert!(check_alias_name("prod").is_ok());
        for bad in ["3", "latest", "default", "Prod", "a_b", "$DEFAULT"] {
            assert!(check_alias_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_policy_splits_between_newest_and_latest() {
        let policy = DefaultPolicy {
            latest_bp: BasisPoints::new(1000),
            sticky_header: None,
        };
        assert_eq!(policy.routes(None).len(), 1);
        let routes = policy.routes(Some(4));
        assert_eq!(routes[0].version, VersionLabel::Number(4));
        assert_eq!(routes[0].weight_bp, BasisPoints::new(9000));
        assert_eq!(routes[1].weight_bp, BasisPoints::new(1000));
        assert!(
            DefaultPolicy {
                latest_bp: BasisPoints::new(10_001),
                sticky_header: None
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn rules_and_routes_are_bounded() {
        let rule = |value: String| RouteRule {
            header: "x-app".into(),
            matcher: HeaderMatch::Prefix(value),
            version: VersionLabel::Number(1),
        };
        let mut many = spec(&[(VersionLabel::Number(1), FULL.get())]);
        many.rules = (0..MAX_RULES + 1).map(|i| rule(i.to_string())).collect();
        let error = many.validate().unwrap_err().0;
        assert!(error.contains("at most 64 header rules"), "{error}");
        many.rules.truncate(MAX_RULES);
        assert!(many.validate().is_ok());
        many.rules = vec![rule("x".repeat(MAX_RULE_VALUE_BYTES + 1))];
        assert!(many.validate().unwrap_err().0.contains("at most 256"));
        let routes: Vec<(VersionLabel, u32)> = (1..=MAX_ROUTES as u32 + 1)
            .map(|n| (VersionLabel::Number(n), 0))
            .collect();
        let error = spec(&routes).validate().unwrap_err().0;
        assert!(error.contains("at most 100 routes"), "{error}");
    }

    #[test]
    fn rules_match_exactly_or_by_prefix() {
        assert!(HeaderMatch::Prefix("2.".into()).matches(b"2.3.1"));
        assert!(!HeaderMatch::Prefix("2.".into()).matches(b"12.0"));
        assert!(HeaderMatch::Exact("beta".into()).matches(b"beta"));
        assert!(!HeaderMatch::Exact("beta".into()).matches(b"beta2"));
    }
}

/// A stored alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasRecord {
    pub name: String,
    pub spec: AliasSpec,
    pub updated_at_ms: i64,
}
