//! What the file tree accepts as an entry name, a symlink target and an
//! extended attribute, with the errno Linux gives for each refusal: the
//! checks the tree's transactions make before they store anything (issue
//! 14). Extended attributes are compared with the kernel's answers by
//! `tests/perm_kernel.rs`.
//!
//! - **Names** are 1–255 bytes, any byte but `/` and NUL; `.` and `..`
//!   name the directory and its parent and are never stored.
//! - **Symlink targets** are 1–4,096 bytes with no NUL.
//! - **Extended attributes**: names of 1–255 bytes in the `user.`,
//!   `trusted.` or `security.` namespace with something after the prefix;
//!   values up to 64 KiB. `user.` attributes live only on regular files and
//!   directories, and need read (get) or write (set) permission on them;
//!   `trusted.` ones are root's alone, and only root sets `security.` ones
//!   (with no security module to decide otherwise, as the kernel does). POSIX ACLs (`system.posix_acl_*`)
//!   are not accepted yet: they change the mode and need their own
//!   validation.

use crate::perm::{self, Caller, Owned};

/// Longest entry name, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest symlink target, in bytes (`PATH_MAX`).
pub const SYMLINK_MAX: usize = 4096;
/// Longest extended attribute name, in bytes (`XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value, in bytes (`XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;

/// Why a name, target or attribute is refused, as an errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `ENAMETOOLONG`.
    NameTooLong,
    /// `EINVAL`.
    Invalid,
    /// `ERANGE`: an attribute name too long or empty.
    Range,
    /// `E2BIG`: an attribute value too large.
    TooBig,
    /// `EOPNOTSUPP`: an attribute namespace the tree does not keep.
    Unsupported,
    /// `EPERM`.
    NotPermitted,
    /// `EACCES`.
    Access,
    /// `ENODATA`: reading an attribute the caller may not see reads as
    /// absent.
    NoData,
    /// `ENOENT`.
    NotFound,
    /// `EEXIST`.
    Exists,
    /// `ENOTEMPTY`.
    NotEmpty,
    /// `ENOTDIR`.
    NotDir,
    /// `EISDIR`.
    IsDir,
}

impl Refused {
    /// The errno.
    pub fn errno(self) -> i32 {
        match self {
            Refused::NameTooLong => 36,
            Refused::Invalid => 22,
            Refused::Range => 34,
            Refused::TooBig => 7,
            Refused::Unsupported => 95,
            Refused::NotPermitted => 1,
            Refused::Access => 13,
            Refused::NoData => 61,
            Refused::NotFound => 2,
            Refused::Exists => 17,
            Refused::NotEmpty => 39,
            Refused::NotDir => 20,
            Refused::IsDir => 21,
        }
    }
}

/// Checks an entry name to be stored in a directory.
pub fn check_name(name: &[u8]) -> Result<(), Refused> {
    if name.len() > NAME_MAX {
        return Err(Refused::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Refused::Invalid);
    }
    Ok(())
}

/// Checks a symlink's target.
pub fn check_symlink_target(target: &[u8]) -> Result<(), Refused> {
    if target.len() > SYMLINK_MAX {
        return Err(Refused::NameTooLong);
    }
    if target.is_empty() || target.contains(&0) {
        return Err(Refused::Invalid);
    }
    Ok(())
}

/// The access ACL's attribute name.
pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
/// The default ACL's attribute name (directories only).
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// Checks the value of a POSIX ACL attribute: the kernel's binary form,
/// a 4-byte header of version 2 then 8-byte entries.
pub fn check_acl_value(value: &[u8]) -> Result<(), Refused> {
    let ok = value.len() >= 4
        && (value.len() - 4).is_multiple_of(8)
        && u32::from_le_bytes([value[0], value[1], value[2], value[3]]) == 2;
    if ok { Ok(()) } else { Err(Refused::Invalid) }
}

/// What an extended attribute is being accessed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrOp {
    /// Read its value (or list it).
    Get,
    /// Create, replace or remove it.
    Set,
}

/// Checks that `caller` may `op` the extended attribute `name` of `node`
/// (`regular`: a regular file; directories are `node.dir`), and for a set
/// the size of `value`.
pub fn check_xattr(
    caller: &Caller,
    node: Owned,
    regular: bool,
    op: XattrOp,
    name: &[u8],
    value_len: usize,
) -> Result<(), Refused> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Refused::Range);
    }
    if op == XattrOp::Set && value_len > XATTR_SIZE_MAX {
        return Err(Refused::TooBig);
    }
    // POSIX ACLs are kept as the attributes they travel as (stored, not
    // enforced): only the owner or root sets one, and a default ACL
    // belongs to directories. No permission bits are read, as in the
    // kernel's `system.` handlers.
    if name == ACL_ACCESS || name == ACL_DEFAULT {
        if op == XattrOp::Set {
            if !caller.is_root() && caller.uid != node.uid {
                return Err(Refused::NotPermitted);
            }
            if name == ACL_DEFAULT && !node.dir {
                return Err(Refused::Access);
            }
        }
        return Ok(());
    }
    let suffix_of = |prefix: &[u8]| name.strip_prefix(prefix);
    let (ns, suffix) = if let Some(s) = suffix_of(b"user.") {
        (Some("user"), s)
    } else if let Some(s) = suffix_of(b"trusted.") {
        (Some("trusted"), s)
    } else if let Some(s) = suffix_of(b"security.") {
        (Some("security"), s)
    } else {
        (None, name)
    };
    let hidden = match op {
        XattrOp::Set => Refused::NotPermitted,
        XattrOp::Get => Refused::NoData,
    };
    let want = match op {
        XattrOp::Set => perm::W,
        XattrOp::Get => perm::R,
    };
    // In the kernel's order (learnt from `tests/perm_kernel.rs`): who may
    // touch the namespace, then the mode bits, then whether the namespace
    // exists, then the name itself.
    match ns {
        Some("trusted") if !caller.is_root() => return Err(hidden),
        Some("trusted") => {}
        Some("user") if !regular && !node.dir => return Err(hidden),
        // A sticky directory's user attributes are its owner's to change.
        Some("user")
            if op == XattrOp::Set
                && node.dir
                && node.mode & perm::S_ISVTX != 0
                && !caller.is_root()
                && caller.uid != node.uid =>
        {
            return Err(Refused::NotPermitted);
        }
        Some("security") if op == XattrOp::Set && !caller.is_root() => {
            return Err(Refused::NotPermitted);
        }
        _ if !perm::may(caller, node, want) => return Err(Refused::Access),
        _ => {}
    }
    match ns {
        None => Err(Refused::Unsupported),
        _ if suffix.is_empty() => Err(Refused::Invalid),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name(b"a"), Ok(()));
        assert_eq!(check_name(&[0xff, b'\n', b' ']), Ok(()));
        assert_eq!(check_name(&[b'x'; 255]), Ok(()));
        assert_eq!(check_name(&[b'x'; 256]), Err(Refused::NameTooLong));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert_eq!(check_name(bad), Err(Refused::Invalid), "{bad:?}");
        }
        assert_eq!(check_symlink_target(&[b'x'; 4096]), Ok(()));
        assert_eq!(
            check_symlink_target(&[b'x'; 4097]),
            Err(Refused::NameTooLong)
        );
        assert_eq!(check_symlink_target(b""), Err(Refused::Invalid));
    }

    #[test]
    fn attribute_limits() {
        let f = Owned {
            uid: 1,
            gid: 1,
            mode: 0o644,
            dir: false,
        };
        let root = Caller::root();
        let set = |name: &[u8], len| check_xattr(&root, f, true, XattrOp::Set, name, len);
        assert_eq!(set(b"user.a", 65536), Ok(()));
        assert_eq!(set(b"user.a", 65537), Err(Refused::TooBig));
        assert_eq!(set(b"user.", 1), Err(Refused::Invalid));
        assert_eq!(set(b"other.a", 1), Err(Refused::Unsupported));
        assert_eq!(set(&[b'u'; 256], 1), Err(Refused::Range));
        let alice = Caller::new(1000, 1000, &[]);
        assert_eq!(
            check_xattr(&alice, f, true, XattrOp::Set, b"trusted.a", 1),
            Err(Refused::NotPermitted)
        );
        assert_eq!(
            check_xattr(&alice, f, true, XattrOp::Set, b"user.a", 1),
            Err(Refused::Access)
        );
        assert_eq!(
            check_xattr(&alice, f, true, XattrOp::Get, b"user.a", 0),
            Ok(())
        );
        assert_eq!(
            check_xattr(&root, f, false, XattrOp::Set, b"user.a", 1),
            Err(Refused::NotPermitted),
            "user attributes live on files and directories only"
        );
    }
}
