//! `wasi:keyvalue` (0.2.0-draft2: store, atomics with compare-and-swap, batch) for functions,
//! backed by the metadata store, so values are durable once `set` returns, shared by every
//! node of a fleet, and atomic where the interface says so.
//!
//! A function opens only the stores its config lists (`kv`), in its own namespace; any
//! other name answers `no-such-store`, the same as a store that does not exist, so names
//! reveal nothing. Each invocation may make `ops_per_request` operations (a batch counts each
//! key); keys, values and stores are bounded by [`KvLimits`]. Store calls are blocking and
//! run off the async runtime; the guest's deadline still bounds them, since the guest's task
//! is what awaits them.

use std::sync::Arc;

use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::model::{KvEntry, KvLimits, KvStoreId};
use crate::store::{MetadataStore, StoreError};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/deps/keyvalue.wit",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvFailure,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// An open store.
pub struct Bucket {
    store: KvStoreId,
}

/// A compare-and-swap in progress: the value and version read when it was made.
pub struct Cas {
    store: KvStoreId,
    key: String,
    read: Option<KvEntry>,
}

/// Why a key-value call failed, before it becomes the guest's `error`.
#[derive(Debug)]
pub enum KvFailure {
    NoSuchStore,
    Other(String),
    /// Not the guest's business: a broken host traps the call.
    Trap(wasmtime::Error),
}

impl KvFailure {
    /// The guest's error in either interface's terms (`wasi:keyvalue`'s or Spin's); a trap
    /// stays a trap.
    fn into_guest<E>(self, no_such_store: E, other: fn(String) -> E) -> wasmtime::Result<E> {
        match self {
            Self::NoSuchStore => Ok(no_such_store),
            Self::Other(message) => Ok(other(message)),
            Self::Trap(e) => Err(e),
        }
    }
}

impl From<wasmtime::component::ResourceTableError> for KvFailure {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Self::Trap(e.into())
    }
}

/// Operations made on each store since the host started, for `/metrics`.
#[derive(Default)]
pub struct KvMeter(dashmap::DashMap<KvStoreId, std::sync::atomic::AtomicU64>);

impl KvMeter {
    fn count(&self, store: &KvStoreId, ops: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(counter) = self.0.get(store) {
            counter.fetch_add(ops, Relaxed);
            return;
        }
        self.0
            .entry(store.clone())
            .or_default()
            .fetch_add(ops, Relaxed);
    }

    /// Every store's operations so far.
    pub fn snapshot(&self) -> Vec<(KvStoreId, u64)> {
        self.0
            .iter()
            .map(|e| {
                (
                    e.key().clone(),
                    e.value().load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// Where key-value values live: the metadata store, and the record of its outages (a call
/// that meets one reports it there instead of logging per call).
pub struct KvBackend {
    pub db: Arc<dyn MetadataStore>,
    pub dependencies: Arc<crate::dependencies::Dependencies>,
}

/// What one invocation may do with key-value stores.
#[derive(Clone, Default)]
pub struct KvAccess {
    db: Option<Arc<KvBackend>>,
    meter: Arc<KvMeter>,
    namespace: String,
    allowed: Vec<String>,
    limits: KvLimits,
    /// Operations made so far by this invocation.
    ops: u32,
    /// Operations that reached the store, read by the invocation's meter when it finishes
    /// (`None` for functions that open no store).
    used: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl KvAccess {
    pub fn new(
        db: Option<&Arc<KvBackend>>,
        meter: &Arc<KvMeter>,
        namespace: &str,
        allowed: &[String],
        limits: KvLimits,
    ) -> Self {
        if allowed.is_empty() {
            // Most functions open no store: nothing to allocate on their request path.
            return Self::default();
        }
        Self {
            db: db.cloned(),
            meter: meter.clone(),
            namespace: namespace.to_string(),
            allowed: allowed.to_vec(),
            limits,
            ops: 0,
            used: Some(Arc::default()),
        }
    }

    /// The count of operations that reached the store, shared with the finish hook.
    pub fn used(&self) -> Option<Arc<std::sync::atomic::AtomicU64>> {
        self.used.clone()
    }

    /// A request starts in an instance that may have served others (instance reuse): alone,
    /// it gets the per-invocation allowance afresh; beside other requests, the allowance of
    /// those in flight is pooled (as their CPU budgets are).
    pub(super) fn begin_request(&mut self, alone: bool) {
        self.ops = if alone {
            0
        } else {
            self.ops.saturating_sub(self.limits.ops_per_request)
        };
    }

    /// Counts `n` operations against the per-invocation limit.
    fn spend(&mut self, n: usize) -> Result<(), KvFailure> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.ops = self.ops.saturating_add(n);
        if self.ops > self.limits.ops_per_request {
            return Err(KvFailure::Other(format!(
                "this invocation passed its limit of {} key-value operations",
                self.limits.ops_per_request
            )));
        }
        Ok(())
    }

    /// Runs one store call off the async runtime, mapping store errors to guest errors.
    async fn call<T: Send + 'static>(
        &mut self,
        store: &KvStoreId,
        ops: usize,
        f: impl FnOnce(&dyn MetadataStore, &KvLimits) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, KvFailure> {
        self.spend(ops)?;
        let db = self.db.clone().ok_or(KvFailure::NoSuchStore)?;
        self.meter.count(store, ops as u64);
        if let Some(used) = &self.used {
            used.fetch_add(ops as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let limits = self.limits;
        let result = tokio::task::spawn_blocking(move || f(&*db.db, &limits)).await;
        if let (Ok(out), Some(db)) = (&result, &self.db) {
            crate::store::observe(&db.dependencies, out);
        }
        match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(StoreError::Limit(message))) => Err(KvFailure::Other(message)),
            // Logged once per outage by `dependencies`; the guest hears what is wrong.
            Ok(Err(e)) if e.outage().is_some() => Err(KvFailure::Other(match e {
                StoreError::DiskFull(_) => {
                    "the key-value store is out of disk space; nothing was written".into()
                }
                _ => {
                    "the key-value store is unavailable (its database is down); retry later".into()
                }
            })),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a key-value operation failed in the store");
                Err(KvFailure::Other(
                    "the key-value store failed; retry later".into(),
                ))
            }
            Err(join) => Err(KvFailure::Trap(wasmtime::Error::msg(format!(
                "key-value task failed: {join}"
            )))),
        }
    }

    fn check_keys<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Result<(), KvFailure> {
        keys.into_iter()
            .try_for_each(|key| self.limits.check_key(key))
            .map_err(KvFailure::Other)
    }
}

/// The view the bindings work on: the invocation's access and the resource table.
pub struct KvView<'a> {
    pub access: &'a mut KvAccess,
    pub table: &'a mut ResourceTable,
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Links the key-value imports; `view` reaches them from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    spin::key_value::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<KvStoreId, KvFailure> {
        Ok(self.table.get(bucket)?.store.clone())
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvFailure> {
        if !self.access.allowed.contains(&identifier) || self.access.db.is_none() {
            return Err(KvFailure::NoSuchStore);
        }
        let store = KvStoreId {
            namespace: self.access.namespace.clone(),
            store: identifier,
        };
        Ok(self.table.push(Bucket { store })?)
    }

    fn convert_error(&mut self, err: KvFailure) -> wasmtime::Result<store::Error> {
        err.into_guest(store::Error::NoSuchStore, store::Error::Other)
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvFailure> {
        let store = self.bucket(&bucket)?;
        self.access.check_keys([key.as_str()])?;
        let mut found = self
            .access
            .call(&store.clone(), 1, move |db, _| db.kv_get(&store, &[key]))
            .await?;
        Ok(found.pop().flatten().map(|entry| entry.value))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvFailure> {
        let store = self.bucket(&bucket)?;
        self.access.check_keys([key.as_str()])?;
        self.access
            .limits
            .check_value(&value)
            .map_err(KvFailure::Other)?;
        self.access
            .call(&store.clone(), 1, move |db, limits| {
                db.kv_set(&store, &[(key, value)], limits)
            })
            .await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KvFailure> {
        let store = self.bucket(&bucket)?;
        self.access.check_keys([key.as_str()])?;
        self.access
            .call(&store.clone(), 1, move |db, _| db.kv_delete(&store, &[key]))
            .await
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, KvFailure> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, KvFailure> {
        const PAGE: u32 = 1000;
        let store = self.bucket(&bucket)?;
        let keys = self
            .access
            .call(&store.clone(), 1, move |db, _| {
                db.kv_keys(&store, cursor.as_deref(), PAGE)
            })
            .await?;
        let cursor = (keys.len() == PAGE as usize)
            .then(|| keys.last().cloned())
            .flatten();
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, KvFailure> {
        let store = self.bucket(&bucket)?;
        self.access.check_keys([key.as_str()])?;
        self.access
            .call(&store.clone(), 1, move |db, limits| {
                db.kv_increment(&store, &key, delta, limits)
            })
            .await
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let taken = self.table.delete(cas)?;
        if let Err(message) = self.access.limits.check_value(&value) {
            return Ok(Err(atomics::CasError::StoreError(store::Error::Other(
                message,
            ))));
        }
        let (store_id, key) = (taken.store.clone(), taken.key.clone());
        let expected = taken.read.as_ref().map(|entry| entry.version);
        let swapped = self
            .access
            .call(&store_id.clone(), 1, move |db, limits| {
                db.kv_swap(&store_id, &key, expected, &value, limits)
            })
            .await;
        match swapped {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Lost the race: hand back a fresh handle that read the value now in place.
                let fresh = self.read_cas(taken.store, taken.key).await;
                match fresh {
                    Ok(cas) => Ok(Err(atomics::CasError::CasFailed(cas))),
                    Err(e) => Ok(Err(atomics::CasError::StoreError(self.convert(e)?))),
                }
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(self.convert(e)?))),
        }
    }
}

impl KvView<'_> {
    fn convert(&mut self, err: KvFailure) -> wasmtime::Result<store::Error> {
        <Self as store::Host>::convert_error(self, err)
    }

    async fn read_cas(
        &mut self,
        store: KvStoreId,
        key: String,
    ) -> Result<Resource<Cas>, KvFailure> {
        self.access.check_keys([key.as_str()])?;
        let (id, k) = (store.clone(), key.clone());
        let read = self
            .access
            .call(&id.clone(), 1, move |db, _| db.kv_get(&id, &[k]))
            .await?
            .pop()
            .flatten();
        Ok(self.table.push(Cas { store, key, read })?)
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Resource<Cas>, KvFailure> {
        let store = self.bucket(&bucket)?;
        self.read_cas(store, key).await
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, KvFailure> {
        Ok(self
            .table
            .get(&cas)?
            .read
            .as_ref()
            .map(|entry| entry.value.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvFailure> {
        let store = self.bucket(&bucket)?;
        self.access.check_keys(keys.iter().map(String::as_str))?;
        let asked = keys.clone();
        let found = self
            .access
            .call(&store.clone(), keys.len(), move |db, _| {
                db.kv_get(&store, &keys)
            })
            .await?;
        Ok(asked
            .into_iter()
            .zip(found)
            .map(|(key, entry)| entry.map(|entry| (key, entry.value)))
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvFailure> {
        let store = self.bucket(&bucket)?;
        self.access
            .check_keys(key_values.iter().map(|(k, _)| k.as_str()))?;
        for (_, value) in &key_values {
            self.access
                .limits
                .check_value(value)
                .map_err(KvFailure::Other)?;
        }
        self.access
            .call(&store.clone(), key_values.len(), move |db, limits| {
                db.kv_set(&store, &key_values, limits)
            })
            .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), KvFailure> {
        let store = self.bucket(&bucket)?;
        self.access.check_keys(keys.iter().map(String::as_str))?;
        self.access
            .call(&store.clone(), keys.len(), move |db, _| {
                db.kv_delete(&store, &keys)
            })
            .await
    }
}

/// Spin's `fermyon:spin/key-value@2.0.0` over the same stores, limits and meter: a Spin
/// component's `Store::open("cart")` opens the store `cart` its config lists.
mod spin {
    use wasmtime::component::Resource;

    use super::{Bucket, KvFailure, KvView, store};

    mod bindings {
        wasmtime::component::bindgen!({
            path: "wit/deps/spin.wit",
            world: "fermyon:spin/key-value-imports",
            imports: { default: async | trappable },
            with: {
                "fermyon:spin/key-value.store": super::super::Bucket,
            },
            trappable_error_type: {
                "fermyon:spin/key-value.error" => super::super::KvFailure,
            },
        });
    }

    pub(super) use bindings::fermyon::spin::key_value;

    /// Most keys `get-keys` answers with: it has no paging, so a bigger store is an error
    /// rather than an unbounded answer.
    const MAX_LISTED: usize = 100_000;

    impl key_value::Host for KvView<'_> {
        fn convert_error(&mut self, err: KvFailure) -> wasmtime::Result<key_value::Error> {
            err.into_guest(key_value::Error::NoSuchStore, key_value::Error::Other)
        }
    }

    impl key_value::HostStore for KvView<'_> {
        async fn open(&mut self, label: String) -> Result<Resource<Bucket>, KvFailure> {
            store::Host::open(self, label).await
        }

        async fn get(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
        ) -> Result<Option<Vec<u8>>, KvFailure> {
            store::HostBucket::get(self, bucket, key).await
        }

        async fn set(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
            value: Vec<u8>,
        ) -> Result<(), KvFailure> {
            store::HostBucket::set(self, bucket, key, value).await
        }

        async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KvFailure> {
            store::HostBucket::delete(self, bucket, key).await
        }

        async fn exists(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
        ) -> Result<bool, KvFailure> {
            store::HostBucket::exists(self, bucket, key).await
        }

        async fn get_keys(&mut self, bucket: Resource<Bucket>) -> Result<Vec<String>, KvFailure> {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let handle = Resource::new_borrow(bucket.rep());
                let page = store::HostBucket::list_keys(self, handle, cursor).await?;
                keys.extend(page.keys);
                if keys.len() > MAX_LISTED {
                    return Err(KvFailure::Other(format!(
                        "the store has more than {MAX_LISTED} keys; list them with wasi:keyvalue's paged list-keys"
                    )));
                }
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => return Ok(keys),
                }
            }
        }

        async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
            self.table.delete(bucket)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reused instance's requests each get the operation allowance: afresh when alone,
    /// pooled when they overlap.
    #[test]
    fn each_request_of_a_reused_instance_gets_its_allowance() {
        let limits = KvLimits {
            ops_per_request: 2,
            ..KvLimits::default()
        };
        let mut access = KvAccess::new(
            None,
            &Arc::default(),
            "default",
            &["cart".to_string()],
            limits,
        );
        assert!(access.spend(2).is_ok());
        assert!(
            access.spend(1).is_err(),
            "over the first request's allowance"
        );
        access.begin_request(true);
        assert!(access.spend(2).is_ok());
        access.begin_request(false);
        assert!(
            access.spend(2).is_ok(),
            "a second request in flight adds its own"
        );
        assert!(access.spend(1).is_err());
    }
}
