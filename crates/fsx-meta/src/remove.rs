//! What `unlink` and `rmdir` do — or which errno refuses them — given the
//! directory, the entry and the caller, in the kernel's order: search
//! permission to look the name up, the name's existence, write and search
//! permission to remove it, the sticky bit, then the entry's kind and (for
//! `rmdir`) emptiness. `tests/perm_kernel.rs` compares every combination
//! with the kernel, as five users.

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
