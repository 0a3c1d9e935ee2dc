//! The mixed workload of `fsx bench serve`, what it remembers, and the
//! check of what it remembers.
//!
//! # Invariants
//!
//! - **Each client owns a directory** (`RUN/cN`) and waits for each answer
//!   before its next call, so it knows exactly what its directory holds:
//!   every answer can be checked (a read's bytes, a stat's size, a
//!   listing's names) and every failure is unexpected — there is no race
//!   the workload itself causes.
//! - **Every acknowledged change is remembered**: in memory for
//!   `--verify`, and in the ack log when one is asked for. The log has a
//!   `B` line before each change is sent and an `A` (acknowledged) or `F`
//!   (refused) line once answered, each line written whole and at once, so
//!   a log cut anywhere — by a SIGKILL of the server or of this process —
//!   still says which changes were acknowledged and which one per client
//!   was in flight (its outcome unknown). Lines:
//!
//!   | line | meaning |
//!   |---|---|
//!   | `# …` | a comment (run, seed, target) |
//!   | `B CLIENT SEQ put PATH SIZE DIGEST` | a PUT of SIZE bytes hashing to DIGEST is sent |
//!   | `B CLIENT SEQ mkdir PATH` | … |
//!   | `B CLIENT SEQ rename FROM TO` | (no replace) |
//!   | `B CLIENT SEQ remove PATH` | … |
//!   | `A CLIENT SEQ` | answered with success: durable |
//!   | `F CLIENT SEQ` | answered with an error: not applied |
//!
//!   DIGEST is the first 128 bits of the content's SHA-256 in hex (the
//!   hex of `fsx_format::content_key`).
//! - **File contents are a function of a seed** ([`content`]), so a read
//!   is checked without keeping the bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fsx_protocol::types::Kind;

use super::target::{OpError, Target};

/// The operations, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// PUT of a new file.
    PutNew,
    /// PUT over an existing file.
    PutOver,
    /// GET of a byte range.
    GetRange,
    /// GET …/stat.
    Stat,
    /// GET …/list.
    List,
    /// POST …/mkdir.
    Mkdir,
    /// POST …/rename.
    Rename,
    /// POST …/remove.
    Remove,
}

impl OpKind {
    pub const ALL: [OpKind; 8] = [
        OpKind::PutNew,
        OpKind::PutOver,
        OpKind::GetRange,
        OpKind::Stat,
        OpKind::List,
        OpKind::Mkdir,
        OpKind::Rename,
        OpKind::Remove,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::PutNew => "put_new",
            OpKind::PutOver => "put_over",
            OpKind::GetRange => "get_range",
            OpKind::Stat => "stat",
            OpKind::List => "list",
            OpKind::Mkdir => "mkdir",
            OpKind::Rename => "rename",
            OpKind::Remove => "remove",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A small, seeded generator (xorshift64*): the workload of a seed is
/// the same every run, up to what timing changes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The bytes of a file made from `seed`, `size` long.
pub fn content(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(size);
    out
}

/// What the log records of bytes: the first 128 bits of their SHA-256.
pub fn digest(bytes: &[u8]) -> String {
    let key = fsx_format::content_key(bytes);
    key.strip_prefix(fsx_format::CONTENT_KEY_PREFIX)
        .unwrap_or(&key)
        .to_string()
}

/// What a path should be once the load is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A file of this size and digest.
    File { size: u64, digest: String },
    /// A directory.
    Dir,
    /// Nothing.
    Absent,
}

/// The ack log, shared by the clients: each line is one `write` of an
/// unbuffered file opened for appending, so it reaches the kernel whole
/// before the next call is made.
pub struct AckLog(Mutex<std::fs::File>);

impl AckLog {
    pub fn create(path: &std::path::Path, header: &str) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the ack log {}", path.display()))?;
        let log = Self(Mutex::new(file));
        log.line(&format!("# {header}"))?;
        Ok(log)
    }

    fn line(&self, text: &str) -> anyhow::Result<()> {
        let mut f = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f.write_all(format!("{text}\n").as_bytes())
            .context("cannot write the ack log")
    }
}

/// A change, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        path: String,
        size: u64,
        digest: String,
    },
    Mkdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
}

impl Change {
    fn log_text(&self) -> String {
        match self {
            Change::Put { path, size, digest } => format!("put {path} {size} {digest}"),
            Change::Mkdir { path } => format!("mkdir {path}"),
            Change::Rename { from, to } => format!("rename {from} {to}"),
            Change::Remove { path } => format!("remove {path}"),
        }
    }

    fn parse(words: &[&str]) -> Option<Self> {
        Some(match words {
            ["put", path, size, digest] => Change::Put {
                path: path.to_string(),
                size: size.parse().ok()?,
                digest: digest.to_string(),
            },
            ["mkdir", path] => Change::Mkdir {
                path: path.to_string(),
            },
            ["rename", from, to] => Change::Rename {
                from: from.to_string(),
                to: to.to_string(),
            },
            ["remove", path] => Change::Remove {
                path: path.to_string(),
            },
            _ => return None,
        })
    }

    /// The paths whose state it changes.
    fn paths(&self) -> Vec<&str> {
        match self {
            Change::Put { path, .. } | Change::Mkdir { path } | Change::Remove { path } => {
                vec![path]
            }
            Change::Rename { from, to } => vec![from, to],
        }
    }

    /// Applies an acknowledged change to `state`.
    fn apply(&self, state: &mut BTreeMap<String, Option<Expect>>) {
        match self {
            Change::Put { path, size, digest } => {
                state.insert(
                    path.clone(),
                    Some(Expect::File {
                        size: *size,
                        digest: digest.clone(),
                    }),
                );
            }
            Change::Mkdir { path } => {
                state.insert(path.clone(), Some(Expect::Dir));
            }
            Change::Rename { from, to } => {
                let moved = state.insert(from.clone(), Some(Expect::Absent));
                state.insert(to.clone(), moved.flatten());
            }
            Change::Remove { path } => {
                state.insert(path.clone(), Some(Expect::Absent));
            }
        }
    }
}

/// The expected state of every path an ack log names: `None` where the
/// outcome is unknown (a change in flight when the log ends, or a rename
/// of something unknown).
pub fn expected_from_log(text: &str) -> anyhow::Result<BTreeMap<String, Option<Expect>>> {
    let mut state = BTreeMap::new();
    let mut pending: BTreeMap<u64, (u64, Change)> = BTreeMap::new();
    let unknown = |state: &mut BTreeMap<String, Option<Expect>>, c: &Change| {
        for p in c.paths() {
            state.insert(p.to_string(), None);
        }
    };
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split(' ').collect();
        let bad = || format!("line {} of the ack log is malformed: {line:?}", n + 1);
        match words.as_slice() {
            [] | [""] => {}
            [w, ..] if w.starts_with('#') => {}
            ["B", client, seq, rest @ ..] => {
                let (client, seq) = (client.parse()?, seq.parse()?);
                let change = Change::parse(rest).with_context(bad)?;
                if let Some((_, earlier)) = pending.insert(client, (seq, change)) {
                    // Never answered (the client gave up on it): unknown.
                    unknown(&mut state, &earlier);
                }
            }
            [mark @ ("A" | "F"), client, seq] => {
                let (client, seq): (u64, u64) = (client.parse()?, seq.parse()?);
                match pending.remove(&client) {
                    Some((s, change)) if s == seq => {
                        if *mark == "A" {
                            change.apply(&mut state);
                        }
                    }
                    _ => bail!("{}: no change {seq} of client {client} is open", bad()),
                }
            }
            _ => bail!("{}", bad()),
        }
    }
    for (_, change) in pending.values() {
        unknown(&mut state, change);
    }
    Ok(state)
}

/// Counts and latencies of one client (merged into the report).
#[derive(Debug, Default)]
pub struct Tally {
    /// Latencies of successful calls, per [`OpKind`].
    pub latencies: [Vec<Duration>; 8],
    /// Failed calls per [`OpKind`].
    pub errors: [u64; 8],
    /// The first few failures, for the report.
    pub samples: Vec<String>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        for (a, b) in self.latencies.iter_mut().zip(other.latencies) {
            a.extend(b);
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for s in other.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }
}

/// The knobs of the workload.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Share of calls that change something.
    pub write_ratio: f64,
    /// Largest file written, bytes (sizes are uniform in 1..=this).
    pub max_file_size: usize,
    /// Files a client keeps at most (then it removes before it adds).
    pub max_files: usize,
}

/// Counters every client bumps, for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
}

/// A file a client knows: its seed makes its bytes.
#[derive(Debug, Clone)]
struct Known {
    name: String,
    seed: u64,
    size: usize,
}

/// One client: its directory, what is in it, and its counters.
pub struct Client {
    id: u64,
    dir: String,
    rng: Rng,
    files: Vec<Known>,
    dirs: Vec<String>,
    /// Names it removed or renamed away and never made again.
    gone: Vec<String>,
    /// Paths whose state a failed change left unknown.
    unsure: Vec<String>,
    next_name: u64,
    seq: u64,
    tally: Tally,
}

/// Where clients keep directories at most.
const MAX_DIRS: usize = 20;

impl Client {
    pub fn new(id: u64, run_dir: &str, seed: u64) -> Self {
        Self {
            id,
            dir: format!("{run_dir}/c{id}"),
            rng: Rng::new(seed ^ id.wrapping_mul(0xa076_1d64_78bd_642f)),
            files: Vec::new(),
            dirs: Vec::new(),
            gone: Vec::new(),
            unsure: Vec::new(),
            next_name: 0,
            seq: 0,
            tally: Tally::default(),
        }
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}{}", self.next_name)
    }

    fn fail(&mut self, kind: OpKind, what: String) {
        self.tally.errors[kind.index()] += 1;
        if self.tally.samples.len() < 10 {
            self.tally
                .samples
                .push(format!("client {}: {what}", self.id));
        }
    }

    /// Runs calls until `until`; returns the tally.
    pub async fn run(
        mut self,
        target: &Target,
        mix: &Mix,
        until: Instant,
        log: Option<&AckLog>,
        progress: &Progress,
    ) -> anyhow::Result<(Tally, BTreeMap<String, Option<Expect>>)> {
        while Instant::now() < until {
            let ok = self.step(target, mix, log).await?;
            progress.ops.fetch_add(1, Ordering::Relaxed);
            if !ok {
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let expected = self.expected();
        Ok((self.tally, expected))
    }

    /// What this client's directory should hold now.
    fn expected(&self) -> BTreeMap<String, Option<Expect>> {
        let mut out = BTreeMap::new();
        out.insert(self.dir.clone(), Some(Expect::Dir));
        for g in &self.gone {
            out.insert(self.path(g), Some(Expect::Absent));
        }
        for d in &self.dirs {
            out.insert(self.path(d), Some(Expect::Dir));
        }
        for f in &self.files {
            let bytes = content(f.seed, f.size);
            out.insert(
                self.path(&f.name),
                Some(Expect::File {
                    size: f.size as u64,
                    digest: digest(&bytes),
                }),
            );
        }
        for u in &self.unsure {
            out.insert(u.clone(), None);
        }
        out
    }

    /// Picks and makes one call; false when it failed.
    async fn step(
        &mut self,
        target: &Target,
        mix: &Mix,
        log: Option<&AckLog>,
    ) -> anyhow::Result<bool> {
        if self.rng.chance(mix.write_ratio) {
            self.write(target, mix, log).await
        } else {
            Ok(self.read(target).await)
        }
    }

    async fn read(&mut self, target: &Target) -> bool {
        let roll = self.rng.below(100);
        let started = Instant::now();
        let (kind, outcome) = if roll < 50 && !self.files.is_empty() {
            let f = self.files[self.rng.below(self.files.len() as u64) as usize].clone();
            let start = self.rng.below(f.size as u64);
            let len = 1 + self.rng.below(4096);
            let got = target.get_range(&self.path(&f.name), start, len).await;
            let end = (start + len).min(f.size as u64) as usize;
            let outcome = got.map_err(|e| e.to_string()).and_then(|bytes| {
                if bytes == content(f.seed, f.size)[start as usize..end] {
                    Ok(())
                } else {
                    Err(format!("wrong bytes at {start}..{end} of {}", f.name))
                }
            });
            (OpKind::GetRange, outcome)
        } else if roll < 75 && !self.files.is_empty() {
            let f = self.files[self.rng.below(self.files.len() as u64) as usize].clone();
            let got = target.stat(&self.path(&f.name)).await;
            let outcome = match got {
                Ok(Some((Kind::File, size))) if size == f.size as u64 => Ok(()),
                Ok(other) => Err(format!(
                    "stat {}: {other:?}, expected a file of {}",
                    f.name, f.size
                )),
                Err(e) => Err(e.to_string()),
            };
            (OpKind::Stat, outcome)
        } else {
            let got = target.list(&self.dir).await;
            let outcome = match got {
                Ok(names) => {
                    let mut want: Vec<&str> = self
                        .files
                        .iter()
                        .map(|f| f.name.as_str())
                        .chain(self.dirs.iter().map(String::as_str))
                        .collect();
                    want.sort_unstable();
                    let mut names = names;
                    names.sort_unstable();
                    // Unsure names may or may not be there.
                    names.retain(|n| !self.unsure.contains(&self.path(n)));
                    want.retain(|n| !self.unsure.contains(&self.path(n)));
                    if names == want {
                        Ok(())
                    } else {
                        Err(format!("list {}: {names:?}, expected {want:?}", self.dir))
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            (OpKind::List, outcome)
        };
        self.record(kind, started, outcome)
    }

    fn record(&mut self, kind: OpKind, started: Instant, outcome: Result<(), String>) -> bool {
        match outcome {
            Ok(()) => {
                self.tally.latencies[kind.index()].push(started.elapsed());
                true
            }
            Err(e) => {
                self.fail(kind, format!("{}: {e}", kind.name()));
                false
            }
        }
    }

    async fn write(
        &mut self,
        target: &Target,
        mix: &Mix,
        log: Option<&AckLog>,
    ) -> anyhow::Result<bool> {
        let roll = self.rng.below(100);
        let full = self.files.len() >= mix.max_files;
        let (kind, change) = if roll < 15 && !self.files.is_empty() || full && roll < 40 {
            let i = self.rng.below(self.files.len() as u64) as usize;
            let name = self.files[i].name.clone();
            (
                OpKind::Remove,
                Change::Remove {
                    path: self.path(&name),
                },
            )
        } else if roll < 30 && !self.files.is_empty() {
            let i = self.rng.below(self.files.len() as u64) as usize;
            let from = self.files[i].name.clone();
            let to = self.fresh("r");
            (
                OpKind::Rename,
                Change::Rename {
                    from: self.path(&from),
                    to: self.path(&to),
                },
            )
        } else if roll < 40 {
            if self.dirs.len() < MAX_DIRS || self.dirs.is_empty() {
                let d = self.fresh("d");
                (
                    OpKind::Mkdir,
                    Change::Mkdir {
                        path: self.path(&d),
                    },
                )
            } else {
                let i = self.rng.below(self.dirs.len() as u64) as usize;
                let d = self.dirs[i].clone();
                (
                    OpKind::Remove,
                    Change::Remove {
                        path: self.path(&d),
                    },
                )
            }
        } else {
            let size = 1 + self.rng.below(mix.max_file_size as u64) as usize;
            let seed = self.rng.next_u64();
            let over = (roll < 60 || full) && !self.files.is_empty();
            let (kind, name) = if over {
                let i = self.rng.below(self.files.len() as u64) as usize;
                (OpKind::PutOver, self.files[i].name.clone())
            } else {
                (OpKind::PutNew, self.fresh("f"))
            };
            let bytes = content(seed, size);
            let change = Change::Put {
                path: self.path(&name),
                size: size as u64,
                digest: digest(&bytes),
            };
            self.seq += 1;
            if let Some(log) = log {
                log.line(&format!("B {} {} {}", self.id, self.seq, change.log_text()))?;
            }
            let started = Instant::now();
            let r = target.put(&self.path(&name), bytes).await;
            return self.finish(kind, change, started, r, log, Some((name, seed, size)));
        };
        self.seq += 1;
        if let Some(log) = log {
            log.line(&format!("B {} {} {}", self.id, self.seq, change.log_text()))?;
        }
        let started = Instant::now();
        let r = match &change {
            Change::Remove { path } => target.remove(path).await,
            Change::Rename { from, to } => target.rename(from, to).await,
            Change::Mkdir { path } => target.mkdir(path, false).await,
            Change::Put { .. } => unreachable!("puts return above"),
        };
        self.finish(kind, change, started, r, log, None)
    }

    /// Records a change's answer: in the log, the tally and the model.
    fn finish(
        &mut self,
        kind: OpKind,
        change: Change,
        started: Instant,
        r: Result<(), OpError>,
        log: Option<&AckLog>,
        put: Option<(String, u64, usize)>,
    ) -> anyhow::Result<bool> {
        let elapsed = started.elapsed();
        let answered = match &r {
            Ok(()) => Some(true),
            // An error status: refused, nothing applied. No answer at all
            // (transport): unknown.
            Err(e) if e.status.is_some() => Some(false),
            Err(_) => None,
        };
        if let Some(log) = log {
            match answered {
                Some(true) => log.line(&format!("A {} {}", self.id, self.seq))?,
                Some(false) => log.line(&format!("F {} {}", self.id, self.seq))?,
                None => {}
            }
        }
        match r {
            Ok(()) => {
                self.tally.latencies[kind.index()].push(elapsed);
                self.apply(&change, put);
                Ok(true)
            }
            Err(e) => {
                if answered.is_none() {
                    for p in change.paths() {
                        self.unsure.push(p.to_string());
                    }
                }
                self.fail(kind, format!("{}: {e}", change.log_text()));
                Ok(false)
            }
        }
    }

    fn name_of<'p>(&self, path: &'p str) -> &'p str {
        path.strip_prefix(&self.dir)
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(path)
    }

    fn apply(&mut self, change: &Change, put: Option<(String, u64, usize)>) {
        match change {
            Change::Put { .. } => {
                if let Some((name, seed, size)) = put {
                    self.gone.retain(|g| *g != name);
                    match self.files.iter_mut().find(|f| f.name == name) {
                        Some(f) => {
                            f.seed = seed;
                            f.size = size;
                        }
                        None => self.files.push(Known { name, seed, size }),
                    }
                }
            }
            Change::Mkdir { path } => {
                let name = self.name_of(path).to_string();
                self.gone.retain(|g| *g != name);
                self.dirs.push(name);
            }
            Change::Rename { from, to } => {
                let (from, to) = (self.name_of(from).to_string(), self.name_of(to).to_string());
                if let Some(f) = self.files.iter_mut().find(|f| f.name == from) {
                    f.name = to.clone();
                }
                self.gone.retain(|g| *g != to);
                self.gone.push(from);
            }
            Change::Remove { path } => {
                let name = self.name_of(path).to_string();
                self.files.retain(|f| f.name != name);
                self.dirs.retain(|d| *d != name);
                self.gone.push(name);
            }
        }
    }
}

/// What checking found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub files: u64,
    pub dirs: u64,
    pub absent: u64,
    pub unknown: u64,
    pub mismatches: Vec<String>,
}

/// Reads back every path of `expected` through `target` (`concurrency`
/// at a time) and compares.
pub async fn check(
    target: &Target,
    expected: &BTreeMap<String, Option<Expect>>,
    concurrency: usize,
) -> CheckReport {
    use futures_util::StreamExt;
    let mut report = CheckReport::default();
    let results: Vec<Result<&'static str, String>> = futures_util::stream::iter(expected.iter())
        .map(|(path, want)| async move {
            let Some(want) = want else {
                return Ok("unknown");
            };
            match want {
                Expect::File { size, digest: d } => match target.read(path).await {
                    Ok(bytes) if bytes.len() as u64 == *size && digest(&bytes) == *d => Ok("file"),
                    Ok(bytes) => Err(format!(
                        "{path}: {} bytes with digest {}, acknowledged {size} bytes with {d}",
                        bytes.len(),
                        digest(&bytes)
                    )),
                    Err(e) => Err(format!("{path}: acknowledged as a file, read: {e}")),
                },
                Expect::Dir => match target.stat(path).await {
                    Ok(Some((Kind::Dir, _))) => Ok("dir"),
                    other => Err(format!(
                        "{path}: acknowledged as a directory, stat: {other:?}"
                    )),
                },
                Expect::Absent => match target.stat(path).await {
                    Ok(None) => Ok("absent"),
                    other => Err(format!("{path}: acknowledged as removed, stat: {other:?}")),
                },
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for r in results {
        match r {
            Ok("file") => report.files += 1,
            Ok("dir") => report.dirs += 1,
            Ok("absent") => report.absent += 1,
            Ok(_) => report.unknown += 1,
            Err(e) => report.mismatches.push(e),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_acknowledged_changes_and_forgets_nothing_else() {
        let log = "\
# run
B 0 1 put /r/c0/f1 3 aa
A 0 1
B 1 1 mkdir /r/c1/d1
B 0 2 rename /r/c0/f1 /r/c0/r2
A 0 2
B 0 3 put /r/c0/f3 1 bb
F 0 3
B 0 4 remove /r/c0/r2
";
        let s = expected_from_log(log).unwrap_or_default();
        assert_eq!(s.get("/r/c0/f1"), Some(&Some(Expect::Absent)));
        assert_eq!(
            s.get("/r/c0/r2"),
            Some(&None),
            "a remove in flight leaves it unknown"
        );
        assert_eq!(s.get("/r/c1/d1"), Some(&None), "a mkdir in flight");
        assert_eq!(s.get("/r/c0/f3"), None, "a refused put names nothing");
        assert!(
            expected_from_log("A 0 1\n").is_err(),
            "an answer to nothing"
        );
        assert!(expected_from_log("B 0 1 put /x\n").is_err());
    }

    #[test]
    fn contents_are_a_function_of_their_seed() {
        assert_eq!(content(7, 100), content(7, 100));
        assert_ne!(content(7, 100), content(8, 100));
        assert_eq!(content(7, 13).len(), 13);
        assert_eq!(digest(b"").len(), 32);
    }
}
