//! Deterministic fault injection, for tests.
//!
//! Per operation, a [`FaultInjecting`] wrapper can add latency, fail a call
//! *before* it reaches the inner backend (`error_rate`), or — for writes —
//! let the call take effect and then report failure anyway
//! (`fail_after_effect_rate`), the case of a timeout after the server
//! applied the write. Injected errors are [`ErrorKind::Unavailable`]
//! (transient), which is what real networks produce and what callers must
//! survive by retrying.
//!
//! Decisions come from one seeded [`SplitMix64`], drawn in call order, so a
//! sequential workload with the same seed sees the same faults.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::backend::{BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta};
use crate::error::{Result, StoreError};
use crate::inject::{Sleeper, SplitMix64};
use crate::key::ObjectKey;
use crate::wrappers::Operation;

/// Faults for one operation.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct OpFaults {
    /// Probability in `[0, 1]` that a call fails without reaching the inner backend.
    pub error_rate: f64,
    /// Probability in `[0, 1]` that a write reaches the inner backend, succeeds
    /// there, and is then reported as failed. Ignored for reads.
    pub fail_after_effect_rate: f64,
    /// Added before every call.
    pub latency: Duration,
}

impl OpFaults {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set [`OpFaults::error_rate`].
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// Set [`OpFaults::fail_after_effect_rate`].
    pub fn fail_after_effect_rate(mut self, rate: f64) -> Self {
        self.fail_after_effect_rate = rate;
        self
    }

    /// Set [`OpFaults::latency`].
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

/// How many faults were injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Calls failed before reaching the inner backend.
    pub failed_before: u64,
    /// Writes that took effect and were then reported as failed.
    pub failed_after_effect: u64,
}

/// Injects faults around an inner backend; see the module docs.
#[derive(Debug)]
pub struct FaultInjecting {
    inner: Arc<dyn ExtentBackend>,
    faults: HashMap<Operation, OpFaults>,
    rng: SplitMix64,
    sleeper: Arc<dyn Sleeper>,
    failed_before: AtomicU64,
    failed_after: AtomicU64,
}

impl FaultInjecting {
    /// Wrap `inner` with no faults yet; `seed` fixes every later decision,
    /// `sleeper` serves added latency.
    pub fn new(inner: Arc<dyn ExtentBackend>, seed: u64, sleeper: Arc<dyn Sleeper>) -> Self {
        Self {
            inner,
            faults: HashMap::new(),
            rng: SplitMix64::new(seed),
            sleeper,
            failed_before: AtomicU64::new(0),
            failed_after: AtomicU64::new(0),
        }
    }

    /// Configure faults for `op`.
    pub fn with(mut self, op: Operation, faults: OpFaults) -> Self {
        self.faults.insert(op, faults);
        self
    }

    /// Configure the same faults for every operation.
    pub fn with_all(mut self, faults: OpFaults) -> Self {
        for op in Operation::ALL {
            self.faults.insert(op, faults.clone());
        }
        self
    }

    /// Faults injected so far.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            failed_before: self.failed_before.load(Ordering::Relaxed),
            failed_after_effect: self.failed_after.load(Ordering::Relaxed),
        }
    }

    async fn run<'a, T>(
        &'a self,
        op: Operation,
        key: Option<&ObjectKey>,
        call: BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let Some(faults) = self.faults.get(&op) else {
            return call.await;
        };
        if !faults.latency.is_zero() {
            self.sleeper.sleep(faults.latency).await;
        }
        let what = key.map(|k| format!(" {k}")).unwrap_or_default();
        // Draw both decisions up front so the sequence of draws per call is
        // fixed, whatever the outcome: same seed, same faults.
        let fail_before = self.rng.next_f64() < faults.error_rate;
        let fail_after = op.is_write() && self.rng.next_f64() < faults.fail_after_effect_rate;
        if fail_before {
            self.failed_before.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::unavailable(format!(
                "injected fault: {op}{what} failed before reaching the store"
            )));
        }
        let value = call.await?;
        if fail_after {
            self.failed_after.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::unavailable(format!(
                "injected fault: {op}{what} took effect but is reported as failed"
            )));
        }
        Ok(value)
    }
}

impl fmt::Display for FaultInjecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ops: Vec<_> = self.faults.iter().collect();
        ops.sort_by_key(|(op, _)| **op);
        f.write_str("fault-injecting(")?;
        for (i, (op, fl)) in ops.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{op}: error {:.0}%, after-effect {:.0}%, +{:?}",
                fl.error_rate * 100.0,
                fl.fail_after_effect_rate * 100.0,
                fl.latency
            )?;
        }
        write!(f, ") over {}", self.inner)
    }
}

impl ExtentBackend for FaultInjecting {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.run(Operation::Get, Some(key), self.inner.get(key)))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.run(
            Operation::GetRange,
            Some(key),
            self.inner.get_range(key, range),
        ))
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run(Operation::Put, Some(key), self.inner.put(key, value)))
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a ObjectKey,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool>> {
        // Faults as for a put: it is one.
        Box::pin(self.run(
            Operation::Put,
            Some(key),
            self.inner.put_if_absent(key, value),
        ))
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run(Operation::Delete, Some(key), self.inner.delete(key)))
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(self.run(Operation::Head, Some(key), self.inner.head(key)))
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(self.run(Operation::List, None, self.inner.list(request)))
    }
}
