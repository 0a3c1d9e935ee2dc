//! Retry with exponential backoff and jitter, for `Unavailable` errors only.
//!
//! Every contract operation is idempotent, so retrying any of them is safe;
//! only [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) is retried
//! because every other kind would fail the same way again. Delay before retry
//! `n` (1-based) is "equal jitter": half of `min(max_backoff, initial × 2ⁿ⁻¹)`
//! plus a random part up to the other half, and never less than the error's
//! [`retry_after`](crate::StoreError::retry_after) hint (rate limits). Sleep
//! and randomness are injected, so the wrapper needs no runtime and tests
//! observe backoff without waiting for it. When attempts run out, the last
//! error is returned with its kind, with the attempt count in the message
//! and the original error as its source.

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

/// How hard [`Retrying`] tries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// Upper bound of the exponential backoff (before `retry_after`).
    pub max_backoff: Duration,
    /// Seed of the jitter generator.
    pub seed: u64,
}

impl RetryPolicy {
    /// 6 attempts, 50 ms doubling to at most 5 s.
    pub fn new() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            seed: 0x5eed,
        }
    }

    /// Set [`RetryPolicy::max_attempts`] (values below 1 mean 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Set [`RetryPolicy::initial_backoff`].
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// Set [`RetryPolicy::max_backoff`].
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Set [`RetryPolicy::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The base (un-jittered) backoff before retry number `retry` (1-based).
    fn base_backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// Retries `Unavailable` failures of the inner backend; see the module docs.
#[derive(Debug)]
pub struct Retrying {
    inner: Arc<dyn ExtentBackend>,
    policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
    rng: SplitMix64,
    retries: AtomicU64,
}

impl Retrying {
    /// Wrap `inner`, sleeping through `sleeper` between attempts.
    pub fn new(
        inner: Arc<dyn ExtentBackend>,
        policy: RetryPolicy,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        let rng = SplitMix64::new(policy.seed);
        Self {
            inner,
            policy,
            sleeper,
            rng,
            retries: AtomicU64::new(0),
        }
    }

    /// Retries performed so far (attempts beyond the first), all operations.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn delay(&self, retry: u32, err: &StoreError) -> Duration {
        let base = self.policy.base_backoff(retry);
        let half = base / 2;
        let jitter_nanos = self
            .rng
            .below(half.as_nanos().min(u128::from(u64::MAX)) as u64 + 1);
        let jittered = half + Duration::from_nanos(jitter_nanos);
        jittered.max(err.retry_after().unwrap_or_default())
    }

    async fn run<'a, T, F>(
        &'a self,
        op: Operation,
        key: Option<&ObjectKey>,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> BoxFuture<'a, Result<T>>,
    {
        let mut tries = 0u32;
        loop {
            tries += 1;
            let err = match attempt().await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if !err.kind().is_retryable() {
                return Err(err);
            }
            if tries >= self.policy.max_attempts {
                let what = key.map(|k| format!(" {k}")).unwrap_or_default();
                let retry_after = err.retry_after();
                let mut out = StoreError::new(
                    err.kind(),
                    format!(
                        "{op}{what} still failing after {tries} attempts: {}",
                        err.message()
                    ),
                )
                .with_source(err);
                if let Some(wait) = retry_after {
                    out = out.with_retry_after(wait);
                }
                return Err(out);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            self.sleeper.sleep(self.delay(tries, &err)).await;
        }
    }
}

impl fmt::Display for Retrying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retrying({} attempts, backoff {:?}..{:?}) over {}",
            self.policy.max_attempts,
            self.policy.initial_backoff,
            self.policy.max_backoff,
            self.inner
        )
    }
}

impl ExtentBackend for Retrying {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.run(Operation::Get, Some(key), move || self.inner.get(key)))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.run(Operation::GetRange, Some(key), move || {
            self.inner.get_range(key, range.clone())
        }))
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run(Operation::Put, Some(key), move || {
            self.inner.put(key, value.clone())
        }))
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a ObjectKey,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool>> {
        // A retry after a lost reply may see its own first attempt and
        // answer `false`; the contract tells callers to compare the bytes.
        Box::pin(self.run(Operation::Put, Some(key), move || {
            self.inner.put_if_absent(key, value.clone())
        }))
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run(Operation::Delete, Some(key), move || self.inner.delete(key)))
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(self.run(Operation::Head, Some(key), move || self.inner.head(key)))
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(self.run(Operation::List, None, move || self.inner.list(request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::new()
            .initial_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(100));
        let got: Vec<_> = (1..=6).map(|r| p.base_backoff(r).as_millis()).collect();
        assert_eq!(got, [10, 20, 40, 80, 100, 100]);
        assert_eq!(p.base_backoff(200), Duration::from_millis(100));
    }
}
