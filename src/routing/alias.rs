//! An alias compiled for the data plane: rules, weighted targets and an optional sticky
//! header, ready to choose a deployment for a request without allocating.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Deployment;
use super::split::{TargetId, key_hash, pick_by_roll, pick_sticky};
use crate::model::FULL;
use crate::model::{HeaderMatch, VersionLabel};

/// One alias of one function, as of one routing snapshot.
#[derive(Debug)]
pub struct AliasRoutes {
    pub name: Arc<str>,
    /// `name`, pre-rendered for the `fnhost-alias` response header.
    pub header_value: HeaderValue,
    pub(super) rules: Vec<CompiledRule>,
    pub(super) targets: Vec<(Arc<Deployment>, u32)>,
    pub(super) sticky_header: Option<HeaderName>,
    /// Shadow traffic: this share (basis points) of requests is also sent to a version.
    pub(super) mirror: Option<(Arc<Deployment>, u32)>,
}

#[derive(Debug)]
pub(super) struct CompiledRule {
    pub header: HeaderName,
    pub matcher: HeaderMatch,
    pub target: Arc<Deployment>,
}

impl AliasRoutes {
    /// The version a request should also be mirrored to, rolled per request.
    pub fn mirror(&self) -> Option<&Arc<Deployment>> {
        let (target, bp) = self.mirror.as_ref()?;
        (*bp >= FULL.get() || fastrand::u32(0..FULL.get()) < *bp).then_some(target)
    }

    /// Every deployment this alias can send a request to: its rules' targets, its weighted
    /// targets and its mirror.
    pub fn reachable(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.rules
            .iter()
            .map(|rule| &rule.target)
            .chain(self.targets.iter().map(|(d, _)| d))
            .chain(self.mirror.iter().map(|(d, _)| d))
    }

    /// The deployments weights send traffic to, with their weights in basis points.
    pub fn weighted_targets(&self) -> &[(Arc<Deployment>, u32)] {
        &self.targets
    }

    /// Picks the deployment for a request: the first matching rule, else a weighted choice,
    /// sticky by the configured header's value when the request has it, random otherwise.
    pub fn choose(&self, headers: &HeaderMap) -> &Arc<Deployment> {
        for rule in &self.rules {
            if headers
                .get_all(&rule.header)
                .iter()
                .any(|value| rule.matcher.matches(value.as_bytes()))
            {
                return &rule.target;
            }
        }
        if let [(only, _)] = self.targets.as_slice() {
            return only;
        }
        let weights = self.targets.iter().map(|(_, w)| *w);
        let index = match self
            .sticky_header
            .as_ref()
            .and_then(|header| headers.get(header))
        {
            Some(value) => pick_sticky(
                key_hash(value.as_bytes()),
                self.targets.iter().map(|(d, w)| (target_id(d.label), *w)),
            ),
            None => pick_by_roll(weights, fastrand::u32(0..FULL.get())),
        };
        &self.targets[index].0
    }
}

/// `$LATEST` and each version number hash as themselves, so a version keeps its users when
/// other routes are added or removed.
fn target_id(label: VersionLabel) -> TargetId {
    match label {
        VersionLabel::Latest => u64::MAX,
        VersionLabel::Number(n) => n as u64,
    }
}
