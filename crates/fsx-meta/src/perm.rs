//! POSIX permission rules, as pure functions of the caller and the inodes'
//! owner, group and mode: the checks the file tree's transactions make
//! before they change anything (issue 14), kept apart so they can be
//! checked exhaustively against the kernel (`tests/perm_kernel.rs`).
//!
//! The rules are Linux's for a local file system without ACLs:
//!
//! - **Classes.** The owner's bits apply to the owner, and only to the
//!   owner (an owner denied by them is denied even if the group or other
//!   bits would allow); then the group's bits to a caller whose primary or
//!   supplementary groups include the file's group; then the other bits.
//! - **Root** (uid 0) may read and write anything, search any directory,
//!   and execute a non-directory only if some execute bit is set.
//! - **Removing or renaming an entry** needs write and search permission
//!   on its directory; in a sticky directory (`S_ISVTX`) also being root,
//!   the entry's owner or the directory's owner.
//! - **chmod** is for the owner and root. A caller who is not root and
//!   not in the file's group loses `S_ISGID` silently.
//! - **chown** is for root; an owner may only change the group, to one of
//!   its own groups. Changing either clears `S_ISUID`, and `S_ISGID` when
//!   group execute is set (without it, the bit marks mandatory locking and
//!   stays), on a non-directory — for root too, as Linux does since 2.2.13.
//! - **Times** may be set to now by the owner, root or anyone who may
//!   write the file; to given values only by the owner or root.
//! - **Writing or truncating** a file as anyone but root clears `S_ISUID`,
//!   and `S_ISGID` when group execute is set.
//! - **New inodes** belong to their maker, in the maker's group — or in the
//!   directory's group when it is set-group-ID, and a new directory there
//!   is set-group-ID too ([`new_inode`]).

/// Set-user-ID on execution.
pub const S_ISUID: u32 = 0o4000;
/// Set-group-ID on execution; on a directory, new entries take its group.
pub const S_ISGID: u32 = 0o2000;
/// Sticky: in a directory, only owners may remove or rename entries.
pub const S_ISVTX: u32 = 0o1000;
/// The permission and special bits a mode may hold.
pub const MODE_BITS: u32 = 0o7777;

/// Read permission, as an `access(2)` want.
pub const R: u32 = 4;
/// Write permission.
pub const W: u32 = 2;
/// Execute (search, for a directory) permission.
pub const X: u32 = 1;

/// Who is asking: the file system's view of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Effective (file-system) user id.
    pub uid: u32,
    /// Effective (file-system) group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Caller {
    /// The superuser.
    pub fn root() -> Self {
        Self {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        }
    }

    /// A user with a primary group and supplementary groups.
    pub fn new(uid: u32, gid: u32, groups: &[u32]) -> Self {
        Self {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    /// Whether this caller is the superuser.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether `gid` is this caller's primary or a supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The ownership and mode of an inode, as the checks need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission and special bits (`MODE_BITS`).
    pub mode: u32,
    /// Whether the inode is a directory.
    pub dir: bool,
}

/// Why a change is refused, as the errno a file system call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// `EACCES`: the mode bits do not allow it.
    Access,
    /// `EPERM`: only the owner or root may do it.
    NotPermitted,
}

/// Whether `caller` may access `node` as `want` says (a mask of [`R`],
/// [`W`], [`X`]), as `access(2)` with the effective ids.
pub fn may(caller: &Caller, node: Owned, want: u32) -> bool {
    if caller.is_root() {
        return want & X == 0 || node.dir || node.mode & 0o111 != 0;
    }
    let class = if caller.uid == node.uid {
        node.mode >> 6
    } else if caller.in_group(node.gid) {
        node.mode >> 3
    } else {
        node.mode
    } & 7;
    want & !class == 0
}

/// Whether `caller` may remove (or rename away) an entry owned by
/// `entry_uid` from directory `dir`.
pub fn may_remove(caller: &Caller, dir: Owned, entry_uid: u32) -> Result<(), Denied> {
    if !may(caller, dir, W | X) {
        return Err(Denied::Access);
    }
    let sticky_ok = dir.mode & S_ISVTX == 0
        || caller.is_root()
        || caller.uid == entry_uid
        || caller.uid == dir.uid;
    if sticky_ok {
        Ok(())
    } else {
        Err(Denied::NotPermitted)
    }
}

/// The mode `chmod(node, mode)` by `caller` leaves, or why it is refused.
pub fn chmod(caller: &Caller, node: Owned, mode: u32) -> Result<u32, Denied> {
    if !caller.is_root() && caller.uid != node.uid {
        return Err(Denied::NotPermitted);
    }
    let mut mode = mode & MODE_BITS;
    if !caller.is_root() && !caller.in_group(node.gid) {
        mode &= !S_ISGID;
    }
    Ok(mode)
}

/// The mode `chown(node, uid, gid)` by `caller` leaves (`None`: that id
/// unchanged), or why it is refused.
pub fn chown(
    caller: &Caller,
    node: Owned,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<u32, Denied> {
    if !caller.is_root() {
        let changes_owner = uid.is_some_and(|u| u != node.uid);
        let bad_group = gid.is_some_and(|g| g != node.gid && !caller.in_group(g));
        if caller.uid != node.uid || changes_owner || bad_group {
            return Err(Denied::NotPermitted);
        }
    }
    if uid.is_none() && gid.is_none() || node.dir {
        return Ok(node.mode);
    }
    Ok(drop_set_ids(node.mode))
}

/// Whether `caller` may set `node`'s access and modification times: to
/// the current time (`now`) the owner, root or anyone who may write it;
/// to given times only the owner or root.
pub fn set_times(caller: &Caller, node: Owned, now: bool) -> Result<(), Denied> {
    if caller.is_root() || caller.uid == node.uid {
        Ok(())
    } else if !now {
        Err(Denied::NotPermitted)
    } else if may(caller, node, W) {
        Ok(())
    } else {
        Err(Denied::Access)
    }
}

/// The mode a write or truncation by `caller` leaves on a regular file.
pub fn after_write(caller: &Caller, mode: u32) -> u32 {
    if caller.is_root() {
        mode
    } else {
        drop_set_ids(mode)
    }
}

/// Owner, group and mode of a new inode that `caller` makes in `parent`
/// with `mode` (the umask already applied, as the caller's kernel does
/// before asking). A set-group-ID directory gives its group to what is
/// made in it, and its `S_ISGID` to new directories; a new file that would
/// be set-group-ID and group-executable in a group its maker is not in
/// (and is not root) loses `S_ISGID`.
pub fn new_inode(caller: &Caller, parent: Owned, mode: u32, dir: bool) -> Owned {
    let mut mode = mode & MODE_BITS;
    let gid = if parent.mode & S_ISGID != 0 {
        if dir {
            mode |= S_ISGID;
        }
        parent.gid
    } else {
        caller.gid
    };
    if !dir
        && mode & (S_ISGID | 0o010) == S_ISGID | 0o010
        && !caller.is_root()
        && !caller.in_group(gid)
    {
        mode &= !S_ISGID;
    }
    Owned {
        uid: caller.uid,
        gid,
        mode,
        dir,
    }
}

/// `S_ISUID` off, and `S_ISGID` when group execute is set.
fn drop_set_ids(mode: u32) -> u32 {
    let mut mode = mode & !S_ISUID;
    if mode & 0o010 != 0 {
        mode &= !S_ISGID;
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(uid: u32, gid: u32, mode: u32) -> Owned {
        Owned {
            uid,
            gid,
            mode,
            dir: false,
        }
    }

    #[test]
    fn the_owner_class_is_exclusive() {
        let alice = Caller::new(1000, 1000, &[]);
        // The owner has no write bit; group and other do.
        let f = file(1000, 1000, 0o466);
        assert!(!may(&alice, f, W));
        assert!(may(&alice, f, R));
        let bob = Caller::new(1001, 1000, &[]);
        assert!(may(&bob, f, R | W));
    }

    #[test]
    fn supplementary_groups_count() {
        let f = file(1, 50, 0o060);
        assert!(!may(&Caller::new(1000, 1000, &[]), f, R));
        assert!(may(&Caller::new(1000, 1000, &[7, 50]), f, R | W));
    }

    #[test]
    fn root_needs_an_execute_bit_to_execute_a_file() {
        let root = Caller::root();
        assert!(may(&root, file(5, 5, 0o000), R | W));
        assert!(!may(&root, file(5, 5, 0o600), X));
        assert!(may(&root, file(5, 5, 0o001), X));
        let dir = Owned {
            dir: true,
            ..file(5, 5, 0o000)
        };
        assert!(may(&root, dir, R | W | X));
    }

    #[test]
    fn sticky_directories_protect_other_users_entries() {
        let tmp = Owned {
            dir: true,
            ..file(0, 0, 0o1777)
        };
        let alice = Caller::new(1000, 1000, &[]);
        assert_eq!(may_remove(&alice, tmp, 1000), Ok(()));
        assert_eq!(may_remove(&alice, tmp, 1001), Err(Denied::NotPermitted));
        assert_eq!(may_remove(&Caller::root(), tmp, 1001), Ok(()));
        let locked = Owned { mode: 0o755, ..tmp };
        assert_eq!(may_remove(&alice, locked, 1000), Err(Denied::Access));
    }

    #[test]
    fn set_id_bits_follow_linux() {
        let alice = Caller::new(1000, 1000, &[]);
        // Not in the file's group: S_ISGID is dropped silently.
        assert_eq!(chmod(&alice, file(1000, 50, 0), 0o2755), Ok(0o755));
        assert_eq!(
            chmod(&alice, file(1001, 50, 0), 0o755),
            Err(Denied::NotPermitted)
        );
        // A chown clears S_ISUID, and S_ISGID only with group execute.
        assert_eq!(
            chown(&Caller::root(), file(1000, 1000, 0o6755), Some(1), None),
            Ok(0o755)
        );
        assert_eq!(
            chown(&Caller::root(), file(1000, 1000, 0o6745), None, Some(2)),
            Ok(0o2745)
        );
        assert_eq!(
            chown(&alice, file(1000, 1000, 0o644), Some(1001), None),
            Err(Denied::NotPermitted)
        );
        assert_eq!(
            chown(
                &Caller::new(1000, 1000, &[60]),
                file(1000, 1000, 0o644),
                None,
                Some(60)
            ),
            Ok(0o644)
        );
        assert_eq!(after_write(&alice, 0o6775), 0o775);
        assert_eq!(after_write(&Caller::root(), 0o6775), 0o6775);
    }
}
