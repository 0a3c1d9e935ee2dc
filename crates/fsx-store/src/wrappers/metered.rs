//! Per-operation counters: calls, outcomes and bytes moved.
//!
//! The counters are what a cost report multiplies by a price list (requests
//! per class, bytes in and out), so every call is counted, including those
//! that fail. `NotFound` is counted apart from errors: a miss is a normal,
//! billed outcome, not a failure. Counters are relaxed atomics: a
//! [`MeterSnapshot`] taken while calls run is not a single instant, which is
//! fine for reporting.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::backend::{BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta};
use crate::error::{ErrorKind, Result};
use crate::key::ObjectKey;
use crate::wrappers::Operation;

/// Counters of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that returned an error other than `NotFound`.
    pub errors: u64,
    /// Calls that returned `NotFound`.
    pub not_found: u64,
    /// Payload bytes sent to the store (puts).
    pub bytes_written: u64,
    /// Payload bytes received from the store (gets).
    pub bytes_read: u64,
}

/// Counters of every operation at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterSnapshot {
    ops: [OpStats; 6],
}

impl MeterSnapshot {
    /// Counters of `op`.
    pub fn op(&self, op: Operation) -> OpStats {
        self.ops[op.index()]
    }

    /// Calls over all operations.
    pub fn total_calls(&self) -> u64 {
        self.ops.iter().map(|o| o.calls).sum()
    }

    /// Bytes written over all operations.
    pub fn total_bytes_written(&self) -> u64 {
        self.ops.iter().map(|o| o.bytes_written).sum()
    }

    /// Bytes read over all operations.
    pub fn total_bytes_read(&self) -> u64 {
        self.ops.iter().map(|o| o.bytes_read).sum()
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    not_found: AtomicU64,
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
}

/// Counts every call to the inner backend; see the module docs.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn ExtentBackend>,
    counters: [Counters; 6],
}

impl Metered {
    /// Wrap `inner` with zeroed counters.
    pub fn new(inner: Arc<dyn ExtentBackend>) -> Self {
        Self {
            inner,
            counters: Default::default(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn ExtentBackend> {
        &self.inner
    }

    /// The counters now.
    pub fn snapshot(&self) -> MeterSnapshot {
        let mut snap = MeterSnapshot::default();
        for op in Operation::ALL {
            let c = &self.counters[op.index()];
            snap.ops[op.index()] = OpStats {
                calls: c.calls.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                not_found: c.not_found.load(Ordering::Relaxed),
                bytes_written: c.bytes_written.load(Ordering::Relaxed),
                bytes_read: c.bytes_read.load(Ordering::Relaxed),
            };
        }
        snap
    }

    async fn run<'a, T>(
        &'a self,
        op: Operation,
        written: usize,
        call: BoxFuture<'a, Result<T>>,
        read: impl FnOnce(&T) -> usize,
    ) -> Result<T> {
        let c = &self.counters[op.index()];
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.bytes_written.fetch_add(written as u64, Ordering::Relaxed);
        let result = call.await;
        match &result {
            Ok(value) => {
                c.bytes_read
                    .fetch_add(read(value) as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                c.not_found.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

impl fmt::Display for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metered over {}", self.inner)
    }
}

impl ExtentBackend for Metered {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.run(Operation::Get, 0, self.inner.get(key), Bytes::len))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.run(
            Operation::GetRange,
            0,
            self.inner.get_range(key, range),
            Bytes::len,
        ))
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        let len = value.len();
        Box::pin(self.run(Operation::Put, len, self.inner.put(key, value), |_| 0))
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a ObjectKey,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool>> {
        // Counted as a put: it costs one write request.
        let len = value.len();
        Box::pin(self.run(
            Operation::Put,
            len,
            self.inner.put_if_absent(key, value),
            |_| 0,
        ))
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run(Operation::Delete, 0, self.inner.delete(key), |_| 0))
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(self.run(Operation::Head, 0, self.inner.head(key), |_| 0))
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(self.run(Operation::List, 0, self.inner.list(request), |_| 0))
    }
}
