//! HTTP routes (the same table as PostgreSQL).

use rusqlite::{Transaction, params};

use crate::model::{HttpRoute, RouteMatch, RoutesChange};
use crate::store::StoreError;
use crate::store::http_routes::next_routes;

pub(super) fn all(tx: &Transaction<'_>) -> Result<Vec<HttpRoute>, StoreError> {
    let mut statement = tx.prepare_cached(
        "SELECT host, prefix, function, qualifier, strip_prefix FROM http_routes
         ORDER BY host, prefix",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(HttpRoute {
            matches: RouteMatch {
                host: row.get(0)?,
                prefix: row.get(1)?,
            },
            function: row.get(2)?,
            qualifier: row.get(3)?,
            strip_prefix: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn change(
    tx: &Transaction<'_>,
    namespace: &str,
    change: &RoutesChange,
) -> Result<Vec<HttpRoute>, StoreError> {
    let next = next_routes(all(tx)?, namespace, change)?;
    tx.execute(
        "DELETE FROM http_routes WHERE namespace = ?1",
        params![namespace],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO http_routes (host, prefix, namespace, function, qualifier, strip_prefix)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for route in &next {
        insert.execute(params![
            route.matches.host,
            route.matches.prefix,
            namespace,
            route.function,
            route.qualifier,
            route.strip_prefix
        ])?;
    }
    Ok(next)
}
