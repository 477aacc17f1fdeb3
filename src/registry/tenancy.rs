//! The registry's part in teams: namespaces and their quotas, API keys, the audit log and
//! function access. Quotas are checked here, under the registry's write lock and against the
//! routing snapshot (what is committed), so two writes on one node cannot both take the
//! last unit of a quota; a refused change changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Registry;
use crate::model::{
    Access, AuditEntry, ConfigPatch, FunctionConfig, FunctionName, KeyRecord, NamespaceRecord,
    Quotas, VersionLabel, namespace_of, now_ms,
};
use crate::routing::FunctionRoutes;
use crate::store::StoreError;

impl Registry {
    /// The namespace `name`, as last read.
    pub fn namespace(&self, name: &str) -> Option<NamespaceRecord> {
        self.namespaces.load().get(name).cloned()
    }

    /// Every namespace, as last read.
    pub fn namespace_list(&self) -> Vec<NamespaceRecord> {
        self.namespaces.load().values().cloned().collect()
    }

    /// Re-reads namespaces and quotas (after a change here, or another node's).
    pub async fn reload_namespaces(&self) -> Result<(), StoreError> {
        let all = self.blocking(|db| db.namespaces()).await?;
        let map: BTreeMap<_, _> = all.into_iter().map(|ns| (ns.name.clone(), ns)).collect();
        self.namespaces.store(Arc::new(map));
        Ok(())
    }

    pub async fn create_namespace(&self, record: NamespaceRecord) -> Result<(), StoreError> {
        self.blocking(move |db| db.create_namespace(&record))
            .await?;
        self.reload_namespaces().await
    }

    pub async fn set_quotas(
        &self,
        name: &str,
        quotas: Quotas,
    ) -> Result<NamespaceRecord, StoreError> {
        let name = name.to_string();
        let record = self
            .blocking(move |db| db.set_quotas(&name, &quotas))
            .await?;
        self.reload_namespaces().await?;
        Ok(record)
    }

    pub async fn delete_namespace(&self, name: &str) -> Result<(), StoreError> {
        let _write = self.writes.lock().await;
        let name = name.to_string();
        self.blocking(move |db| db.delete_namespace(&name)).await?;
        self.reload_namespaces().await
    }

    pub async fn add_key(&self, key: KeyRecord) -> Result<(), StoreError> {
        self.blocking(move |db| db.add_key(&key)).await
    }

    /// The stored key `id`: read from the store each time, so a revocation on any node
    /// applies to the next request.
    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| db.key(&id)).await
    }

    pub async fn keys(&self, namespace: Option<String>) -> Result<Vec<KeyRecord>, StoreError> {
        self.blocking(move |db| db.keys(namespace.as_deref())).await
    }

    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| db.revoke_key(&id, now_ms())).await
    }

    pub async fn add_audit(&self, entry: AuditEntry) -> Result<i64, StoreError> {
        self.blocking(move |db| db.add_audit(&entry)).await
    }

    pub async fn audit(
        &self,
        namespace: Option<String>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.blocking(move |db| db.audit(namespace.as_deref(), limit))
            .await
    }

    /// Sets who may call `function` on the data plane; routes follow at once.
    pub async fn set_access(&self, function: &str, access: Access) -> Result<(), StoreError> {
        let name = function.to_string();
        self.write(function, move |db| db.set_access(&name, access))
            .await?;
        Ok(())
    }

    /// Stores `function`'s secret `name`, sealed; every version reads the new value from
    /// its next request.
    pub async fn set_secret(
        &self,
        function: &str,
        name: &str,
        sealed: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (f, n) = (function.to_string(), name.to_string());
        self.write(function, move |db| db.set_secret(&f, &n, &sealed, now_ms()))
            .await?;
        Ok(())
    }

    pub async fn delete_secret(&self, function: &str, name: &str) -> Result<(), StoreError> {
        let (f, n) = (function.to_string(), name.to_string());
        self.write(function, move |db| db.delete_secret(&f, &n))
            .await?;
        Ok(())
    }

    /// A deploy of `name`: its namespace must exist; a new function counts against
    /// `functions`, its config against `memory_mb`.
    pub(super) async fn check_deploy(
        &self,
        name: &FunctionName,
        patch: &ConfigPatch,
    ) -> Result<(), StoreError> {
        let namespace = name.namespace();
        let quotas = self.quotas(namespace).await?;
        let table = self.router.snapshot();
        let existing = table.function(name.as_str());
        if existing.is_none() {
            let count = table
                .names()
                .filter(|n| namespace_of(n) == namespace)
                .count();
            Quotas::check(quotas.functions, "functions", namespace, count as u64 + 1)?;
        }
        let base = existing.map_or_else(FunctionConfig::default, |f| f.latest.config.clone());
        check_in_namespace(&quotas, namespace, &patch.apply(&base)?)
    }

    /// A config change of `$LATEST`: its memory against `memory_mb`.
    pub(super) async fn check_config(
        &self,
        name: &str,
        patch: &ConfigPatch,
    ) -> Result<(), StoreError> {
        let namespace = namespace_of(name);
        let quotas = self.quotas(namespace).await?;
        let table = self.router.snapshot();
        let Some(function) = table.function(name) else {
            return Ok(()); // the store answers "not found"
        };
        check_in_namespace(&quotas, namespace, &patch.apply(&function.latest.config)?)
    }

    /// A publish: one more version kept against `versions`, unless `$LATEST` equals the
    /// newest version (then nothing is created). Also run before a rollout of `$LATEST`
    /// starts, since its promotion publishes.
    pub async fn check_versions_quota(&self, name: &str) -> Result<(), StoreError> {
        let namespace = namespace_of(name);
        let quotas = self.quotas(namespace).await?;
        if quotas.versions.is_none() {
            return Ok(());
        }
        let table = self.router.snapshot();
        let Some(function) = table.function(name) else {
            return Ok(());
        };
        let unchanged = function
            .versions
            .values()
            .next_back()
            .is_some_and(|newest| {
                newest.digest == function.latest.digest && newest.config == function.latest.config
            });
        if unchanged {
            return Ok(());
        }
        let kept: usize = in_namespace(&table, namespace)
            .map(|f| f.versions.len())
            .sum();
        Quotas::check(quotas.versions, "versions", namespace, kept as u64 + 1)?;
        Ok(())
    }

    /// Provisioned concurrency: the namespace's total after the change against
    /// `provisioned`.
    pub(super) async fn check_provisioned(
        &self,
        name: &str,
        version: Option<VersionLabel>,
        count: u32,
    ) -> Result<(), StoreError> {
        let namespace = namespace_of(name);
        let quotas = self.quotas(namespace).await?;
        if quotas.provisioned.is_none() {
            return Ok(());
        }
        let table = self.router.snapshot();
        let total: u64 = in_namespace(&table, namespace)
            .map(|f| {
                let mut policy = f.scaling.clone();
                if &*f.latest.function == name {
                    policy.set(version, count);
                }
                policy.total()
            })
            .sum();
        Quotas::check(quotas.provisioned, "provisioned", namespace, total)?;
        Ok(())
    }

    /// The quotas of `namespace`, which must exist. One this node has not heard of is read
    /// again from the store before it is refused: another node may have just created it and
    /// its change not reached this one yet (an operator behind a load balancer creates a
    /// namespace, then deploys into it).
    async fn quotas(&self, namespace: &str) -> Result<Quotas, StoreError> {
        if self.namespace(namespace).is_none() {
            self.reload_namespaces().await?;
        }
        self.namespace(namespace)
            .map(|ns| ns.quotas)
            .ok_or_else(|| StoreError::unknown_namespace(namespace))
    }
}

fn in_namespace<'a>(
    table: &'a crate::routing::RoutingTable,
    namespace: &'a str,
) -> impl Iterator<Item = &'a Arc<FunctionRoutes>> {
    table
        .functions()
        .filter(move |f| namespace_of(&f.latest.function) == namespace)
}

/// What a config must respect in its namespace: the `memory_mb` quota, and destinations of
/// asynchronous results within the namespace (a tenant's output never lands in another's).
fn check_in_namespace(
    quotas: &Quotas,
    namespace: &str,
    config: &FunctionConfig,
) -> Result<(), StoreError> {
    config.async_policy.validate(Some(namespace))?;
    Quotas::check(
        quotas.memory_mb,
        "memory_mb",
        namespace,
        u64::from(config.memory_mb),
    )?;
    Ok(())
}
