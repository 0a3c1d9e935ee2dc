//! A mount's lifetime: mounting, serving until the kernel lets go,
//! unmounting, and the daemon's background work meanwhile.
//!
//! Invariant: [`Mount::wait`] returns only after every file the session
//! held open is closed durably — what was acknowledged is in the volume
//! when the daemon exits.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fsx_posix::Fs;
use fuser::{Config, MountOption, Session, SessionACL};
use tokio::runtime::Handle;

use crate::fs::{FsxFuse, SharedFs};

/// How often the daemon renews leases, drains the tier replication queue
/// and makes the tree's changes durable (a local disk's journal commits
/// as often).
/// How long the kernel keeps attributes and names unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

const BACKGROUND_EVERY: Duration = Duration::from_secs(5);

/// Background ticks between two prunings of the change feed (5 minutes).
const PRUNE_EVERY_TICKS: u64 = 60;

/// Why a mount could not start or end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point is unusable.
    #[error("{path}: {reason}")]
    MountPoint {
        /// The mount point.
        path: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The kernel refused the mount.
    #[error("cannot mount at {path}: {reason}")]
    Kernel {
        /// The mount point.
        path: String,
        /// What is wrong and what to do.
        reason: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The session ended with an error, or closing the files failed.
    #[error("{what}")]
    Session {
        /// What failed.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Refuse every change (`EROFS`); a commit is always mounted so.
    pub read_only: bool,
    /// Let other users than the mounting one use the mount.
    pub allow_other: bool,
    /// Let root use a mount made by another user.
    pub allow_root: bool,
    /// Let the kernel check permissions from the mode bits too (the
    /// library checks them anyway).
    pub default_permissions: bool,
    /// How long the kernel keeps attributes.
    pub attr_ttl: Duration,
    /// How long the kernel keeps names.
    pub entry_ttl: Duration,
    /// The source shown in `/proc/mounts`.
    pub fs_name: String,
    /// Threads reading requests from the kernel.
    pub threads: usize,
    /// Every change of the tree durable before its call returns (`-o
    /// dirsync`); otherwise durable at the next `fsync` or `fsyncdir`,
    /// or within 5 s (see [`Fs::set_dirsync`]).
    pub dirsync: bool,
    /// Other kernel mount options, passed as they are (`-o`).
    pub options: Vec<String>,
}

impl Default for MountConfig {
    fn default() -> Self {
        Self {
            read_only: false,
            allow_other: false,
            allow_root: false,
            default_permissions: false,
            // Long, because other writers' changes are dropped from the
            // kernel's caches as the change feed shows them (see
            // `crate::follow`); the timeouts bound what that cannot reach.
            attr_ttl: DEFAULT_TTL,
            entry_ttl: DEFAULT_TTL,
            fs_name: "fsx".into(),
            // Two more than the cores here: a request that commits with
            // a disk flush holds its thread meanwhile (`FsxFuse::spawn`).
            threads: 4,
            dirsync: false,
            options: Vec::new(),
        }
    }
}

/// A mounted volume, served by a session thread.
pub struct Mount {
    thread: JoinHandle<std::io::Result<()>>,
    shared: Arc<dyn SharedFs>,
    mountpoint: PathBuf,
    rt: Handle,
    background: tokio::task::JoinHandle<()>,
    /// Drops the kernel's caches of other writers' changes
    /// ([`crate::follow`]).
    follower: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

/// Checks that `path` can take a mount: an existing directory, not a
/// mount already (a dead one is named as such).
fn check_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let shown = path.display().to_string();
    let bad = |reason: String| MountError::MountPoint {
        path: shown.clone(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(bad(
                "a mount whose daemon died is still there: run `fsx umount` on it first".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad("does not exist: make the directory first".into()));
        }
        Err(e) => return Err(bad(format!("cannot be used: {e}"))),
    };
    if !meta.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    let abs = std::fs::canonicalize(path).map_err(|e| bad(format!("cannot be resolved: {e}")))?;
    if let Some(parent) = abs.parent()
        && let Ok(p) = std::fs::metadata(parent)
        && p.dev() != meta.dev()
    {
        return Err(bad(
            "is already a mount point: unmount it first (`fsx umount`)".into(),
        ));
    }
    Ok(abs)
}

fn kernel_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "permission denied: mount as root, or install fusermount3 (Debian: `apt-get install fuse3`) \
             and allow your user to use /dev/fuse"
                .into()
        }
        Some(libc::ENOENT) => {
            "FUSE is not available: /dev/fuse or fusermount3 is missing (load the fuse module, \
             or install fuse3)"
                .into()
        }
        Some(libc::EBUSY) => "the mount point is busy".into(),
        _ => e.to_string(),
    }
}

impl Mount {
    /// Mounts `fs` at `mountpoint` and starts serving it; requests are
    /// answered on runtime `rt`, which must outlive the mount.
    pub fn start(
        fs: Fs,
        mountpoint: &Path,
        config: &MountConfig,
        rt: Handle,
    ) -> Result<Self, MountError> {
        let abs = check_mountpoint(mountpoint)?;
        fs.set_dirsync(config.dirsync);
        let fuse = FsxFuse::new(
            fs,
            rt.clone(),
            config.attr_ttl,
            config.entry_ttl,
            config.read_only,
        );
        let shared = fuse.shared();
        let mut options = vec![
            MountOption::FSName(config.fs_name.clone()),
            MountOption::Subtype("fsx".into()),
            MountOption::NoAtime,
        ];
        if shared.fs().is_read_only() {
            options.push(MountOption::RO);
        }
        if config.default_permissions {
            options.push(MountOption::DefaultPermissions);
        }
        // Device nodes and set-user-ID programs on a volume work as on a
        // local disk when root mounts it (the kernel's defaults for a
        // FUSE mount are nodev and nosuid).
        // SAFETY: geteuid only reads this process's credentials.
        if unsafe { libc::geteuid() } == 0 {
            options.push(MountOption::Dev);
            options.push(MountOption::Suid);
        }
        for o in &config.options {
            options.push(MountOption::CUSTOM(o.clone()));
        }
        let mut fuse_config = Config::default();
        fuse_config.mount_options = options;
        fuse_config.acl = if config.allow_other {
            SessionACL::All
        } else if config.allow_root {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        fuse_config.n_threads = Some(config.threads.max(1));
        fuse_config.clone_fd = config.threads > 1;
        let session =
            Session::new(fuse, &abs, &fuse_config).map_err(|source| MountError::Kernel {
                path: abs.display().to_string(),
                reason: kernel_reason(&source),
                source,
            })?;
        shared.set_notifier(session.notifier());
        let thread = std::thread::Builder::new()
            .name("fsx-fuse".into())
            .spawn(move || session.run())
            .map_err(|e| MountError::Session {
                what: "cannot start the session thread".into(),
                source: Box::new(e),
            })?;
        let background = rt.spawn(background(shared.clone()));
        let follower = rt.spawn(crate::follow::follow(shared.clone()));
        tracing::info!(mountpoint = %abs.display(), "mounted");
        Ok(Self {
            thread,
            shared,
            mountpoint: abs,
            rt,
            background,
            follower,
        })
    }

    /// The mount point (absolute).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Waits until the file system is unmounted (`fsx umount`,
    /// `fusermount3 -u`, `umount`), then closes every file still open,
    /// durably. Blocks; call it outside the runtime.
    pub fn wait(self) -> Result<(), MountError> {
        let served = self.thread.join();
        self.background.abort();
        self.follower.abort();
        let fs = self.shared;
        let closed = self.rt.block_on(async {
            let closed = fs.fs().close_all().await;
            let flushed = fs.fs().volume().flush_counters().await;
            closed.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            flushed.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        });
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(MountError::Session {
                    what: "the FUSE session failed".into(),
                    source: Box::new(e),
                });
            }
            Err(_) => {
                return Err(MountError::Session {
                    what: "the FUSE session thread panicked".into(),
                    source: "panic".into(),
                });
            }
        }
        closed.map_err(|source| MountError::Session {
            what: "closing the files left open failed".into(),
            source,
        })
    }
}

/// The daemon's own work while mounted: journaled files idle since their
/// last close folded, the tree's changes made durable, the write leases
/// of idle open files renewed, and copies owed to faster or slower tiers
/// made.
async fn background(shared: Arc<dyn SharedFs>) {
    let mut tick = tokio::time::interval(BACKGROUND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        ticks += 1;
        if ticks % PRUNE_EVERY_TICKS == 1 {
            match shared.fs().volume().prune_changes().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(changes = n, "forgot the change feed's oldest changes"),
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the change feed failed; it is retried")
                }
            }
        }
        if let Err(e) = shared.fs().close_idle_journals(false).await {
            tracing::warn!(error = %e, "closing idle journaled files failed; it is retried");
        }
        if let Err(e) = shared.fs().sync_tree().await {
            tracing::warn!(error = %e, "making the tree's changes durable failed; it is retried");
        }
        if let Err(e) = shared.fs().renew_leases().await {
            tracing::warn!(error = %e, "renewing the write leases failed; it is retried");
        }
        if let Some(tiers) = shared.fs().volume().tiers()
            && let Err(e) = tiers.replicate(256).await
        {
            tracing::warn!(error = %e, "tier replication failed; it is retried");
        }
    }
}

/// Unmounts `mountpoint`: at once when nothing holds it, else lazily (it
/// goes when its last user does). As another user than root, through
/// `fusermount3 -u`.
pub fn unmount(mountpoint: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EBUSY) => {
            // SAFETY: as above.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        Some(libc::EPERM) => {
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(mountpoint)
                .status()?;
            if status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "fusermount3 -u failed ({status})"
                )))
            }
        }
        _ => Err(e),
    }
}
