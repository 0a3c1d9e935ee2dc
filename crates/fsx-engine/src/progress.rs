//! Progress reporting for long operations (GC, fsck), so the engine can
//! report without knowing about terminals.

/// Receives progress of a long operation.
pub trait Progress {
    /// A new phase begins, with `total` steps if known.
    fn phase(&self, name: &str, total: Option<u64>);
    /// `n` more steps are done.
    fn advance(&self, n: u64);
}

/// Discards progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
}
