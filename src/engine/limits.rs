//! What one instance may allocate, as a `ResourceLimiter` on its store.
//!
//! The function's `memory_mb` is one budget over all of an instance's linear memories
//! together: a component that instantiates several core modules (each with its own memory)
//! shares the budget instead of getting `memory_mb` per memory. The counts of memories,
//! tables and core instances match the pooling allocator's per-component caps, so a host
//! that allocates on demand enforces the same; table growth is capped per table.

use wasmtime::ResourceLimiter;

use super::{CORE_INSTANCES_PER_INSTANCE, MEMORIES_PER_INSTANCE, TABLES_PER_INSTANCE};

/// Most elements one table may grow to (the pooling allocator's default per table).
pub const TABLE_ELEMENTS: usize = 20_000;

/// Raised (as a trap) when growing or creating a memory would take the instance's memories
/// past the function's memory limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the function's linear memories would take {wanted_mib} MiB, over its memory limit of \
     {limit_mib} MiB"
)]
pub struct MemoryBudgetExceeded {
    pub limit_mib: u64,
    pub wanted_mib: u64,
}

/// Raised (as a trap) when a table would grow past [`TABLE_ELEMENTS`].
#[derive(Debug, thiserror::Error)]
#[error("a table would grow to {0} elements, over the limit of {TABLE_ELEMENTS}")]
pub struct TableLimitExceeded(pub usize);

/// One instance's allowance and what its memories hold now.
#[derive(Debug)]
pub struct InstanceLimits {
    budget_bytes: usize,
    /// Bytes of all its linear memories together.
    used_bytes: usize,
    /// The growth last allowed, undone if the memory then fails to grow.
    pending_bytes: usize,
}

impl InstanceLimits {
    pub fn new(memory_mb: u32) -> Self {
        Self {
            budget_bytes: (memory_mb as usize) << 20,
            used_bytes: 0,
            pending_bytes: 0,
        }
    }
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let wanted = self.used_bytes.saturating_add(growth);
        if wanted > self.budget_bytes {
            return Err(wasmtime::Error::new(MemoryBudgetExceeded {
                limit_mib: (self.budget_bytes >> 20) as u64,
                wanted_mib: wanted.div_ceil(1 << 20) as u64,
            }));
        }
        if maximum.is_some_and(|max| desired > max) {
            // The memory's own maximum: `memory.grow` returns -1, as the spec says.
            return Ok(false);
        }
        self.used_bytes = wanted;
        self.pending_bytes = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used_bytes -= std::mem::take(&mut self.pending_bytes);
        // The OS or the pool could not provide memory the budget allows: a trap, reported
        // like an exceeded limit, rather than a `memory.grow` the guest may not check.
        Err(error.context("growing a linear memory failed"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(TableLimitExceeded(desired)));
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        CORE_INSTANCES_PER_INSTANCE as usize
    }

    fn tables(&self) -> usize {
        TABLES_PER_INSTANCE as usize
    }

    fn memories(&self) -> usize {
        MEMORIES_PER_INSTANCE as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn one_budget_over_all_memories() {
        let mut limits = InstanceLimits::new(100);
        // Two memories of 60 MiB each: the first fits, the second would make 120.
        assert!(limits.memory_growing(0, 60 * MIB, None).unwrap());
        let error = limits.memory_growing(0, 60 * MIB, None).unwrap_err();
        let exceeded = error.downcast_ref::<MemoryBudgetExceeded>().unwrap();
        assert_eq!((exceeded.limit_mib, exceeded.wanted_mib), (100, 120));
        // Growing the first to 100 fits exactly; a failed growth gives its bytes back.
        assert!(limits.memory_growing(60 * MIB, 90 * MIB, None).unwrap());
        assert!(
            limits
                .memory_grow_failed(wasmtime::Error::msg("no memory"))
                .is_err()
        );
        assert!(limits.memory_growing(60 * MIB, 100 * MIB, None).unwrap());
        assert!(limits.memory_growing(0, MIB, None).is_err());
        // A memory's own maximum is a -1 from memory.grow, not a trap.
        let mut limits = InstanceLimits::new(100);
        assert!(!limits.memory_growing(0, 2 * MIB, Some(MIB)).unwrap());
    }

    #[test]
    fn tables_are_capped() {
        let mut limits = InstanceLimits::new(10);
        assert!(limits.table_growing(0, TABLE_ELEMENTS, None).unwrap());
        assert!(limits.table_growing(0, TABLE_ELEMENTS + 1, None).is_err());
    }

    /// Through wasmtime: a module with two memories shares one budget, and the trap carries
    /// the typed error the invocation reports as a memory limit.
    #[test]
    fn wasmtime_enforces_the_shared_budget() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(
            &engine,
            r#"(module
                (memory $a 1) (memory $b 1)
                (func (export "grow") (param i32 i32) (result i32)
                    (drop (memory.grow $a (local.get 0)))
                    (memory.grow $b (local.get 1))))"#,
        )
        .unwrap();
        let mut store = wasmtime::Store::new(&engine, InstanceLimits::new(2));
        store.limiter(|limits| limits);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "grow")
            .unwrap();
        // 2 MiB is 32 pages: 1 + 1 initial pages, so 30 more fit in total.
        assert_eq!(grow.call(&mut store, (15, 15)).unwrap(), 1);
        let error = grow.call(&mut store, (0, 1)).unwrap_err();
        assert!(
            error.downcast_ref::<MemoryBudgetExceeded>().is_some(),
            "{error:?}"
        );
    }
}
