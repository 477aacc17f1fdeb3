//! Alias history, as `store/sqlite/audit.rs`: every alias of the function is rendered before
//! and after a write, and each one that differs is recorded in the same transaction.

use std::collections::BTreeMap;

use postgres::Transaction;

use super::functions::{aliases, default_policy, versions};
use super::schema::database;
use crate::model::{AliasSpec, DEFAULT_ALIAS, HistoryEntry, Why};
use crate::store::StoreError;
use crate::store::decode::parse_json;

/// Runs `write` and records each alias of `function` whose routes it changed.
pub(super) fn audited<T>(
    tx: &mut Transaction<'_>,
    function: &str,
    why: &Why,
    write: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let before = alias_views(tx, function)?;
    let out = write(tx)?;
    let after = alias_views(tx, function)?;
    let now = crate::model::now_ms();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let (old, new) = (before.get(name), after.get(name));
        if old == new {
            continue;
        }
        tx.execute(
            "INSERT INTO alias_history (function, alias, at_ms, before, after, actor, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &function,
                name,
                &now,
                &old.map(spec_json),
                &new.map(spec_json),
                &why.actor,
                &why.reason,
            ],
        )
        .map_err(database)?;
    }
    Ok(out)
}

/// Every alias of `function` as the traffic it sends; empty if the function is gone.
fn alias_views(
    tx: &mut Transaction<'_>,
    function: &str,
) -> Result<BTreeMap<String, AliasSpec>, StoreError> {
    let mut views = BTreeMap::new();
    let exists = tx
        .query_opt("SELECT 1 FROM functions WHERE name = $1", &[&function])
        .map_err(database)?
        .is_some();
    if !exists {
        return Ok(views);
    }
    let policy = default_policy(tx, function)?;
    let newest = versions(tx, function)?.last().map(|v| v.version);
    views.insert(
        DEFAULT_ALIAS.to_string(),
        AliasSpec {
            routes: policy.routes(newest),
            sticky_header: policy.sticky_header.clone(),
            rules: Vec::new(),
            mirror: None,
        },
    );
    for alias in aliases(tx, function)? {
        views.insert(alias.name, alias.spec);
    }
    Ok(views)
}

fn spec_json(spec: &AliasSpec) -> String {
    serde_json::to_string(spec).expect("alias specs serialize")
}

/// The newest `limit` changes of `function` (one alias, or all), newest first.
pub(super) fn history(
    tx: &mut Transaction<'_>,
    function: &str,
    alias: Option<&str>,
    limit: u32,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let rows = tx
        .query(
            "SELECT id, alias, at_ms, before, after, actor, reason FROM alias_history
             WHERE function = $1 AND ($2::TEXT IS NULL OR alias = $2)
             ORDER BY id DESC LIMIT $3",
            &[&function, &alias, &i64::from(limit)],
        )
        .map_err(database)?;
    let parse = |text: Option<String>| -> Result<Option<AliasSpec>, StoreError> {
        text.map(|t| parse_json(&t, "alias history entry"))
            .transpose()
    };
    rows.iter()
        .map(|row| {
            Ok(HistoryEntry {
                id: row.get(0),
                function: function.to_string(),
                alias: row.get(1),
                at_ms: row.get(2),
                before: parse(row.get(3))?,
                after: parse(row.get(4))?,
                actor: row.get(5),
                reason: row.get(6),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FULL, VersionLabel, WeightedRoute};
    use crate::store::postgres::functions::{publish, store_alias};

    #[test]
    fn every_traffic_change_is_recorded_with_who_and_why() {
        let mut client = super::super::tests::database_with_function("f");
        let mut tx = client.transaction().unwrap();
        audited(&mut tx, "f", &Why::admin("publish"), |tx| {
            publish(tx, "f", "", false, 1)
        })
        .unwrap();
        let spec = AliasSpec {
            routes: vec![WeightedRoute {
                version: VersionLabel::Number(1),
                weight_bp: FULL,
            }],
            sticky_header: None,
            rules: Vec::new(),
            mirror: None,
        };
        audited(&mut tx, "f", &Why::rollout("step"), |tx| {
            store_alias(tx, "f", "prod", &spec, 2)
        })
        .unwrap();
        // A write that moves no traffic is not recorded.
        audited(&mut tx, "f", &Why::admin("nothing"), |_| Ok(())).unwrap();
        let changes = history(&mut tx, "f", None, 10).unwrap();
        let seen: Vec<(&str, &str, bool)> = changes
            .iter()
            .map(|h| (h.alias.as_str(), h.reason.as_str(), h.before.is_none()))
            .collect();
        assert_eq!(
            seen,
            [("prod", "step", true), ("$DEFAULT", "publish", false)]
        );
        assert_eq!(changes[0].actor, "rollout");
        assert_eq!(changes[0].after.as_ref(), Some(&spec));
        assert_eq!(history(&mut tx, "f", Some("prod"), 10).unwrap().len(), 1);
    }
}
