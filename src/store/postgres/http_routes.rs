//! HTTP routes (the same table as SQLite). Writers take the table's lock first, so two
//! namespaces racing for one host and path are decided in order, by the primary key.

use postgres::Transaction;

use super::schema::database;
use crate::model::{HttpRoute, RouteMatch, RoutesChange};
use crate::store::StoreError;
use crate::store::http_routes::next_routes;

type Tx<'a, 'b> = &'a mut Transaction<'b>;

pub(super) fn all(tx: Tx) -> Result<Vec<HttpRoute>, StoreError> {
    Ok(tx
        .query(
            "SELECT host, prefix, function, qualifier, strip_prefix FROM http_routes
             ORDER BY host, prefix",
            &[],
        )
        .map_err(database)?
        .iter()
        .map(|row| HttpRoute {
            matches: RouteMatch {
                host: row.get(0),
                prefix: row.get(1),
            },
            function: row.get(2),
            qualifier: row.get(3),
            strip_prefix: row.get(4),
        })
        .collect())
}

pub(super) fn change(
    tx: Tx,
    namespace: &str,
    change: &RoutesChange,
) -> Result<Vec<HttpRoute>, StoreError> {
    tx.batch_execute("LOCK TABLE http_routes IN SHARE ROW EXCLUSIVE MODE")
        .map_err(database)?;
    let next = next_routes(all(tx)?, namespace, change)?;
    tx.execute(
        "DELETE FROM http_routes WHERE namespace = $1",
        &[&namespace],
    )
    .map_err(database)?;
    for route in &next {
        tx.execute(
            "INSERT INTO http_routes (host, prefix, namespace, function, qualifier, strip_prefix)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &route.matches.host,
                &route.matches.prefix,
                &namespace,
                &route.function,
                &route.qualifier,
                &route.strip_prefix,
            ],
        )
        .map_err(database)?;
    }
    Ok(next)
}
