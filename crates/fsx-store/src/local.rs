//! Local directory backend: crash-safe, fanned out, listable.
//!
//! # On-disk layout
//!
//! | path | what |
//! |---|---|
//! | `<root>/objects/` | all objects |
//! | `objects/<h0h1>/<h2h3>/` | fan-out: first two bytes of SHA-256(key), as hex; 65,536 leaf directories so millions of objects never crowd one directory |
//! | `…/<h2h3>/<name>` | one object; `<name>` is the key percent-encoded (below) |
//! | `…/<h2h3>/<chunk>~/…/<last>` | a key whose encoding exceeds 200 bytes: every 200-byte chunk but the last is a directory ending in `~` |
//! | `…/<h2h3>/.tmp-<pid>-<n>` | an in-flight put; never listed |
//!
//! Key encoding: bytes `[A-Za-z0-9_-]` stay, every other byte becomes `%XX`
//! (upper-case hex). The encoding is reversible, so `list` recovers keys from
//! names alone; it never produces `.` (temp files start with one) or `~`
//! (marks chunk directories); and chunking keeps each name under the usual
//! 255-byte limit even for a 512-byte key of multi-byte characters.
//!
//! # Crash safety
//!
//! A put writes a temp file in the object's own directory, `fsync`s it,
//! `rename`s it over the final name (atomic on POSIX), and `fsync`s the
//! directory, so after `Ok` the object survives power loss and a reader
//! never sees a partial file. Directories created on the way are `fsync`ed
//! into their parents. A crash mid-put leaves at most a `.tmp-*` file, which
//! `list` ignores and [`LocalBackend::remove_temp_files`] deletes.
//!
//! # Costs
//!
//! `list` walks the whole tree and sorts (the hash fan-out destroys key
//! order): O(objects) per page. That is fine for fsck/GC sweeps of a local
//! tier; a hot listing path would need an index.
//!
//! A blob placed for direct I/O ([`crate::aligned`], as the engine
//! encodes every extent) is written with `O_DIRECT`, whole blocks of it:
//! the disk takes the bytes from the blob, where the page cache would cost
//! a copy of each, and a bulk write does not push other data out of the
//! cache. Reads go through the page cache, which serves an object read
//! again (a database opened anew) without the disk.
//!
//! # Checking its own copies
//!
//! A put of a content key records, in the extended attribute
//! `user.fsx.xxh3` of the file, the XXH3-128 of the bytes seeded with the
//! key's digest; a get recomputes it (about 20 GB/s on one core, where
//! SHA-256 of the key runs at 2) and fails [`crate::ErrorKind::Corrupt`] on a
//! mismatch, so the store keeps [`Capabilities::checks_content`] and
//! readers need not hash a local extent again. The seed binds the bytes to
//! their name: a file copied or renamed over another key's fails too. A
//! file without the attribute (written before it existed, or on a file
//! system without user extended attributes) is checked against its key
//! with SHA-256 instead. Bit rot and torn writes are what this catches;
//! someone able to rewrite the directory can rewrite the volume's
//! metadata beside it, so a cryptographic check here would protect
//! nothing more.
//!
//! File system work runs on tokio's blocking pool (`spawn_blocking`), never
//! on the async executor's threads.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::aligned::direct_prefix;
use crate::backend::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta, resolve_range,
};
use crate::error::{Result, StoreError};
use crate::key::ObjectKey;
use crate::memory::DEFAULT_MAX_OBJECT_SIZE;

/// Longest single file or directory name the layout produces (plus `~`).
const CHUNK: usize = 200;
const CHUNK_DIR_SUFFIX: char = '~';
const TEMP_PREFIX: &str = ".tmp-";
const OBJECTS_DIR: &str = "objects";

/// A store in a local directory; see the module docs.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    layout: Arc<Layout>,
    capabilities: Capabilities,
}

impl LocalBackend {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let layout = Layout::create(root.into())?;
        Ok(Self {
            layout: Arc::new(layout),
            capabilities: Capabilities::new(DEFAULT_MAX_OBJECT_SIZE).checks_content(true),
        })
    }

    /// Open a store that must already exist at `root`, creating nothing.
    ///
    /// A missing root or `objects/` directory is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound)
    /// naming the path: the store's disk may be unmounted (the empty mount
    /// point left behind) or the directory moved, and recreating it would
    /// send new data to the wrong disk while the old data is unreachable.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self> {
        let layout = Layout::open_existing(root.into())?;
        Ok(Self {
            layout: Arc::new(layout),
            capabilities: Capabilities::new(DEFAULT_MAX_OBJECT_SIZE).checks_content(true),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// Where `key`'s bytes live (the layout table in the module docs).
    pub fn path_for(&self, key: &ObjectKey) -> PathBuf {
        self.layout.path_for(key)
    }

    /// Delete leftovers of puts interrupted by a crash. Only safe while no
    /// put is running on this directory (e.g. at startup). Returns how many
    /// files were removed.
    pub async fn remove_temp_files(&self) -> Result<usize> {
        let layout = self.layout.clone();
        blocking(move || {
            let mut removed = 0;
            layout.walk(&mut |path, name, _| {
                if name.starts_with(TEMP_PREFIX) {
                    fs::remove_file(path).map_err(|e| {
                        StoreError::from_io(format!("remove {}", path.display()), e)
                    })?;
                    removed += 1;
                }
                Ok(())
            })?;
            Ok(removed)
        })
        .await
    }
}

impl fmt::Display for LocalBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "local directory {}", self.layout.root.display())
    }
}

impl ExtentBackend for LocalBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        let path = self.layout.path_for(key);
        let key = key.clone();
        Box::pin(blocking(move || {
            // Through the page cache, unlike puts: a blob read once is
            // often read again by another process (a database opened
            // anew), and there the page cache serves it without the disk.
            let mut file = File::open(&path).map_err(|e| io_error("get", &path, e))?;
            let len = file
                .metadata()
                .map_err(|e| io_error("get", &path, e))?
                .len();
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes)
                .map_err(|e| io_error("get", &path, e))?;
            check_own_copy(&key, &file, &bytes)?;
            Ok(Bytes::from(bytes))
        }))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        let path = self.layout.path_for(key);
        Box::pin(blocking(move || read_range(&path, &range)))
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        let layout = self.layout.clone();
        let key = key.clone();
        Box::pin(async move {
            self.capabilities.check_put_size(&key, value.len())?;
            blocking(move || {
                let seal = seal(&key, &value);
                layout.write_parts_atomically(&key, &[&value], seal)
            })
            .await
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a ObjectKey,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool>> {
        let layout = self.layout.clone();
        let key = key.clone();
        Box::pin(async move {
            self.capabilities.check_put_size(&key, value.len())?;
            blocking(move || layout.create_atomically(&key, &value)).await
        })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        let layout = self.layout.clone();
        let key = key.clone();
        Box::pin(blocking(move || layout.remove(&key)))
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        let path = self.layout.path_for(key);
        let key = key.clone();
        Box::pin(blocking(move || {
            let meta = fs::metadata(&path).map_err(|e| io_error("head", &path, e))?;
            Ok(ObjectMeta::new(key, meta.len()).last_modified_ms(modified_ms(&meta)))
        }))
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        let layout = self.layout.clone();
        let request = request.clone();
        Box::pin(blocking(move || {
            let mut found = Vec::new();
            layout.walk(&mut |path, _, object| {
                if let Some((key, size)) = object
                    && request.admits(key.as_str())
                {
                    // Deleted since the walk saw it: age unknown.
                    let modified = fs::metadata(path).ok().and_then(|m| modified_ms(&m));
                    found.push(ObjectMeta::new(key, size).last_modified_ms(modified));
                }
                Ok(())
            })?;
            Ok(request.page_from_unsorted(found))
        }))
    }
}

/// Run blocking file system work off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::other(format!("blocking file task failed: {e}")).with_source(e))?
}

/// A file's modification time in ms since the Unix epoch, if the platform
/// reports one.
fn modified_ms(meta: &fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

fn io_error(op: &str, path: &Path, err: io::Error) -> StoreError {
    StoreError::from_io(format!("{op} {}", path.display()), err)
}

fn read_range(path: &Path, range: &Range<u64>) -> Result<Bytes> {
    // Open first: the descriptor pins one version of the object even if a
    // concurrent put renames a new one over it.
    let mut file = File::open(path).map_err(|e| io_error("get_range", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io_error("get_range", path, e))?
        .len();
    let r = resolve_range(range, len)?;
    let mut buf = vec![0u8; r.len()];
    file.seek(SeekFrom::Start(r.start as u64))
        .map_err(|e| io_error("get_range", path, e))?;
    file.read_exact(&mut buf)
        .map_err(|e| io_error("get_range", path, e))?;
    Ok(Bytes::from(buf))
}

/// The name of the extended attribute holding a content key's seal.
const SEAL_ATTR: &[u8] = b"user.fsx.xxh3\0";

/// XXH3-128 of an object's bytes seeded with its key's digest.
pub(crate) type Seal = [u8; 16];

/// The seal of `bytes` stored under content key `key`; `None` for other
/// keys, which the store does not check.
fn seal(key: &ObjectKey, bytes: &[u8]) -> Option<Seal> {
    let digest = key.content_digest_prefix()?;
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(bytes, u64::from_le_bytes(seed));
    Some(h.to_le_bytes())
}

/// Checks `bytes`, just read from `file`, against the seal recorded when
/// the object was put, or against the content key itself where the file
/// has none (see the module docs). Other keys pass.
fn check_own_copy(key: &ObjectKey, file: &File, bytes: &[u8]) -> Result<()> {
    let Some(expected) = seal(key, bytes) else {
        return Ok(());
    };
    match read_seal(file) {
        Some(recorded) if recorded == expected => Ok(()),
        Some(_) => Err(StoreError::corrupt(format!(
            "{key} in the local store does not match the checksum recorded when it was written"
        ))),
        None => key.verify_content(bytes),
    }
}

#[cfg(target_os = "linux")]
fn set_seal(file: &File, seal: &Seal) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the name is NUL-terminated and the value lives across the call.
    let r = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            SEAL_ATTR.as_ptr().cast(),
            seal.as_ptr().cast(),
            seal.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(target_os = "linux")]
fn read_seal(file: &File) -> Option<Seal> {
    use std::os::fd::AsRawFd;
    let mut out = [0u8; 16];
    // SAFETY: the name is NUL-terminated and `out` has the length given.
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            SEAL_ATTR.as_ptr().cast(),
            out.as_mut_ptr().cast(),
            out.len(),
        )
    };
    (n == out.len() as isize).then_some(out)
}

#[cfg(not(target_os = "linux"))]
fn set_seal(_file: &File, _seal: &Seal) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(target_os = "linux"))]
fn read_seal(_file: &File) -> Option<Seal> {
    None
}

/// Called per file by [`Layout::walk`]: `(path, file name, Some((key, size)))`
/// for objects, `None` for anything else.
pub(crate) type Visitor<'a> = dyn FnMut(&Path, &str, Option<(ObjectKey, u64)>) -> Result<()> + 'a;

/// Path arithmetic and durable file operations for a fanned-out directory.
/// Shared with the disk cache, which uses the same layout.
#[derive(Debug)]
pub(crate) struct Layout {
    root: PathBuf,
    objects: PathBuf,
    temp_counter: AtomicU64,
}

impl Layout {
    pub(crate) fn create(root: PathBuf) -> Result<Self> {
        let objects = root.join(OBJECTS_DIR);
        fs::create_dir_all(&objects).map_err(|e| io_error("create", &objects, e))?;
        Ok(Self {
            root,
            objects,
            temp_counter: AtomicU64::new(0),
        })
    }

    /// The layout of a store created earlier; see
    /// [`LocalBackend::open_existing`].
    pub(crate) fn open_existing(root: PathBuf) -> Result<Self> {
        let objects = root.join(OBJECTS_DIR);
        if !objects.is_dir() {
            let what = if root.is_dir() {
                format!(
                    "{} holds no fsx data store (no {OBJECTS_DIR}/ directory)",
                    root.display()
                )
            } else {
                format!("the data store directory {} does not exist", root.display())
            };
            return Err(StoreError::not_found(format!(
                "{what}: is its disk unmounted or the directory moved? Mount or restore it \
                 (fsx never recreates a store; only `fsx init` creates one)"
            )));
        }
        Ok(Self {
            root,
            objects,
            temp_counter: AtomicU64::new(0),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn path_for(&self, key: &ObjectKey) -> PathBuf {
        let digest = Sha256::digest(key.as_str().as_bytes());
        let mut path = self
            .objects
            .join(hex::encode(&digest[..1]))
            .join(hex::encode(&digest[1..2]));
        let encoded = encode_name(key.as_str());
        let chunks: Vec<&str> = chunk_str(&encoded).collect();
        let (last, dirs) = chunks.split_last().unwrap_or((&"", &[]));
        for dir in dirs {
            path.push(format!("{dir}{CHUNK_DIR_SUFFIX}"));
        }
        path.push(last);
        path
    }

    /// Temp file marked with `seal` (see the module docs), fsync, rename,
    /// fsync directory (see module docs).
    pub(crate) fn write_parts_atomically(
        &self,
        key: &ObjectKey,
        parts: &[&[u8]],
        seal: Option<Seal>,
    ) -> Result<()> {
        let path = self.path_for(key);
        self.with_synced_temp("put", &path, parts, seal, |temp, dir| {
            fs::rename(temp, &path)?;
            sync_dir(dir)
        })
    }

    /// Like [`Layout::write_parts_atomically`], but only if the object is absent:
    /// the complete, fsynced temp file is *linked* to the final name, and
    /// `link(2)` fails on an existing name as `O_EXCL` does, so of several
    /// racing creators exactly one wins and no reader sees a partial file.
    /// `Ok(false)`: the object existed and is unchanged.
    pub(crate) fn create_atomically(&self, key: &ObjectKey, value: &[u8]) -> Result<bool> {
        let path = self.path_for(key);
        self.with_synced_temp(
            "put_if_absent",
            &path,
            &[value],
            seal(key, value),
            |temp, dir| {
                let created = match fs::hard_link(temp, &path) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                    Err(e) => return Err(e),
                };
                fs::remove_file(temp)?;
                sync_dir(dir)?;
                Ok(created)
            },
        )
    }

    /// Writes `parts` to a new temp file next to `path`, marks it with
    /// `seal` where the file system keeps extended attributes, and fsyncs
    /// it, then lets `install` move it into place; the temp file never
    /// outlives a failure. `op` names the operation in errors.
    fn with_synced_temp<T>(
        &self,
        op: &'static str,
        path: &Path,
        parts: &[&[u8]],
        seal: Option<Seal>,
        install: impl FnOnce(&Path, &Path) -> io::Result<T>,
    ) -> Result<T> {
        let dir = path.parent().unwrap_or(&self.objects).to_path_buf();
        self.ensure_dir(&dir)?;
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            // create_new: never clobber another writer's temp file.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            write_parts(&file, &temp, parts)?;
            if let Some(seal) = seal {
                // Without the attribute a get hashes the file instead: a
                // file system that refuses it costs speed, not safety.
                let _ = set_seal(&file, &seal);
            }
            // The fsync covers the attribute too (the inode's metadata).
            file.sync_all()?;
            drop(file);
            install(&temp, &dir)
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error(op, path, e)
        })
    }

    pub(crate) fn remove(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path_for(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("delete", &path, e)),
        }
        let dir = path.parent().unwrap_or(&self.objects);
        sync_dir(dir).map_err(|e| io_error("delete", &path, e))?;
        // Long keys leave chunk directories behind; drop them while empty.
        // remove_dir fails on a non-empty directory, which is what we want.
        let mut dir = dir.to_path_buf();
        while dir
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.ends_with(CHUNK_DIR_SUFFIX))
        {
            if fs::remove_dir(&dir).is_err() {
                break;
            }
            dir.pop();
        }
        Ok(())
    }

    /// Create `dir` and any missing parents, fsyncing each new entry into its
    /// parent so the object's path survives a crash along with the object.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() || dir == self.objects {
            return Ok(());
        }
        let parent = dir.parent().unwrap_or(&self.objects);
        self.ensure_dir(parent)?;
        match fs::create_dir(dir) {
            Ok(()) => sync_dir(parent).map_err(|e| io_error("create", dir, e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_error("create", dir, e)),
        }
    }

    /// Visit every file under `objects/`: `(path, file name, Some((key,
    /// size)))` for objects, `None` for files that are not (temp files,
    /// foreign names).
    pub(crate) fn walk(&self, visit: &mut Visitor<'_>) -> Result<()> {
        for level1 in read_dir_sorted(&self.objects)? {
            for level2 in read_dir_sorted(&level1)? {
                walk_leaf(&level2, String::new(), visit)?;
            }
        }
        Ok(())
    }
}

fn walk_leaf(dir: &Path, encoded_prefix: String, visit: &mut Visitor<'_>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Removed concurrently (empty chunk directory cleanup).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            visit(&path, "", None)?;
            continue;
        };
        let file_type = entry.file_type().map_err(|e| io_error("list", &path, e))?;
        if file_type.is_dir() {
            if let Some(chunk) = name.strip_suffix(CHUNK_DIR_SUFFIX) {
                walk_leaf(&path, format!("{encoded_prefix}{chunk}"), visit)?;
            }
            continue;
        }
        let key =
            decode_name(&format!("{encoded_prefix}{name}")).and_then(|k| ObjectKey::new(&k).ok());
        let object = match key {
            Some(key) => match entry.metadata() {
                Ok(meta) => Some((key, meta.len())),
                // Deleted between readdir and stat: not listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("list", &path, e)),
            },
            None => None,
        };
        visit(&path, &name, object)?;
    }
    Ok(())
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error("list", dir, e))? {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        if entry
            .file_type()
            .map_err(|e| io_error("list", dir, e))?
            .is_dir()
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `parts` into `file`, new and empty at `temp`. The whole blocks
/// of a single blob placed for direct I/O ([`crate::aligned`]) go to the
/// disk straight from it, through a second descriptor opened `O_DIRECT`;
/// the rest, and everything where direct I/O is refused, through the page
/// cache. Either way the caller's `fsync` of `file` makes all of it
/// durable (one inode).
fn write_parts(file: &File, temp: &Path, parts: &[&[u8]]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut skip = 0;
    if let [data] = parts {
        let blocks = direct_prefix(data);
        // A failed direct write (a file system without O_DIRECT) leaves
        // nothing the buffered write below does not overwrite.
        if blocks > 0 && write_direct(temp, &data[..blocks]).is_ok() {
            skip = blocks;
        }
    }
    let mut at = 0u64;
    for part in parts {
        let from = skip.min(part.len());
        skip -= from;
        file.write_all_at(&part[from..], at + from as u64)?;
        at += part.len() as u64;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn write_direct(path: &Path, blocks: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?
        .write_all(blocks)
}

#[cfg(not(target_os = "linux"))]
fn write_direct(_path: &Path, _blocks: &[u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Split an ASCII string into `CHUNK`-byte pieces (at least one piece).
fn chunk_str(s: &str) -> impl Iterator<Item = &str> {
    let n = s.len().div_ceil(CHUNK).max(1);
    // The encoding is pure ASCII, so every byte offset is a char boundary.
    (0..n).map(move |i| &s[i * CHUNK..((i + 1) * CHUNK).min(s.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for key in ["extent/ext-00ff", "a b/ü/ключ", ".hidden", "x%y~z", "Case"] {
            let enc = encode_name(key);
            assert!(!enc.contains(['.', '~', '/']), "{enc}");
            assert_eq!(decode_name(&enc).as_deref(), Some(key));
        }
        assert_eq!(decode_name(".tmp-1-2"), None);
        assert_eq!(decode_name("%4"), None);
    }

    #[test]
    fn chunks_cover_the_string() {
        let s = "a".repeat(450);
        let parts: Vec<&str> = chunk_str(&s).collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [200, 200, 50]
        );
        assert_eq!(chunk_str("").count(), 1);
    }
}
