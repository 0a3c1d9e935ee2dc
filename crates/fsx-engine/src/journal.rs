//! Local journals: the bytes of a database's journal or WAL kept in a plain
//! file beside an embedded metadata database while a writer has it open.
//!
//! A WAL-mode commit is one small append (a 4,120-byte frame) and one
//! sync. Through the page store it became a metadata transaction that
//! stored two 4 KiB pages as blobs in the metadata's b-tree: about 28 KB
//! written per commit against native SQLite's 6.3 KB (see "The cost of one
//! commit" in `docs/ARCHITECTURE.md`). A journal is rewritten from its
//! start over and over and lives only as long as the database is open, so
//! nothing is gained by giving each of its versions content-addressed
//! pages. When the volume's metadata is local (the embedded SQLite
//! engine), a writer opened with [`crate::OpenOptions::journal`] keeps the
//! file's bytes in a local file instead, at the same offsets; `sync` is one
//! `fdatasync` of it. That file is in the metadata's durability domain: the
//! same machine and disk as `meta.db`, synced the same way.
//!
//! Invariants:
//!
//! - **The local file is the content.** While it exists, it holds the
//!   file's bytes on its branch; readers of the branch (in any process)
//!   read it, not the page store. The page store's copy in the branch head
//!   is **empty** while a journal is active (the writer truncates it when it
//!   opens the journal), so a snapshot that does not fold the journal in
//!   shows the file empty — a state a crash could leave a journal in, never
//!   a stale version mixed with a newer database.
//! - **Folding.** Closing the writer writes the local bytes into the page
//!   store (one `sync`, then packing), then deletes the local file. A local
//!   file left by a writer that died is folded by the next writer of the
//!   file before it writes anything, so no synced byte is lost. Explicit
//!   commits and branches fold active journals into the layer they freeze
//!   and leave the head's copy empty again (see [`crate::branch`]).
//! - **Names.** A journal is `b{branch}-f{file id}` in the journal
//!   directory: one per file per branch, as the lease.

use std::fmt::Debug;
use std::io;

use fsx_meta::{BranchId, FileId};
use fsx_store::{MaybeSend, MaybeSync};

/// Where a volume keeps local journals (see the module docs).
pub trait JournalDir: MaybeSend + MaybeSync + Debug {
    /// Opens journal `name`, or `Ok(None)` if there is none.
    fn open(&self, name: &str) -> io::Result<Option<Box<dyn JournalFile>>>;

    /// Creates an empty draft of journal `name`, to be filled and then
    /// [`published`](JournalDir::publish): a journal only ever appears
    /// whole, so a crash while one is being filled leaves no journal.
    fn create(&self, name: &str) -> io::Result<Box<dyn JournalFile>>;

    /// Makes the draft of `name` the journal (replacing any), durably.
    fn publish(&self, name: &str) -> io::Result<()>;

    /// Deletes journal `name` (nothing if missing); durable when it
    /// returns.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// The names of every journal (drafts excluded).
    fn list(&self) -> io::Result<Vec<String>>;
}

/// One open local journal.
pub trait JournalFile: MaybeSend + MaybeSync + Debug {
    /// Reads into `buf` from `offset`; fewer bytes at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `data` at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Sets the length (zeros when growing).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every write and length change durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
}

/// The error of a failed `what` (read, write, list…) on journal `name`
/// (`"directory"` for the directory itself).
pub(crate) fn io_error(name: &str, what: &str, e: io::Error) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Unavailable,
        format!("cannot {what} the local journal {name}: {e}; check the volume directory's disk"),
    )
    .with_source(e)
}

/// The name of the journal of `file` on `branch`.
pub(crate) fn journal_name(branch: BranchId, file: FileId) -> String {
    format!("b{branch}-f{file}")
}

/// Journals as files in a local directory.
#[cfg(unix)]
#[derive(Debug)]
pub struct LocalJournalDir {
    dir: std::path::PathBuf,
}

#[cfg(unix)]
impl LocalJournalDir {
    /// Journals in `dir` (created on first use, owner-only: journals hold
    /// database bytes).
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn sync_dir(&self) -> io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(unix)]
impl JournalDir for LocalJournalDir {
    fn open(&self, name: &str) -> io::Result<Option<Box<dyn JournalFile>>> {
        let path = self.dir.join(name);
        let opened = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            // A volume on read-only media (or not ours to write) can still
            // be read, its journals included.
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    || e.kind() == io::ErrorKind::ReadOnlyFilesystem =>
            {
                std::fs::File::open(&path)
            }
            other => other,
        };
        match opened {
            Ok(file) => Ok(Some(Box::new(LocalJournal { file }))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn JournalFile>> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if !self.dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            if let Some(parent) = self.dir.parent() {
                std::fs::File::open(parent)?.sync_all()?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.dir.join(format!("{name}{DRAFT}")))?;
        Ok(Box::new(LocalJournal { file }))
    }

    fn publish(&self, name: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(format!("{name}{DRAFT}")), self.dir.join(name))?;
        self.sync_dir()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str()
                && !name.ends_with(DRAFT)
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The file id of journal `name` if it is one of `branch`'s.
pub(crate) fn journal_of(name: &str, branch: BranchId) -> Option<FileId> {
    name.strip_prefix(&format!("b{branch}-f"))?.parse().ok()
}

/// The suffix of a journal being filled (see [`JournalDir::create`]).
#[cfg(unix)]
const DRAFT: &str = ".draft";

#[cfg(unix)]
#[derive(Debug)]
struct LocalJournal {
    file: std::fs::File,
}

#[cfg(unix)]
impl JournalFile for LocalJournal {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
