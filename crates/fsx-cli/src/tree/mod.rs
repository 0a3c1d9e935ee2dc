//! Copying whole trees between a local directory and a volume's file tree
//! (`fsx import`, `fsx export`).
//!
//! One walker ([`copy::copy_tree`]) copies from any [`Source`] to any
//! [`Dest`]; the local file system ([`local::LocalTree`]) and a volume
//! seen through `fsx_posix` ([`volume::VolumeTree`]) are both. Import is
//! local → volume, export volume → local, so every rule below is written
//! once and both directions follow it.
//!
//! # What a copy keeps
//!
//! Regular files' contents with their holes (only the stretches the
//! source reports as data are written; the size is set last), modes with
//! set-user-ID, set-group-ID and sticky, owners (when the process is root),
//! access and modification times in nanoseconds, symlink targets as bytes,
//! hard links, extended attributes, FIFOs, sockets and device nodes. Names
//! are bytes throughout; nothing goes through a lossy string.
//!
//! # Invariants
//!
//! - **Scan, then copy.** The source is scanned whole first (one `lstat`
//!   per entry, before anything reads that entry), so the totals of the
//!   progress bar are known and every time recorded is the one the entry
//!   had before the copy touched it (reading a directory updates its
//!   access time on most local mounts).
//! - **Attributes last:** extended attributes, then owner, mode and times
//!   in one step ([`Dest::set_attributes`]; in a volume one transaction
//!   when no set-id bit forces `chown` first, since `chown` clears them).
//!   New nodes are made owner-only (`0700`, `0600`) so a non-root copier
//!   can still write into them and set their user attributes; times go
//!   last because anything written before them would move them. A
//!   directory's attributes are set after its children are made.
//! - **Owners** are the source's when the process is root; otherwise every
//!   copy belongs to the process's user (counted, and said once, when the
//!   source's owner differed).
//! - **A regular file's times are set after its handle is released:** in
//!   a volume, a file's `mtime` follows its writes until they are synced.
//! - **Hard links** are found by the source's identity of an inode (local
//!   `(st_dev, st_ino)`, a volume's inode number): the first path is copied,
//!   every later one is a link to the copy.
//! - **Nothing is skipped silently.** Whatever cannot be copied (an entry,
//!   an attribute, an owner) is reported with its path and reason as it
//!   happens and counted; the copy carries on with everything else, and
//!   the command exits non-zero at the end.

pub(crate) mod copy;
pub(crate) mod local;
pub(crate) mod volume;

use std::borrow::Cow;

use fsx_posix::NodeKind;

/// What the copy needs to know of one source entry, from one `lstat` (or
/// a volume's `getattr`).
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub kind: NodeKind,
    /// Permission bits with set-user-ID, set-group-ID and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    /// A device node's number.
    pub rdev: u64,
    /// A regular file's size.
    pub size: u64,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    /// Which inode this is, to find hard links: local `(st_dev, st_ino)`,
    /// `(0, ino)` in a volume.
    pub id: (u64, u64),
}

/// What a copy's node ends with, set in one step once its contents,
/// children and extended attributes are in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attributes {
    pub uid: u32,
    pub gid: u32,
    /// `None` for a symlink, whose mode is fixed.
    pub mode: Option<u32>,
    pub atime_ns: i64,
    pub mtime_ns: i64,
}

/// What to make at a name, other than a regular file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Make<'a> {
    Dir,
    Symlink(&'a [u8]),
    /// A FIFO, socket or device node, with its device number.
    Special(NodeKind, u64),
}

/// The side a tree is copied from.
///
/// Methods return `anyhow` errors whose text is the reason alone; the
/// walker adds the path.
pub(crate) trait Source {
    /// Where an entry is (a path, an inode).
    type Node: Clone;
    /// An open regular file.
    type Reader;

    /// The node, for messages.
    fn show(&self, node: &Self::Node) -> String;
    async fn stat(&self, node: &Self::Node) -> anyhow::Result<Stat>;
    /// A directory's entries, ordered by name bytes.
    async fn children(&self, dir: &Self::Node) -> anyhow::Result<Vec<(Vec<u8>, Self::Node)>>;
    async fn read_link(&self, node: &Self::Node) -> anyhow::Result<Vec<u8>>;
    async fn xattr_names(&self, node: &Self::Node) -> anyhow::Result<Vec<Vec<u8>>>;
    async fn xattr(&self, node: &Self::Node, name: &[u8]) -> anyhow::Result<Vec<u8>>;
    async fn open(&self, node: &Self::Node) -> anyhow::Result<Self::Reader>;
    /// The first stretch of data at or after `offset` and before `size`,
    /// as `(start, end)`; `None` when only a hole (or nothing) is left.
    async fn data(
        &self,
        file: &mut Self::Reader,
        offset: u64,
        size: u64,
    ) -> anyhow::Result<Option<(u64, u64)>>;
    /// Up to `len` bytes at `offset` (fewer only at the end of the file).
    async fn read(
        &self,
        file: &mut Self::Reader,
        offset: u64,
        len: usize,
    ) -> anyhow::Result<Vec<u8>>;
    async fn close(&self, file: Self::Reader) -> anyhow::Result<()>;
}

/// The side a tree is copied to.
pub(crate) trait Dest {
    type Node: Clone;
    /// A regular file being written.
    type Writer;

    /// The entry `name` of `parent`, if there is one, and whether it is a
    /// directory.
    async fn existing(
        &self,
        parent: &Self::Node,
        name: &[u8],
    ) -> anyhow::Result<Option<(Self::Node, bool)>>;
    /// Removes the non-directory `name` of `parent`.
    async fn remove(&self, parent: &Self::Node, name: &[u8]) -> anyhow::Result<()>;
    async fn make(
        &self,
        parent: &Self::Node,
        name: &[u8],
        what: Make<'_>,
    ) -> anyhow::Result<Self::Node>;
    /// Makes a new, empty regular file and opens it for writing.
    async fn create(
        &self,
        parent: &Self::Node,
        name: &[u8],
    ) -> anyhow::Result<(Self::Node, Self::Writer)>;
    async fn write(&self, file: &mut Self::Writer, offset: u64, data: &[u8]) -> anyhow::Result<()>;
    /// Sets the file's size (a trailing hole stays a hole) and closes it.
    async fn finish(&self, file: Self::Writer, size: u64) -> anyhow::Result<()>;
    /// A new link `parent/name` to `node`.
    async fn link(&self, node: &Self::Node, parent: &Self::Node, name: &[u8])
    -> anyhow::Result<()>;
    async fn set_xattr(&self, node: &Self::Node, name: &[u8], value: &[u8]) -> anyhow::Result<()>;
    /// Sets owner, mode and times (see [`Attributes`]), in an order that
    /// leaves exactly these: `chown` clears set-user-ID and set-group-ID.
    async fn set_attributes(&self, node: &Self::Node, attrs: &Attributes) -> anyhow::Result<()>;
}

/// A name or path as printed: unchanged when it is UTF-8 without control
/// characters; otherwise quoted, with control characters, `"` and `\`
/// escaped and bytes that are not UTF-8 as `\xNN`, so no name can forge a
/// line or a terminal escape and every name printed is unambiguous.
pub(crate) fn shown_bytes(name: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(name)
        && !s.chars().any(char::is_control)
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::from("\"");
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => out.extend(c.escape_default()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::shown_bytes;

    #[test]
    fn names_are_shown_safely() {
        assert_eq!(shown_bytes(b"plain name"), "plain name");
        assert_eq!(shown_bytes("é".as_bytes()), "é");
        assert_eq!(shown_bytes(b"a\nb"), r#""a\nb""#);
        assert_eq!(shown_bytes(b"\x1b[31m"), r#""\u{1b}[31m""#);
        assert_eq!(shown_bytes(b"bad\xff\"q"), r#""bad\xff\"q""#);
    }
}
