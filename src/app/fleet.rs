//! The node's part in a fleet: its heartbeat (membership, load) and following the changes
//! other nodes commit, so every node's routing table (and its view of rollouts, whose
//! health it publishes) tracks the shared registry. On a
//! store no other node shares (SQLite) the heartbeat still runs, so `fnhost nodes` shows the
//! one node, and there is no change feed.

use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::model::{HEARTBEAT_MS, NodeRecord, now_ms};
use crate::shutdown::Stop;
use crate::store::{Change, ChangeFeed};

/// The backstop behind the change feed: every node re-reads the whole registry this often,
/// so a change whose notification was lost is in force within this long.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Writes this node's heartbeat every [`HEARTBEAT_MS`] until shutdown, then leaves.
pub(super) async fn heartbeat(app: Arc<App>, mut node: NodeRecord, mut stop: Stop) {
    let mut ticker = tokio::time::interval(Duration::from_millis(HEARTBEAT_MS as u64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.stopped() => break,
        }
        node.heartbeat_ms = now_ms();
        node.in_flight = u64::from(app.invoker.admission.host_in_flight());
        node.warm_instances = u64::from(app.scaler.warm_total());
        match app.registry.heartbeat(node.clone()).await {
            Ok(live) => {
                failing = false;
                resplit(&app, &node.id, live);
            }
            Err(e) if !failing => {
                failing = true;
                if e.outage().is_none() {
                    tracing::warn!(error = %e, "could not write this node's heartbeat");
                }
            }
            Err(_) => {}
        }
    }
    if let Err(e) = app.registry.leave(node.id.clone()).await {
        tracing::warn!(error = %e, "could not leave the fleet's membership");
    }
}

/// Re-splits the fleet's capacity over the live nodes (see `NodeShare`) when membership
/// changed: each node finds its place among the live nodes ordered by id.
fn resplit(app: &App, id: &str, mut nodes: Vec<NodeRecord>) {
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let Some(index) = nodes.iter().position(|n| n.id == id) else {
        return;
    };
    let count = nodes.len() as u32;
    if app.scaler.share().set(index as u32, count) {
        tracing::info!(
            node = index + 1,
            nodes = count,
            "capacity re-split: this node takes its part of every function's concurrency and provisioned totals"
        );
    }
}

/// Applies other nodes' changes as they arrive, and every [`RESYNC_EVERY`] re-reads
/// everything if anything changed since the last full read, until shutdown.
pub(super) async fn follow(
    app: Arc<App>,
    feed: Arc<tokio::sync::Mutex<ChangeFeed>>,
    mut stop: Stop,
) {
    let mut feed = feed.lock().await;
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await; // the feed asks for a resync itself once it is listening
    loop {
        let change = tokio::select! {
            change = feed.recv() => match change {
                Some(change) => change,
                None => return,
            },
            _ = resync.tick() => {
                backstop(&app).await;
                continue;
            }
            () = stop.stopped() => return,
        };
        apply(&app, change).await;
    }
}

/// The periodic resync, skipped when the store's change serial says nothing changed since
/// the last full read.
async fn backstop(app: &App) {
    match app.registry.resync_if_changed().await {
        Ok(None) => {}
        Ok(Some(gone)) => {
            resynced(app, gone).await;
            app.events.timers_changed.notify_one();
        }
        Err(e) if e.outage().is_some() => {}
        Err(e) => tracing::warn!(error = %e, "could not resync with the registry"),
    }
}

/// After a full re-read: forgets the functions gone and re-reads every rollout.
async fn resynced(app: &App, gone: Vec<String>) {
    if let Err(e) = app.apply_tenancy().await {
        tracing::warn!(error = %e, "could not resync namespaces and keys with the registry");
    }
    for name in gone {
        app.forget_function(&name).await;
    }
    if let Err(e) = app.rollouts.reload().await {
        tracing::warn!(error = %e, "could not resync rollouts with the registry");
    }
}

async fn apply(app: &Arc<App>, change: Change) {
    match change {
        Change::Function(name) => match app.registry.refresh(&name).await {
            // Routes first, then the rollout, whose warm-up needs the candidate routed.
            Ok(true) => {
                prefetch(app, &name);
                if let Err(e) = app.rollouts.refresh(&name).await {
                    tracing::warn!(function = %name, error = %e, "could not read another node's rollout change; resyncing later");
                }
            }
            Ok(false) => app.forget_function(&name).await,
            Err(e) => {
                tracing::warn!(function = %name, error = %e, "could not apply another node's change; resyncing later");
            }
        },
        Change::Tenancy => {
            if let Err(e) = app.apply_tenancy().await {
                tracing::warn!(error = %e, "could not apply another node's namespace or key change; resyncing later");
            }
            return;
        }
        Change::Routes => {
            if let Err(e) = app.registry.reload_http_routes().await {
                tracing::warn!(error = %e, "could not apply another node's route change; resyncing later");
            }
            return;
        }
        Change::Resync => match app.registry.resync().await {
            Ok(gone) => resynced(app, gone).await,
            Err(e) => tracing::warn!(error = %e, "could not resync with the registry"),
        },
    }
    // Triggers may have changed with the function.
    app.events.timers_changed.notify_one();
}

/// The longest wait between two tries of a prefetch while the object store is down.
const PREFETCH_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Fetches (and loads) the code of every version `function` now routes to that this node
/// has not loaded, ahead of its requests: otherwise a version another node deployed is
/// fetched from the object store by its first request here, and an outage of the store
/// then would fail that request. While the store is down, each fetch is retried with
/// backoff for as long as the version stays routed.
fn prefetch(app: &Arc<App>, function: &str) {
    let Some(routes) = app.router.snapshot().function(function).cloned() else {
        return;
    };
    for digest in routes.routed_digests() {
        if app.engine.loaded_now(&digest).is_some() {
            continue;
        }
        let (app, function) = (app.clone(), function.to_string());
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match app.engine.load(digest).await {
                    Ok(_) => return,
                    Err(crate::engine::PrepareError::Unavailable(_)) => {}
                    // The first request will meet (and report) it again.
                    Err(e) => {
                        tracing::warn!(%function, %digest, error = %e, "could not fetch another node's version ahead of its requests");
                        return;
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(PREFETCH_BACKOFF_MAX);
                let still_routed = app
                    .router
                    .snapshot()
                    .function(&function)
                    .is_some_and(|routes| routes.routed_digests().contains(&digest));
                if !still_routed {
                    return;
                }
            }
        });
    }
}
