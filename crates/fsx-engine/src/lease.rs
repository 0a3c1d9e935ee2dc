//! Breaking the write leases of writers that are provably gone.
//!
//! A writer holds a lease per file per branch until it closes the file or
//! the lease expires. A writer that was killed (SIGKILL, a crash, a failed
//! command that exited without closing) leaves its lease behind, and every
//! operation that needs the file or the branch free — delete, rename,
//! reset, delete a branch, merge into it — would be refused as `Busy` until
//! the lease expires (minutes for a database held open by `fsx sql`).
//!
//! [`Environment::holder_is_dead`](crate::Environment::holder_is_dead)
//! answers whether a holder is known to be gone (on a native machine: the
//! holder ran on this host and its process no longer exists). The rule:
//!
//! - An operation first runs as it always did. Only when it fails with
//!   `Busy` are the leases it could have met looked at; those of dead
//!   holders are released, and the operation runs once more. The common
//!   case costs nothing extra.
//! - A lease is released only under the name of the dead holder
//!   (`release_lease` is conditional on the holder), so a live writer that
//!   took the lease in between keeps it, and the retry is refused as before.
//! - A holder whose liveness is unknown (another machine, an unparsable
//!   name) is never broken: its lease must expire.

use std::future::Future;

use fsx_meta::{BranchId, View};

use crate::error::{ErrorKind, Result};
use crate::volume::Volume;

impl Volume {
    /// Releases the leases on `branch` held by writers known to be dead:
    /// those of the files called `names`, or of every file of the branch
    /// when `names` is `None`. Returns how many were released.
    pub(crate) async fn break_dead_leases(
        &self,
        branch: BranchId,
        names: Option<&[&str]>,
    ) -> Result<usize> {
        let s = &self.shared;
        let files = match names {
            Some(names) => {
                let mut files = Vec::with_capacity(names.len());
                for name in names {
                    match s.meta.file(View::Branch(branch), name).await {
                        Ok(f) => files.push(f),
                        // A name that does not exist holds no lease; the
                        // operation reports it.
                        Err(e) if e.kind() == fsx_meta::MetaErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                files
            }
            None => s.meta.list_files(View::Branch(branch), "").await?,
        };
        let mut broken = 0;
        for f in files {
            let Some(lease) = s.meta.lease(branch, f.id).await? else {
                continue;
            };
            if s.env.holder_is_dead(&lease.holder) {
                tracing::info!(file = %f.name, holder = %lease.holder, "breaking the lease of a writer that is gone");
                s.meta.release_lease(branch, f.id, &lease.holder).await?;
                broken += 1;
            }
        }
        Ok(broken)
    }

    /// Runs `op`; if it is refused as `Busy` and dead writers' leases on
    /// `branch` (of `names`, or of the whole branch) could be broken, runs
    /// it once more.
    pub(crate) async fn retry_past_dead_leases<T, F, Fut>(
        &self,
        branch: BranchId,
        names: Option<&[&str]>,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match op().await {
            Err(e) if e.kind() == ErrorKind::Busy => {
                if self.break_dead_leases(branch, names).await? > 0 {
                    op().await
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

impl Volume {
    /// Folds the local journals that writers which are gone left on
    /// `branch` (of the files called `names`, or of every file), by taking
    /// each file's lease as the next writer would (see [`crate::journal`]),
    /// and deletes journals of files that no longer exist. Run before an
    /// operation that discards or replaces a branch's files (reset, branch
    /// deletion, merge into it, file deletion): a journal left behind would
    /// otherwise be folded later over what that operation made. A journal
    /// whose writer lives is left alone; the operation meets its lease.
    pub(crate) async fn fold_dead_journals(
        &self,
        branch: BranchId,
        names: Option<&[&str]>,
    ) -> Result<()> {
        let s = &self.shared;
        let Some(dir) = &s.options.journals else {
            return Ok(());
        };
        let io = |e| crate::journal::io_error("directory", "read", e);
        let mut ids: Vec<fsx_meta::FileId> = dir
            .list()
            .map_err(io)?
            .iter()
            .filter_map(|n| crate::journal::journal_of(n, branch))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let files = s.meta.list_files(View::Branch(branch), "").await?;
        let on = self.with_view(View::Branch(branch));
        for f in &files {
            let Some(at) = ids.iter().position(|&id| id == f.id) else {
                continue;
            };
            ids.swap_remove(at);
            if names.is_some_and(|names| !names.contains(&f.name.as_str())) {
                continue;
            }
            match on.open_file(&f.name, crate::OpenOptions::write()).await {
                Ok(file) => file.close().await?,
                Err(e) if e.kind() == ErrorKind::Busy => {}
                Err(e) => return Err(e),
            }
        }
        // What is left names files the branch no longer has.
        for id in ids {
            dir.remove(&crate::journal::journal_name(branch, id))
                .map_err(io)?;
        }
        Ok(())
    }
}
