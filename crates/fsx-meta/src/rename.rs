//! What `rename` does — or which errno refuses it — given what the two
//! paths name: the decision the file tree's rename transaction makes
//! after reading both entries and walking the ancestors (issue 14). The
//! cases other file systems got wrong are here on purpose: a directory
//! over a file (`ENOTDIR`), a file over a directory (`EISDIR`), over a
//! non-empty directory (`ENOTEMPTY`), into its own subtree (`EINVAL`), and
//! one link of an inode over another link of the same inode (nothing
//! happens). `tests/rename_kernel.rs` compares every combination with
//! `renameat2` on the local file system.

use crate::names::Refused;

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

/// Decides a rename, checking in the kernel's order.
pub fn decide(case: RenameCase, flags: RenameFlags) -> Result<RenameAction, Refused> {
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
    let Some(dst) = dst else {
        return Ok(RenameAction::Move);
    };
    if dst.ino == src.ino {
        return Ok(RenameAction::Nothing);
    }
    if flags.exchange {
        return Ok(RenameAction::Exchange);
    }
    match (src.dir, dst.dir) {
        (true, false) => Err(Refused::NotDir),
        (false, true) => Err(Refused::IsDir),
        (true, true) if !dst.empty => Err(Refused::NotEmpty),
        _ => Ok(RenameAction::Replace),
    }
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
        let file2 = Side { ino: 3, ..FILE };
        let full = Side {
            ino: 4,
            empty: false,
            ..DIR
        };
        assert_eq!(
            decide(case(Some(DIR), Some(file2)), plain),
            Err(Refused::NotDir)
        );
        assert_eq!(
            decide(case(Some(FILE), Some(DIR)), plain),
            Err(Refused::IsDir)
        );
        assert_eq!(
            decide(case(Some(DIR), Some(full)), plain),
            Err(Refused::NotEmpty)
        );
        assert_eq!(
            decide(case(Some(FILE), Some(FILE)), plain),
            Ok(RenameAction::Nothing),
            "two links of one inode"
        );
        let into_itself = RenameCase {
            src_above_dst: true,
            ..case(Some(DIR), None)
        };
        assert_eq!(decide(into_itself, plain), Err(Refused::Invalid));
        let both = RenameFlags {
            no_replace: true,
            exchange: true,
        };
        assert_eq!(decide(case(Some(FILE), None), both), Err(Refused::Invalid));
    }
}
