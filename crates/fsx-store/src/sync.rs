//! Crate-local synchronisation primitives.
//!
//! Everything in this crate takes its locks from here, so a model checker
//! (shuttle, loom) can later be swapped in at one place. `lock` also decides
//! the crate's poisoning policy once: a panic while holding a lock leaves
//! plain data behind (maps, counters) that stays consistent at every await
//! and statement boundary, so the guard is recovered rather than propagated.

pub(crate) use std::sync::{Mutex, MutexGuard};

/// Lock `mutex`, recovering the guard if a previous holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
