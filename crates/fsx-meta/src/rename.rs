//! What `rename` does — or which errno refuses it — given what the two
//! paths name: the decision the file tree's rename transaction makes
//! after reading both entries and walking the ancestors (issue 14). The
//! cases other file systems got wrong are here on purpose: a directory
//! over a file (`ENOTDIR`), a file over a directory (`EISDIR`), over a
//! non-empty directory (`ENOTEMPTY`), into its own subtree (`EINVAL`), and
//! one link of an inode over another link of the same inode (nothing
//! happens) — and the permissions: removing the source from its directory
//! and the destination from its (sticky directories included), creating
//! the new name, and write permission on a directory that changes parent.
//! `tests/rename_kernel.rs` compares every combination with `renameat2` on
//! the local file system, as root and as another user.

use crate::names::Refused;
use crate::perm::{self, Caller, Denied, Owned};

/// How to rename (`renameat2`'s flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenameFlags {
    /// `RENAME_NOREPLACE`: fail with `EEXIST` rather than replace.
    pub no_replace: bool,
    /// `RENAME_EXCHANGE`: swap the two entries, which must both exist.
    pub exchange: bool,
}

/// An existing entry, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// Its inode.
    pub ino: u64,
    /// Whether it is a directory.
    pub dir: bool,
    /// For a directory, whether it has no entries.
    pub empty: bool,
}

/// What the two paths name, and how they relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenameCase {
    /// The source entry, if it exists.
    pub src: Option<Side>,
    /// The destination entry, if it exists.
    pub dst: Option<Side>,
    /// The source is the destination's parent or one of its ancestors.
    pub src_above_dst: bool,
    /// The destination is the source's parent or one of its ancestors.
    pub dst_above_src: bool,
}

/// What a permitted rename does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameAction {
    /// Nothing: both names are links to the same inode.
    Nothing,
    /// The source's entry moves to the destination name.
    Move,
    /// The source replaces the destination, whose link goes away.
    Replace,
    /// The two entries swap.
    Exchange,
}

/// Who renames, and the ownership and modes the permission checks read:
/// the two parent directories and the two entries' inodes.
#[derive(Debug, Clone)]
pub struct RenameAccess {
    /// The caller.
    pub caller: Caller,
    /// The source's directory.
    pub src_dir: Owned,
    /// The destination's directory.
    pub dst_dir: Owned,
    /// The source's inode (ignored when the source is missing).
    pub src: Owned,
    /// The destination's inode, when it exists.
    pub dst: Option<Owned>,
    /// Whether both names are in the same directory.
    pub same_dir: bool,
}

impl RenameAccess {
    /// Root renaming: no permission check refuses anything.
    pub fn root() -> Self {
        let any = Owned {
            uid: 0,
            gid: 0,
            mode: 0o777,
            dir: true,
        };
        Self {
            caller: Caller::root(),
            src_dir: any,
            dst_dir: any,
            src: any,
            dst: None,
            same_dir: false,
        }
    }
}

/// Decides a rename, checking in the kernel's order: the flags, which
/// names exist, loops, links of one inode, then permissions (removing the
/// source from its directory, removing or creating the destination, and
/// write permission on a directory that changes parent), then the kinds.
pub fn decide(
    case: RenameCase,
    flags: RenameFlags,
    access: &RenameAccess,
) -> Result<RenameAction, Refused> {
    if flags.exchange && flags.no_replace {
        return Err(Refused::Invalid);
    }
    let src = case.src.ok_or(Refused::NotFound)?;
    let dst = match case.dst {
        None if flags.exchange => return Err(Refused::NotFound),
        None => None,
        Some(_) if flags.no_replace => return Err(Refused::Exists),
        Some(d) => Some(d),
    };
    if case.src_above_dst {
        return Err(Refused::Invalid);
    }
    if case.dst_above_src {
        return Err(if flags.exchange {
            Refused::Invalid
        } else {
            Refused::NotEmpty
        });
    }
    if dst.is_some_and(|d| d.ino == src.ino) {
        return Ok(RenameAction::Nothing);
    }
    let a = access;
    let removable = |dir: Owned, entry: Owned| {
        perm::may_remove(&a.caller, dir, entry.uid).map_err(|e| match e {
            Denied::Access => Refused::Access,
            Denied::NotPermitted => Refused::NotPermitted,
        })
    };
    removable(a.src_dir, a.src)?;
    let creatable = || {
        if perm::may(&a.caller, a.dst_dir, perm::W | perm::X) {
            Ok(())
        } else {
            Err(Refused::Access)
        }
    };
    match dst {
        Some(d) => {
            match a.dst {
                Some(owner) => removable(a.dst_dir, owner)?,
                None => creatable()?,
            }
            if !flags.exchange {
                match (src.dir, d.dir) {
                    (true, false) => return Err(Refused::NotDir),
                    (false, true) => return Err(Refused::IsDir),
                    _ => {}
                }
            }
        }
        None => creatable()?,
    }
    // A directory that changes parent has its `..` rewritten.
    if !a.same_dir {
        if src.dir && !perm::may(&a.caller, a.src, perm::W) {
            return Err(Refused::Access);
        }
        if flags.exchange
            && dst.is_some_and(|d| d.dir)
            && a.dst.is_some_and(|o| !perm::may(&a.caller, o, perm::W))
        {
            return Err(Refused::Access);
        }
    }
    let Some(dst) = dst else {
        return Ok(RenameAction::Move);
    };
    if flags.exchange {
        return Ok(RenameAction::Exchange);
    }
    if src.dir && !dst.empty {
        return Err(Refused::NotEmpty);
    }
    Ok(RenameAction::Replace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: Side = Side {
        ino: 1,
        dir: false,
        empty: true,
    };
    const DIR: Side = Side {
        ino: 2,
        dir: true,
        empty: true,
    };

    fn case(src: Option<Side>, dst: Option<Side>) -> RenameCase {
        RenameCase {
            src,
            dst,
            src_above_dst: false,
            dst_above_src: false,
        }
    }

    #[test]
    fn the_cases_others_got_wrong() {
        let plain = RenameFlags::default();
        let root = RenameAccess::root();
        let file2 = Side { ino: 3, ..FILE };
        let full = Side {
            ino: 4,
            empty: false,
            ..DIR
        };
        assert_eq!(
            decide(case(Some(DIR), Some(file2)), plain, &root),
            Err(Refused::NotDir)
        );
        assert_eq!(
            decide(case(Some(FILE), Some(DIR)), plain, &root),
            Err(Refused::IsDir)
        );
        assert_eq!(
            decide(case(Some(DIR), Some(full)), plain, &root),
            Err(Refused::NotEmpty)
        );
        assert_eq!(
            decide(case(Some(FILE), Some(FILE)), plain, &root),
            Ok(RenameAction::Nothing),
            "two links of one inode"
        );
        let into_itself = RenameCase {
            src_above_dst: true,
            ..case(Some(DIR), None)
        };
        assert_eq!(decide(into_itself, plain, &root), Err(Refused::Invalid));
        let both = RenameFlags {
            no_replace: true,
            exchange: true,
        };
        assert_eq!(
            decide(case(Some(FILE), None), both, &root),
            Err(Refused::Invalid)
        );
    }
}
