//! The registry: functions, their `$LATEST` code and config, and immutable published versions.
//!
//! It fronts durable state (a [`MetadataStore`] and the [`ModuleStore`]) and keeps the data
//! plane's [`Router`] in step with it: every write commits to disk first, then swaps in
//! new routes, all under one async lock so writes apply in the order they committed.

mod event_store;
mod tenancy;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::dependencies::Dependencies;
use crate::model::{
    AliasSpec, BasisPoints, ConfigPatch, DefaultPolicyPatch, Digest, FunctionInfo, FunctionName,
    HealthSample, HistoryEntry, HttpRoute, InvalidConfig, MAX_PROVISIONED, NODE_EXPIRY_MS, NewCode,
    NodeRecord, RouteTable, RoutesChange, ScalingPolicy, TrafficChange, VersionLabel, Why,
    check_alias_name, now_ms,
};
use crate::routing::{Deployment, FunctionRoutes, Router};
use crate::store::{
    ChangeFeed, FunctionRows, MetadataLocation, MetadataStore, ModuleStore, Published, SharedBlobs,
    SharedStore, StoreError, StoredRollout,
};

pub struct Registry {
    db: Arc<dyn MetadataStore>,
    /// Told of every call's outcome, so an outage of the database or the disk is known (and
    /// logged once) however it is met.
    dependencies: Arc<Dependencies>,
    /// Whether other nodes write to `db` too.
    shared: bool,
    modules: Arc<ModuleStore>,
    router: Arc<Router>,
    /// Serialises writes so the routing snapshot follows commit order.
    writes: tokio::sync::Mutex<()>,
    /// The store's change serial when everything was last read (see `resync_if_changed`).
    synced: std::sync::Mutex<Option<i64>>,
    /// Every namespace and its quotas, as last read (`reload_namespaces`).
    namespaces:
        arc_swap::ArcSwap<std::collections::BTreeMap<String, crate::model::NamespaceRecord>>,
}

impl Registry {
    /// Opens (or creates) the metadata store at `location` and the module blobs in
    /// `data_dir` (and in `shared_blobs`, the fleet's object store, when given), removes what
    /// a crash may have left behind, and loads every function's routes into `router`.
    pub fn open(
        location: &MetadataLocation,
        data_dir: &Path,
        shared_blobs: Option<SharedStore>,
        router: Arc<Router>,
        dependencies: Arc<Dependencies>,
    ) -> Result<Self, StoreError> {
        let db = location.open()?;
        let shared = location.is_shared();
        let shared_blobs = match shared_blobs {
            None => None,
            Some(store) => Some(SharedBlobs {
                store,
                artifact_key: artifact_key(&*db)?,
                dependencies: Some(dependencies.clone()),
            }),
        };
        let modules = ModuleStore::open(data_dir.join("modules"), shared_blobs)?;
        let known = db.known_modules()?;
        for digest in modules.list()? {
            if !known.contains(&digest) {
                tracing::info!(%digest, "removing orphaned module left by an interrupted upload");
                modules.remove(&digest)?;
            }
        }
        let namespaces = db
            .namespaces()?
            .into_iter()
            .map(|ns| (ns.name.clone(), ns))
            .collect();
        let all = db.load_all()?;
        for rows in &all {
            router.replace_function(&rows.info.name, Some(routes_of(rows)));
        }
        router.replace_http_routes(RouteTable::new(db.http_routes()?));
        tracing::info!(functions = all.len(), "registry loaded");
        Ok(Self {
            db,
            dependencies,
            shared,
            modules: Arc::new(modules),
            router,
            writes: tokio::sync::Mutex::new(()),
            synced: std::sync::Mutex::new(None),
            namespaces: arc_swap::ArcSwap::from_pointee(namespaces),
        })
    }

    /// The metadata store itself, for `wasi:keyvalue` (whose values live there but are
    /// not registry state: no write lock, no routes).
    pub fn db(&self) -> Arc<dyn MetadataStore> {
        self.db.clone()
    }

    pub fn modules(&self) -> &Arc<ModuleStore> {
        &self.modules
    }

    /// Every module digest the metadata references.
    pub async fn known_modules(&self) -> Result<std::collections::HashSet<Digest>, StoreError> {
        self.blocking(|db| db.known_modules()).await
    }

    /// Persists a batch of usage (one transaction). Needs no write lock: usage rows are
    /// independent of functions and routes.
    pub async fn add_usage(&self, rows: Vec<crate::model::UsageRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| db.add_usage(&rows)).await
    }

    pub async fn usage(
        &self,
        function: Option<String>,
        since_minute: i64,
    ) -> Result<Vec<crate::model::UsageRow>, StoreError> {
        self.blocking(move |db| db.usage(function.as_deref(), since_minute))
            .await
    }

    pub async fn list(&self) -> Result<Vec<FunctionInfo>, StoreError> {
        let all = self.blocking(|db| db.load_all()).await?;
        Ok(all.into_iter().map(|rows| rows.info).collect())
    }

    pub async fn function(&self, name: &str) -> Result<FunctionRows, StoreError> {
        let name = name.to_string();
        let rows = self.blocking(move |db| db.function(&name)).await?;
        Ok(rows)
    }

    /// Makes `wasm` the function's `$LATEST` (creating the function on first upload) with
    /// `patch` applied to its config. The bytes are durable before the metadata names them.
    /// With `latest_bp`, `$DEFAULT`'s share to `$LATEST` is set in the same commit
    /// (`deploy --traffic`). `code` describes `wasm` (its digest and size) and its source.
    pub async fn set_latest(
        &self,
        name: &FunctionName,
        wasm: Bytes,
        code: NewCode,
        patch: ConfigPatch,
        latest_bp: Option<BasisPoints>,
        why: Why,
    ) -> Result<FunctionInfo, StoreError> {
        debug_assert_eq!(code.size, wasm.len() as u64);
        let _write = self.writes.lock().await;
        self.check_deploy(name, &patch).await?;
        let modules = self.modules.clone();
        let digest = code.digest;
        let local = wasm.clone();
        let written = tokio::task::spawn_blocking(move || modules.put(&digest, &local))
            .await
            .expect("module write task panicked")
            .map_err(StoreError::from);
        crate::store::observe_failure(&self.dependencies, &written);
        written?;
        self.modules.publish(&digest, wasm).await?;
        let fname = name.to_string();
        self.blocking(move |db| db.set_latest(&fname, &code, &patch, latest_bp, now_ms(), &why))
            .await?;
        Ok(self.refresh_routes(name.as_str()).await?.info)
    }

    /// Changes `$LATEST`'s config; published versions keep theirs.
    pub async fn update_config(
        &self,
        name: &str,
        patch: ConfigPatch,
    ) -> Result<FunctionInfo, StoreError> {
        let _write = self.writes.lock().await;
        self.check_config(name, &patch).await?;
        let fname = name.to_string();
        self.blocking(move |db| db.set_latest_config(&fname, &patch, now_ms()))
            .await?;
        Ok(self.refresh_routes(name).await?.info)
    }

    /// Sets provisioned concurrency for the function (`version` None) or one version.
    pub async fn set_provisioned(
        &self,
        name: &str,
        version: Option<VersionLabel>,
        count: u32,
    ) -> Result<ScalingPolicy, StoreError> {
        if count > MAX_PROVISIONED {
            return Err(InvalidConfig(format!(
                "provisioned concurrency {count} is above the maximum of {MAX_PROVISIONED}"
            ))
            .into());
        }
        let _write = self.writes.lock().await;
        self.check_provisioned(name, version, count).await?;
        let fname = name.to_string();
        let policy = self
            .blocking(move |db| db.set_provisioned(&fname, version, count))
            .await?;
        self.refresh_routes(name).await?;
        Ok(policy)
    }

    /// Freezes `$LATEST` as a new version (or returns the newest one if identical). With
    /// `promote`, `$DEFAULT` then sends all its traffic to that version.
    pub async fn publish(
        &self,
        name: &str,
        description: String,
        promote: bool,
        why: Why,
    ) -> Result<Published, StoreError> {
        let _write = self.writes.lock().await;
        self.check_versions_quota(name).await?;
        let fname = name.to_string();
        let published = self
            .blocking(move |db| db.publish(&fname, &description, promote, now_ms(), &why))
            .await?;
        self.refresh_routes(name).await?;
        Ok(published)
    }

    /// Creates or replaces a custom alias. The change is durable before it is visible.
    pub async fn set_alias(
        &self,
        function: &str,
        alias: &str,
        mut spec: AliasSpec,
        why: Why,
    ) -> Result<FunctionRows, StoreError> {
        check_alias_name(alias)?;
        spec.validate()?;
        self.write(function, {
            let (function, alias) = (function.to_string(), alias.to_string());
            move |db| db.set_alias(&function, &alias, &spec, now_ms(), &why)
        })
        .await
    }

    pub async fn delete_alias(
        &self,
        function: &str,
        alias: &str,
        why: Why,
    ) -> Result<FunctionRows, StoreError> {
        self.write(function, {
            let (function, alias) = (function.to_string(), alias.to_string());
            move |db| db.delete_alias(&function, &alias, &why)
        })
        .await
    }

    /// Changes `$DEFAULT`: the share of traffic to `$LATEST` and/or its sticky header.
    pub async fn set_default_policy(
        &self,
        function: &str,
        latest_bp: Option<BasisPoints>,
        sticky_header: Option<Option<String>>,
        why: Why,
    ) -> Result<FunctionRows, StoreError> {
        self.write(function, {
            let function = function.to_string();
            let patch = DefaultPolicyPatch {
                latest_bp,
                sticky_header,
            };
            move |db| db.set_default_policy(&function, &patch, &why)
        })
        .await
    }

    /// Stores a rollout's state (JSON, opaque here) and applies its traffic change in one
    /// commit if the stored rollout is still at `revision` (see
    /// [`MetadataStore::save_rollout`]), then refreshes routes. Returns the new revision.
    pub async fn save_rollout(
        &self,
        function: &str,
        revision: i64,
        state: String,
        change: Option<TrafficChange>,
        why: Why,
    ) -> Result<i64, StoreError> {
        let _write = self.writes.lock().await;
        let fname = function.to_string();
        let revision = self
            .blocking(move |db| {
                db.save_rollout(&fname, revision, &state, change.as_ref(), &why, now_ms())
            })
            .await?;
        self.refresh_routes(function).await?;
        Ok(revision)
    }

    /// `function`'s stored rollout, if any.
    pub async fn rollout(&self, function: &str) -> Result<Option<StoredRollout>, StoreError> {
        let function = function.to_string();
        self.blocking(move |db| db.rollout(&function)).await
    }

    /// Every stored rollout.
    pub async fn rollouts(&self) -> Result<Vec<StoredRollout>, StoreError> {
        self.blocking(|db| db.rollouts()).await
    }

    /// The newest `limit` alias changes of `function` (or one alias), newest first.
    pub async fn alias_history(
        &self,
        function: &str,
        alias: Option<String>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let function = function.to_string();
        self.blocking(move |db| db.alias_history(&function, alias.as_deref(), limit))
            .await
    }

    /// Re-reads one function another node changed and swaps in its routes, under the write
    /// lock so routes still follow commit order. Returns false when the function is gone.
    pub async fn refresh(&self, name: &str) -> Result<bool, StoreError> {
        let _write = self.writes.lock().await;
        match self.refresh_routes(name).await {
            Ok(_) => Ok(true),
            Err(StoreError::UnknownFunction(_)) => {
                self.router.replace_function(name, None);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The periodic backstop: [`Self::resync`] unless the store says nothing changed since
    /// the last one (`None` then), so an idle fleet does not re-read its whole registry on
    /// every node every period.
    pub async fn resync_if_changed(&self) -> Result<Option<Vec<String>>, StoreError> {
        let serial = self.blocking(|db| db.change_serial()).await?;
        let synced = *self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if serial.is_some() && serial == synced {
            return Ok(None);
        }
        self.resync().await.map(Some)
    }

    /// Re-reads every function (after changes may have been missed) and swaps in their
    /// routes; returns the functions that are gone.
    pub async fn resync(&self) -> Result<Vec<String>, StoreError> {
        let _write = self.writes.lock().await;
        // Read before the functions: a change committed meanwhile moves the serial past
        // this, and the next periodic resync reads again.
        let serial = self.blocking(|db| db.change_serial()).await?;
        let all = self.blocking(|db| db.load_all()).await?;
        let present: std::collections::HashSet<&str> =
            all.iter().map(|rows| rows.info.name.as_str()).collect();
        let gone: Vec<String> = self
            .router
            .snapshot()
            .names()
            .filter(|name| !present.contains(name))
            .map(str::to_string)
            .collect();
        for rows in &all {
            self.router
                .replace_function(&rows.info.name, Some(routes_of(rows)));
        }
        for name in &gone {
            self.router.replace_function(name, None);
        }
        self.load_http_routes().await?;
        *self.synced.lock().unwrap_or_else(|p| p.into_inner()) = serial;
        Ok(gone)
    }

    /// Changes `namespace`'s HTTP routes and swaps the new route table in. Each route's
    /// target must exist now (function, and version or alias); one deleted later answers
    /// 404 saying so.
    pub async fn change_http_routes(
        &self,
        namespace: &str,
        change: RoutesChange,
    ) -> Result<Vec<HttpRoute>, StoreError> {
        let _write = self.writes.lock().await;
        let targets: Vec<&HttpRoute> = match &change {
            RoutesChange::Replace(routes) => routes.iter().collect(),
            RoutesChange::Put(route) => vec![route],
            RoutesChange::Delete(_) => Vec::new(),
        };
        let table = self.router.snapshot();
        for route in targets {
            table
                .resolve(&route.function, route.qualifier.as_deref())
                .map_err(|e| {
                    StoreError::InvalidRoute(crate::model::InvalidRoute(format!(
                        "{} -> {}: {e}",
                        route.matches,
                        route.target()
                    )))
                })?;
        }
        drop(table);
        let namespace = namespace.to_string();
        let routes = self
            .blocking(move |db| db.change_http_routes(&namespace, &change))
            .await?;
        self.load_http_routes().await?;
        Ok(routes)
    }

    /// Re-reads every HTTP route (another node changed them) and swaps them in.
    pub async fn reload_http_routes(&self) -> Result<(), StoreError> {
        let _write = self.writes.lock().await;
        self.load_http_routes().await
    }

    /// Every namespace's HTTP routes, as stored.
    pub async fn http_routes(&self) -> Result<Vec<HttpRoute>, StoreError> {
        self.blocking(|db| db.http_routes()).await
    }

    async fn load_http_routes(&self) -> Result<(), StoreError> {
        let http = self.blocking(|db| db.http_routes()).await?;
        self.router.replace_http_routes(RouteTable::new(http));
        Ok(())
    }

    /// The store's feed of other nodes' changes (`None` unless the store is shared).
    pub fn watch(&self) -> Option<ChangeFeed> {
        self.db.watch()
    }

    /// Whether other nodes share this registry (fleet mode).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The host setting `name`, set to `initial` if it has none (see
    /// [`MetadataStore::setting_or_init`]).
    pub async fn setting_or_init(&self, name: &str, initial: String) -> Result<String, StoreError> {
        let name = name.to_string();
        self.blocking(move |db| db.setting_or_init(&name, &initial))
            .await
    }

    /// Records this node's heartbeat, forgetting nodes silent for [`NODE_EXPIRY_MS`], and
    /// returns the nodes alive now (in one trip off the runtime).
    pub async fn heartbeat(&self, node: NodeRecord) -> Result<Vec<NodeRecord>, StoreError> {
        self.blocking(move |db| {
            let since = node.heartbeat_ms - NODE_EXPIRY_MS;
            db.heartbeat(&node, since)?;
            db.nodes(since)
        })
        .await
    }

    /// The nodes alive now (heartbeat within [`NODE_EXPIRY_MS`]).
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.blocking(|db| db.nodes(now_ms() - NODE_EXPIRY_MS))
            .await
    }

    /// Takes this node out of the membership (a clean stop).
    pub async fn leave(&self, id: String) -> Result<(), StoreError> {
        self.blocking(move |db| db.leave(&id)).await
    }

    /// Takes or keeps the lease `name` for `holder` for `ttl` from now (see
    /// [`MetadataStore::acquire_lease`]).
    pub async fn acquire_lease(
        &self,
        name: &'static str,
        holder: String,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let until = now + ttl.as_millis() as i64;
        self.blocking(move |db| db.acquire_lease(name, &holder, now, until))
            .await
    }

    /// Who holds the lease `name` now, if anyone.
    pub async fn lease_holder(&self, name: &'static str) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        self.blocking(move |db| db.lease_holder(name, now)).await
    }

    pub async fn release_lease(
        &self,
        name: &'static str,
        holder: String,
    ) -> Result<(), StoreError> {
        self.blocking(move |db| db.release_lease(name, &holder))
            .await
    }

    /// Publishes this node's per-second health samples for the fleet.
    pub async fn add_health(
        &self,
        node: String,
        samples: Vec<HealthSample>,
    ) -> Result<(), StoreError> {
        self.blocking(move |db| db.add_health(&node, &samples))
            .await
    }

    /// Every node's health samples of `function` with `from <= second < to`.
    pub async fn health(
        &self,
        function: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<HealthSample>, StoreError> {
        let function = function.to_string();
        self.blocking(move |db| db.health(&function, from, to))
            .await
    }

    /// Deletes health samples of seconds before `before`.
    pub async fn prune_health(&self, before: i64) -> Result<usize, StoreError> {
        self.blocking(move |db| db.prune_health(before)).await
    }

    /// Runs one write under the write lock, then refreshes the function's routes.
    async fn write(
        &self,
        function: &str,
        op: impl FnOnce(&dyn MetadataStore) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<FunctionRows, StoreError> {
        let _write = self.writes.lock().await;
        self.blocking(op).await?;
        let rows = self.refresh_routes(function).await?;
        Ok(rows)
    }

    /// Deletes a function and its versions; returns the digests of modules nothing uses now,
    /// so the caller can drop their compiled code too.
    pub async fn delete_function(&self, name: &str, why: Why) -> Result<Vec<Digest>, StoreError> {
        let _write = self.writes.lock().await;
        let fname = name.to_string();
        let unused = self
            .blocking(move |db| db.delete_function(&fname, &why))
            .await?;
        self.router.replace_function(name, None);
        self.remove_modules(unused).await
    }

    /// Deletes one version; returns the digests of modules nothing uses now.
    pub async fn delete_version(
        &self,
        name: &str,
        number: u32,
        why: Why,
    ) -> Result<Vec<Digest>, StoreError> {
        let _write = self.writes.lock().await;
        let fname = name.to_string();
        let unused = self
            .blocking(move |db| db.delete_version(&fname, number, &why))
            .await?;
        self.refresh_routes(name).await?;
        self.remove_modules(unused).await
    }

    /// Re-reads one function from the database and swaps its routes in. Reading back what
    /// was committed, rather than patching memory, keeps the routes equal to durable state.
    async fn refresh_routes(&self, name: &str) -> Result<FunctionRows, StoreError> {
        let fname = name.to_string();
        let rows = self.blocking(move |db| db.function(&fname)).await?;
        self.router.replace_function(name, Some(routes_of(&rows)));
        Ok(rows)
    }

    /// Deletes blobs after the commit that unreferenced them; a crash in between leaves
    /// orphans, which `open` removes.
    async fn remove_modules(&self, digests: Vec<Digest>) -> Result<Vec<Digest>, StoreError> {
        let modules = self.modules.clone();
        tokio::task::spawn_blocking(move || {
            digests.iter().try_for_each(|d| modules.remove(d))?;
            Ok(digests)
        })
        .await
        .expect("module removal task panicked")
    }

    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn MetadataStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let out = tokio::task::spawn_blocking(move || op(&*db))
            .await
            .expect("database task panicked");
        crate::store::observe(&self.dependencies, &out);
        out
    }

    /// The parts the registry reports to.
    pub fn dependencies(&self) -> &Arc<Dependencies> {
        &self.dependencies
    }
}

/// The fleet's key for authenticating shared compiled code: made by the first node, kept in
/// the registry (never in the object store it protects).
fn artifact_key(db: &dyn MetadataStore) -> Result<Vec<u8>, StoreError> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).map_err(|e| {
        StoreError::Io(std::io::Error::other(format!(
            "reading the OS random source: {e}"
        )))
    })?;
    let stored = db.setting_or_init("artifact_key", &hex::encode(fresh))?;
    hex::decode(stored.trim())
        .map_err(|_| StoreError::Corrupt("the registry's artifact_key setting is not hex".into()))
}

fn routes_of(rows: &FunctionRows) -> FunctionRoutes {
    let name: Arc<str> = Arc::from(rows.info.name.as_str());
    let secrets = Arc::new(rows.secrets.clone());
    let deployment = |label, digest, config: &crate::model::FunctionConfig| {
        let mut deployment = Deployment::new(name.clone(), label, digest, config.clone());
        deployment.secrets = secrets.clone();
        deployment.access = rows.access;
        Arc::new(deployment)
    };
    let latest = &rows.info.latest;
    let latest = deployment(VersionLabel::Latest, latest.digest, &latest.config);
    let versions = rows
        .versions
        .iter()
        .map(|v| {
            let label = VersionLabel::Number(v.version);
            (v.version, deployment(label, v.digest, &v.config))
        })
        .collect();
    let mut routes = FunctionRoutes::new(
        latest,
        versions,
        &rows.default_policy,
        rows.aliases.iter().map(|a| (a.name.as_str(), &a.spec)),
    );
    routes.scaling = rows.scaling.clone();
    routes
}
