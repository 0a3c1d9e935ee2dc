//! SQLite's five file lock levels between the connections of one process.
//!
//! Another process never shares an fsx file with this one: the first
//! connection of a process takes the file's write lease and keeps it until
//! the last one closes (see [`crate::vfs`]). So the lock levels only need to
//! order connections inside the process, and a [`LockTable`] per file does
//! that, following the rules of SQLite's `os_unix.c`:
//!
//! | level | may be taken when |
//! |---|---|
//! | SHARED | nobody holds PENDING or EXCLUSIVE |
//! | RESERVED | nobody else holds RESERVED, PENDING or EXCLUSIVE |
//! | PENDING | nobody else holds RESERVED, PENDING or EXCLUSIVE; blocks new SHARED |
//! | EXCLUSIVE | PENDING is ours and no other connection holds SHARED |
//!
//! A refused EXCLUSIVE leaves the caller at PENDING, so readers drain and
//! the writer's retry succeeds (SQLite's busy handler calls again).

use crate::abi::LockLevel;

/// Lock state of one file among the connections of this process.
#[derive(Debug, Default)]
pub(crate) struct LockTable {
    /// Connections at SHARED or above.
    shared: u32,
    reserved: Option<u64>,
    pending: Option<u64>,
    exclusive: Option<u64>,
}

impl LockTable {
    fn other_writer(&self, id: u64) -> bool {
        [self.reserved, self.pending, self.exclusive]
            .iter()
            .any(|h| h.is_some_and(|h| h != id))
    }

    /// Raises connection `id` from `cur` towards `want`. `Ok(level)` when
    /// granted; `Err(level)` when busy, with the level the connection now
    /// holds (PENDING after a refused EXCLUSIVE).
    pub(crate) fn lock(
        &mut self,
        id: u64,
        cur: LockLevel,
        want: LockLevel,
    ) -> Result<LockLevel, LockLevel> {
        if cur >= want {
            return Ok(cur);
        }
        match want {
            LockLevel::Unlocked => Ok(cur),
            LockLevel::Shared => {
                if self.pending.is_some() || self.exclusive.is_some() {
                    return Err(cur);
                }
                self.shared += 1;
                Ok(LockLevel::Shared)
            }
            LockLevel::Reserved => {
                if cur < LockLevel::Shared || self.other_writer(id) {
                    return Err(cur);
                }
                self.reserved = Some(id);
                Ok(LockLevel::Reserved)
            }
            LockLevel::Pending | LockLevel::Exclusive => {
                if cur < LockLevel::Shared {
                    return Err(cur);
                }
                if cur < LockLevel::Pending {
                    if self.other_writer(id) {
                        return Err(cur);
                    }
                    self.pending = Some(id);
                }
                if want == LockLevel::Pending {
                    return Ok(LockLevel::Pending);
                }
                if self.shared > 1 {
                    return Err(LockLevel::Pending);
                }
                self.pending = None;
                self.exclusive = Some(id);
                Ok(LockLevel::Exclusive)
            }
        }
    }

    /// Lowers connection `id` from `cur` to `want` (SHARED or NONE).
    pub(crate) fn unlock(&mut self, id: u64, cur: LockLevel, want: LockLevel) -> LockLevel {
        if cur <= want {
            return cur;
        }
        if want <= LockLevel::Shared {
            for slot in [&mut self.reserved, &mut self.pending, &mut self.exclusive] {
                if *slot == Some(id) {
                    *slot = None;
                }
            }
        }
        if want == LockLevel::Unlocked && cur >= LockLevel::Shared {
            self.shared = self.shared.saturating_sub(1);
        }
        want
    }

    /// Whether any connection holds RESERVED or above (`xCheckReservedLock`).
    pub(crate) fn reserved(&self) -> bool {
        self.reserved.is_some() || self.pending.is_some() || self.exclusive.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockLevel::*;

    #[test]
    fn readers_share_and_one_writer_reserves() {
        let mut t = LockTable::default();
        assert_eq!(t.lock(1, Unlocked, Shared), Ok(Shared));
        assert_eq!(t.lock(2, Unlocked, Shared), Ok(Shared));
        assert_eq!(t.lock(1, Shared, Reserved), Ok(Reserved));
        assert!(t.reserved());
        assert_eq!(t.lock(2, Shared, Reserved), Err(Shared));
        // The writer waits at PENDING for the reader to leave...
        assert_eq!(t.lock(1, Reserved, Exclusive), Err(Pending));
        // ...and no new reader may come in meanwhile.
        assert_eq!(t.lock(3, Unlocked, Shared), Err(Unlocked));
        assert_eq!(t.unlock(2, Shared, Unlocked), Unlocked);
        assert_eq!(t.lock(1, Pending, Exclusive), Ok(Exclusive));
        assert_eq!(t.lock(2, Unlocked, Shared), Err(Unlocked));
        assert_eq!(t.unlock(1, Exclusive, Shared), Shared);
        assert!(!t.reserved());
        assert_eq!(t.lock(2, Unlocked, Shared), Ok(Shared));
        assert_eq!(t.unlock(1, Shared, Unlocked), Unlocked);
        assert_eq!(t.unlock(2, Shared, Unlocked), Unlocked);
        assert_eq!(t.lock(3, Unlocked, Shared), Ok(Shared));
        assert_eq!(t.lock(3, Shared, Exclusive), Ok(Exclusive));
    }

    #[test]
    fn exclusive_needs_a_shared_lock_first() {
        let mut t = LockTable::default();
        assert_eq!(t.lock(1, Unlocked, Exclusive), Err(Unlocked));
        assert_eq!(t.lock(1, Unlocked, Reserved), Err(Unlocked));
    }
}
