//! Alias history: every change to where a function's traffic goes, manual or automatic, is
//! recorded in the same transaction as the change, with who made it and why.
//!
//! Rather than trusting each write to describe itself, [`audited`] renders every alias of the
//! function (the effective routes of `$DEFAULT` included) before and after the write and
//! records each one that differs. A publish that moves `$DEFAULT` to a new version is
//! recorded as faithfully as an explicit alias edit.

use std::collections::BTreeMap;

use super::functions::{aliases, default_policy, versions};
use crate::model::{AliasSpec, DEFAULT_ALIAS, HistoryEntry, Why};
use crate::store::StoreError;
use rusqlite::{OptionalExtension, Transaction, params};

/// Runs `write` and records each alias of `function` whose routes it changed.
pub(super) fn audited<T>(
    tx: &Transaction<'_>,
    function: &str,
    why: &Why,
    write: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                function,
                name,
                now,
                old.map(spec_json),
                new.map(spec_json),
                why.actor,
                why.reason
            ],
        )?;
    }
    Ok(out)
}

/// Every alias of `function` as the traffic it sends: `$DEFAULT` with its effective routes
/// (newest version and `$LATEST`), custom aliases as stored. Empty if the function is gone.
fn alias_views(
    tx: &Transaction<'_>,
    function: &str,
) -> Result<BTreeMap<String, AliasSpec>, StoreError> {
    let exists = tx
        .query_row(
            "SELECT 1 FROM functions WHERE name = ?1",
            [function],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    let mut views = BTreeMap::new();
    if !exists {
        return Ok(views);
    }
    let policy = default_policy(tx, function)?;
    let newest = versions(tx, function)?.last().map(|v| v.version);
    let default = AliasSpec {
        routes: policy.routes(newest),
        sticky_header: policy.sticky_header.clone(),
        rules: Vec::new(),
        mirror: None,
    };
    views.insert(DEFAULT_ALIAS.to_string(), default);
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
    tx: &Transaction<'_>,
    function: &str,
    alias: Option<&str>,
    limit: u32,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT id, alias, at_ms, before, after, actor, reason FROM alias_history
         WHERE function = ?1 AND (?2 IS NULL OR alias = ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = statement.query_map(params![function, alias, limit], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    let parse = |text: Option<String>| -> Result<Option<AliasSpec>, StoreError> {
        text.map(|t| super::parse_json(&t, "alias history entry"))
            .transpose()
    };
    rows.map(|row| {
        let (id, alias, at_ms, before, after, actor, reason) = row?;
        Ok(HistoryEntry {
            id,
            function: function.to_string(),
            alias,
            at_ms,
            before: parse(before)?,
            after: parse(after)?,
            actor,
            reason,
        })
    })
    .collect()
}
