//! Injected effects: sleeping and randomness.
//!
//! The crate core (contract, wrappers, conformance suite) never calls a
//! runtime, the system clock or an ambient RNG. Anything that must wait
//! takes a [`Sleeper`]; anything random takes a [`SplitMix64`] seeded by the
//! caller. Tests pass [`NoSleep`] to make backoff instantaneous and
//! observable, and a fixed seed to make fault injection reproducible.
//! [`TokioSleeper`] (feature `tokio`) is what production composition roots
//! use.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{BoxFuture, MaybeSend, MaybeSync};
use crate::sync::{Mutex, lock};

/// Waits for a duration on whatever executor the caller runs.
pub trait Sleeper: MaybeSend + MaybeSync + fmt::Debug {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// A [`Sleeper`] that returns at once and records every requested duration,
/// so tests can assert backoff without waiting for it.
#[derive(Debug, Default)]
pub struct NoSleep {
    slept: Mutex<Vec<Duration>>,
}

impl NoSleep {
    /// A sleeper with an empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every duration asked for so far, in order.
    pub fn recorded(&self) -> Vec<Duration> {
        lock(&self.slept).clone()
    }
}

impl Sleeper for NoSleep {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        lock(&self.slept).push(duration);
        Box::pin(std::future::ready(()))
    }
}

/// `tokio::time::sleep`; needs a tokio runtime with the time driver.
#[cfg(feature = "tokio")]
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSleeper;

#[cfg(feature = "tokio")]
impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A small, seedable, thread-safe pseudo-random generator (SplitMix64).
///
/// Not cryptographic. The same seed and the same sequence of calls give the
/// same numbers, which is what reproducible fault injection and jitter need.
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        // fetch_add makes concurrent callers draw distinct values without a
        // lock; single-threaded call order fully determines the sequence.
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        // 53 random mantissa bits.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in `[0, bound)`; `0` when `bound` is 0.
    pub fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a = SplitMix64::new(7);
        let b = SplitMix64::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        let f = SplitMix64::new(1).next_f64();
        assert!((0.0..1.0).contains(&f));
    }
}
