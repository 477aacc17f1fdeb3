//! The one check both backends make when a namespace's HTTP routes change, inside the
//! transaction that writes them (so two namespaces racing for a host and path cannot both
//! win).

use crate::model::{HttpRoute, RoutesChange, check_routes};
use crate::store::StoreError;

/// `namespace`'s routes after `change`, given every stored route: each is the namespace's,
/// routed once, and no match is routed by another namespace.
pub(crate) fn next_routes(
    all: Vec<HttpRoute>,
    namespace: &str,
    change: &RoutesChange,
) -> Result<Vec<HttpRoute>, StoreError> {
    let (current, others): (Vec<HttpRoute>, Vec<HttpRoute>) =
        all.into_iter().partition(|r| r.namespace() == namespace);
    let next = change.apply(current).map_err(|missing| {
        StoreError::NotFound(format!(
            "namespace {namespace:?} has no route {missing}; `fnhost route ls` lists them"
        ))
    })?;
    if let Some(stray) = next.iter().find(|r| r.namespace() != namespace) {
        return Err(StoreError::InvalidRoute(crate::model::InvalidRoute(
            format!(
                "{} targets {}, which is not a function of namespace {namespace:?}",
                stray.matches, stray.function
            ),
        )));
    }
    check_routes(&next)?;
    for route in &next {
        if let Some(taken) = others.iter().find(|o| o.matches == route.matches) {
            return Err(StoreError::Conflict(format!(
                "{} is already routed by namespace {:?}; a host and path belong to one namespace",
                route.matches,
                taken.namespace()
            )));
        }
    }
    Ok(next)
}
