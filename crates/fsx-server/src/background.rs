//! The server's own work on the volumes it serves, as the mount daemon
//! does for a mount: copies owed to the tiers are made and the operation
//! counters stored every [`EVERY`]; the change feed is pruned to
//! `changes.retain` every minute; and, when `--gc-every` is given, the
//! volume is garbage-collected on that schedule (with `--gc-grace`).
//!
//! Invariants: a failed step is logged and retried at the next tick,
//! never fatal to the server; steps of one volume run one after another,
//! so a GC never overlaps the previous one; everything stops at shutdown
//! (a GC in progress finishes its current step first: it is built to be
//! interrupted anywhere).

use std::sync::Arc;
use std::time::Duration;

use fsx_engine::{GcOptions, NoProgress};
use tokio::sync::watch;

use crate::AppState;

/// How often the tiers are fed and the counters stored.
pub(crate) const EVERY: Duration = Duration::from_secs(5);
/// Ticks between two prunings of each change feed (a minute).
const PRUNE_EVERY_TICKS: u64 = 12;
/// Copies made per volume and tick at most.
const REPLICATE_BATCH: usize = 256;

/// Runs until `stop`.
pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gc = state.gc_every.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut ticks = 0u64;
    loop {
        let gc_due = async {
            match gc.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let collect = tokio::select! {
            _ = tick.tick() => false,
            () = gc_due => true,
            () = crate::feed::stopped(&mut stop) => return,
        };
        if collect {
            collect_all(&state).await;
            continue;
        }
        ticks += 1;
        for v in state.volumes.values() {
            if let Some(tiers) = v.volume.tiers()
                && let Err(e) = tiers.replicate(REPLICATE_BATCH).await
            {
                tracing::warn!(volume = %v.name, error = %e, "tier replication failed; it is retried");
            }
            if let Err(e) = v.volume.flush_counters().await {
                tracing::warn!(volume = %v.name, error = %e, "storing the counters failed; it is retried");
            }
            if ticks % PRUNE_EVERY_TICKS == 1 {
                match v.volume.prune_changes().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(volume = %v.name, changes = n, "forgot the change feed's oldest changes")
                    }
                    Err(e) => {
                        tracing::warn!(volume = %v.name, error = %e, "pruning the change feed failed; it is retried")
                    }
                }
            }
        }
    }
}

/// One scheduled GC of every served volume.
async fn collect_all(state: &AppState) {
    // Objects without a record (an extent stored over the API that no
    // file references yet) get the same grace as unreferenced records.
    let grace = i64::try_from(state.gc_grace.as_millis()).unwrap_or(i64::MAX);
    let options = GcOptions::default().grace_ms(grace).orphan_grace_ms(grace);
    for v in state.volumes.values() {
        // A GC reports progress through `&dyn Progress`, which is not
        // `Send`: it runs on a blocking thread of its own, driven there.
        let volume = v.volume.clone();
        let options = options.clone();
        let handle = tokio::runtime::Handle::current();
        let run = tokio::task::spawn_blocking(move || {
            handle.block_on(async { volume.gc(&options, &NoProgress).await })
        })
        .await;
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(volume = %v.name, error = %e, "the scheduled gc task failed");
                continue;
            }
        };
        match run {
            Ok(r) => tracing::info!(
                volume = %v.name,
                deleted = r.deleted,
                bytes_freed = r.bytes_freed,
                commits_expired = r.commits_expired,
                changes_pruned = r.changes_pruned,
                "scheduled gc done"
            ),
            Err(e) => {
                tracing::warn!(volume = %v.name, error = %e, "scheduled gc failed; it runs again at its next time")
            }
        }
        state.metrics.gc_run(&v.name);
    }
}
