//! `fsx mount` and `fsx umount`: a volume's tree as a local file system.
//!
//! `fsx mount` runs the daemon in the background by default: it starts
//! itself again with `--foreground`, detached (new session, output to the
//! log file), and waits until that child says the mount is ready or why it
//! is not — so the command's exit status tells whether the mount is there.
//! The daemon writes its pid to a file named after the mount point, which
//! `fsx umount` uses to wait until everything was flushed.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use fsx_engine::{SystemEnv, VolumeOptions};
use fsx_fuse::{Mount, MountConfig};
use fsx_posix::Fs;

use crate::volume_cmd::{ViewArgs, parse_size, runtime};

/// The environment variable that tells the re-started daemon which pipe
/// to report readiness on.
const READY_FD: &str = "FSX_MOUNT_READY_FD";

/// How long a writer's lease lasts without renewal: files stay open for
/// as long as a database runs.
const LEASE_TTL_MS: i64 = 10 * 60 * 1000;

/// `fsx mount`'s arguments.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// The volume directory.
    volume: PathBuf,
    /// An existing, empty directory to mount it on.
    mountpoint: PathBuf,
    #[command(flatten)]
    view: ViewArgs,
    /// Refuse every change (a --commit is always read-only).
    #[arg(long)]
    read_only: bool,
    /// Stay in the foreground, logging to stderr, until unmounted (Ctrl-C
    /// unmounts). By default the daemon detaches once the mount is ready.
    #[arg(short, long)]
    foreground: bool,
    /// Mount options, comma-separated: allow_other, allow_root,
    /// default_permissions, ro, dirsync (every change of the tree durable
    /// before it returns, instead of at the next fsync or within 5 s);
    /// anything else is passed to the kernel.
    #[arg(short = 'o', value_name = "OPTIONS", value_delimiter = ',')]
    options: Vec<String>,
    /// Where the detached daemon logs (default: mount.log in the volume
    /// directory).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// How long the kernel caches attributes. Other writers' changes are
    /// dropped from the cache as the volume's change feed shows them
    /// (within about 0.1 s); this bounds what the feed cannot say.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    attr_timeout: Duration,
    /// How long the kernel caches names (as `--attr-timeout`: other
    /// writers' renames and removals show as the feed reports them; a
    /// reset of the mounted branch may take this long).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    entry_timeout: Duration,
    /// Unsynced bytes all open files may buffer together (K, M, G); past
    /// it a write first syncs its own file, so the daemon's memory stays
    /// bounded however many files are open. The extent cache is the
    /// volume's `io.cache_bytes` setting (`fsx config`).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    dirty_limit: u64,
}

/// `fsx umount`'s arguments.
#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mount point.
    mountpoint: PathBuf,
    /// How long to wait for the daemon to close its files and exit.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// The directory of the daemons' pid files.
fn pid_dir() -> PathBuf {
    // SAFETY: geteuid only reads this process's credentials.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        PathBuf::from("/run/fsx")
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        PathBuf::from(d).join("fsx")
    } else {
        std::env::temp_dir().join(format!("fsx-{uid}"))
    }
}

/// The pid file of the daemon serving `mountpoint` (absolute).
fn pid_file(mountpoint: &Path) -> PathBuf {
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| if c == '/' { '%' } else { c })
        .collect();
    pid_dir().join(format!("{name}.pid"))
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(p)
    })
}

/// The mount configuration `-o` and the flags ask for.
fn config(args: &MountArgs) -> anyhow::Result<MountConfig> {
    let mut c = MountConfig {
        read_only: args.read_only || args.view.commit.is_some(),
        attr_ttl: args.attr_timeout,
        entry_ttl: args.entry_timeout,
        fs_name: format!("fsx:{}", args.volume.display()),
        ..MountConfig::default()
    };
    for o in &args.options {
        match o.trim() {
            "" => {}
            "allow_other" => c.allow_other = true,
            "allow_root" => c.allow_root = true,
            "default_permissions" => c.default_permissions = true,
            "ro" => c.read_only = true,
            "dirsync" => c.dirsync = true,
            "rw" => {
                if c.read_only {
                    bail!("-o rw contradicts a read-only mount (--read-only, --commit or -o ro)");
                }
            }
            o if o.contains(['\0', '\n']) => bail!("mount option {o:?} is not valid"),
            o => c.options.push(o.to_string()),
        }
    }
    Ok(c)
}

/// `fsx mount VOLUME MOUNTPOINT`.
pub fn mount(args: MountArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    if !args.foreground && std::env::var_os(READY_FD).is_none() {
        return detach(&args);
    }
    let mut ready = match std::env::var(READY_FD) {
        // SAFETY: the parent passed this descriptor, open and ours alone.
        Ok(fd) => Some(unsafe { OwnedFd::from_raw_fd(fd.parse().context("bad ready fd")?) }),
        Err(_) => None,
    };
    let result = serve(&args, &config, &mut ready);
    if let (Err(e), Some(fd)) = (&result, ready) {
        // Tell the waiting parent why; it prints the message.
        let mut f = std::fs::File::from(fd);
        let _ = write!(f, "{}", crate::message(e));
    }
    result
}

/// Runs the daemon: mounts, reports ready, serves until unmounted, then
/// flushes.
fn serve(
    args: &MountArgs,
    config: &MountConfig,
    ready: &mut Option<OwnedFd>,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let mountpoint = absolute(&args.mountpoint)?;
    let fs = rt.block_on(async {
        let options = VolumeOptions::default().lease_ttl_ms(LEASE_TTL_MS);
        let volume = fsx_volume::open(&args.volume, Arc::new(SystemEnv::new()), options).await?;
        let volume = args.view.select(volume).await?;
        Ok::<_, anyhow::Error>(Fs::new(volume).await?)
    })?;
    fs.set_dirty_limit(args.dirty_limit);
    let mount = Mount::start(fs, &mountpoint, config, rt.handle().clone())?;
    let mountpoint = mount.mountpoint().to_path_buf();
    let pid_path = pid_file(&mountpoint);
    if let Err(e) = std::fs::create_dir_all(pid_dir())
        .and_then(|()| std::fs::write(&pid_path, format!("{}\n", std::process::id())))
    {
        tracing::warn!(error = %e, file = %pid_path.display(), "cannot write the pid file; `fsx umount` will not wait for this daemon");
    }
    eprintln!(
        "fsx: mounted {} at {} (pid {})",
        args.volume.display(),
        mountpoint.display(),
        std::process::id()
    );
    if let Some(fd) = ready.take() {
        // Closing it is what ends the parent's wait.
        let _ = std::fs::File::from(fd).write_all(b"ready\n");
    }
    // SIGTERM and SIGINT unmount; the session then ends and `wait`
    // flushes, as after `fsx umount`.
    let mp = mountpoint.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for SIGTERM and SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("fsx: signal received, unmounting {}", mp.display());
        if let Err(e) = fsx_fuse::unmount(&mp) {
            eprintln!("fsx: cannot unmount {}: {e}", mp.display());
        }
    });
    let result = mount.wait();
    let _ = std::fs::remove_file(&pid_path);
    result?;
    eprintln!(
        "fsx: unmounted {}; every file closed and synced",
        mountpoint.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts the daemon detached and waits for its word.
fn detach(args: &MountArgs) -> anyhow::Result<ExitCode> {
    let log = match &args.log_file {
        Some(p) => p.clone(),
        None => absolute(&args.volume)?.join("mount.log"),
    };
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open the log file {}", log.display()))?;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot make a pipe");
    }
    // SAFETY: pipe2 just opened both, owned here alone.
    let (mut read_end, write_end) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let write_fd = write_end.as_raw_fd();
    let exe = std::env::current_exe().context("cannot find the fsx executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(READY_FD, write_fd.to_string())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // SAFETY: only async-signal-safe calls between fork and exec: the
    // child leaves the terminal's session, and keeps the pipe's write end
    // across exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            let flags = libc::fcntl(write_fd, libc::F_GETFD);
            libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the mount daemon")?;
    drop(write_end);
    let mut said = String::new();
    let _ = read_end.read_to_string(&mut said);
    if said.starts_with("ready") {
        println!(
            "mounted {} at {} (daemon pid {}, log {})",
            args.volume.display(),
            args.mountpoint.display(),
            child.id(),
            log.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let status = child.wait().ok();
    if said.trim().is_empty() {
        bail!(
            "the mount daemon exited ({}) without mounting; see {}",
            status.map_or("unknown status".into(), |s| s.to_string()),
            log.display()
        );
    }
    bail!("{}", said.trim())
}

/// `fsx umount MOUNTPOINT`.
pub fn umount(args: UmountArgs) -> anyhow::Result<ExitCode> {
    // A dead mount cannot be resolved (ENOTCONN): use the path as given.
    let abs = absolute(&args.mountpoint)?;
    let mountpoint = std::fs::canonicalize(&abs).unwrap_or(abs);
    let pid_path = pid_file(&mountpoint);
    let pid: Option<i32> = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if let Err(e) = fsx_fuse::unmount(&mountpoint) {
        if e.raw_os_error() == Some(libc::EINVAL) {
            bail!("{} is not a mount point", mountpoint.display());
        }
        return Err(e).with_context(|| format!("cannot unmount {}", mountpoint.display()));
    }
    let Some(pid) = pid else {
        println!("unmounted {}", mountpoint.display());
        return Ok(ExitCode::SUCCESS);
    };
    let started = Instant::now();
    // SAFETY: kill with signal 0 only asks whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        if started.elapsed() > args.timeout {
            eprintln!(
                "fsx: {} is unmounted but its daemon (pid {pid}) is still closing files after {}; \
                 it goes on in the background",
                mountpoint.display(),
                humantime::format_duration(args.timeout)
            );
            return Ok(ExitCode::from(1));
        }
        // Waiting for another process to exit: there is nothing to block
        // on for a process that is not our child.
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&pid_path);
    println!(
        "unmounted {}; the daemon closed its files and exited",
        mountpoint.display()
    );
    Ok(ExitCode::SUCCESS)
}
