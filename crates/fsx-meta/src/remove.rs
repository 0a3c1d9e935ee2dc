//! What `unlink`, `rmdir` and `link` do — or which errno refuses them —
//! given the directory, the entry and the caller, in the kernel's order.
//! For a removal: search permission to look the name up, the name's
//! existence, write and search permission to remove it, the sticky bit,
//! then the entry's kind and (for `rmdir`) emptiness; for a link, see
//! [`decide_link`]. `tests/perm_kernel.rs` compares every combination with
//! the kernel, as five users.

use crate::names::Refused;
use crate::perm::{self, Caller, Owned};
use crate::rename::Side;

/// Which call removes the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOp {
    /// `unlink`: anything but a directory.
    Unlink,
    /// `rmdir`: an empty directory.
    Rmdir,
}

/// Decides whether `caller` may `op` the entry `name` of `dir`, which
/// names `entry` (owned by `entry_uid`) or nothing.
pub fn decide(
    caller: &Caller,
    dir: Owned,
    op: RemoveOp,
    name: &[u8],
    entry: Option<(Side, u32)>,
) -> Result<(), Refused> {
    if !perm::may(caller, dir, perm::X) {
        return Err(Refused::Access);
    }
    if op == RemoveOp::Rmdir {
        match name {
            b"." => return Err(Refused::Invalid),
            b".." => return Err(Refused::NotEmpty),
            _ => {}
        }
    }
    let (side, owner) = entry.ok_or(Refused::NotFound)?;
    perm::may_remove(caller, dir, owner).map_err(|e| match e {
        perm::Denied::Access => Refused::Access,
        perm::Denied::NotPermitted => Refused::NotPermitted,
    })?;
    match (op, side.dir) {
        (RemoveOp::Unlink, true) => Err(Refused::IsDir),
        (RemoveOp::Rmdir, false) => Err(Refused::NotDir),
        (RemoveOp::Rmdir, true) if !side.empty => Err(Refused::NotEmpty),
        _ => Ok(()),
    }
}

/// Decides whether `caller` may make a new link `name` in `dir` to the
/// inode `target` (`None`: the source name does not exist; the flag says
/// whether it is a regular file), given whether
/// `name` already exists, in the kernel's order: the source, the new
/// name, the protected-hardlinks policy (`protected`: Linux's
/// `fs.protected_hardlinks`, on by default — a caller who does not own the
/// inode may link only a regular file it may read and write that is not
/// set-user-ID nor set-group-ID and group-executable), permission to
/// create in `dir`, and no links to directories.
pub fn decide_link(
    caller: &Caller,
    dir: Owned,
    target: Option<(Owned, bool)>,
    exists: bool,
    protected: bool,
) -> Result<(), Refused> {
    let (target, regular) = target.ok_or(Refused::NotFound)?;
    if exists {
        return Err(Refused::Exists);
    }
    if protected && !caller.is_root() && caller.uid != target.uid {
        let set_id = target.mode & perm::S_ISUID != 0
            || target.mode & (perm::S_ISGID | 0o010) == perm::S_ISGID | 0o010;
        if !regular || set_id || !perm::may(caller, target, perm::R | perm::W) {
            return Err(Refused::NotPermitted);
        }
    }
    if !perm::may(caller, dir, perm::W | perm::X) {
        return Err(Refused::Access);
    }
    if target.dir {
        return Err(Refused::NotPermitted);
    }
    Ok(())
}
