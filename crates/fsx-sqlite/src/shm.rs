//! The WAL index ("shared memory") of one database, for the connections of
//! this process.
//!
//! SQLite maps the WAL index in regions of 32 KiB and coordinates readers
//! and writers with eight lock slots (`xShmLock`). fsx keeps the regions in
//! process memory: only one process holds a database at a time (the write
//! lease), so nothing outside the process needs to see them. When the last
//! connection unmaps, the regions are freed; the next connection finds a
//! zeroed index and SQLite rebuilds it from the WAL file (recovery), which is
//! exactly what it does after a crash.
//!
//! Regions are boxed slices of atomics: their addresses never move while
//! mapped, and SQLite writes them from several threads through the raw
//! pointer, which interior mutability allows.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU8;

use crate::abi::ShmLockMode;

/// Lock slots SQLite uses (`SQLITE_SHM_NLOCK`).
const SLOTS: u32 = 8;

/// What one connection holds of the shared memory.
#[derive(Debug, Default)]
pub(crate) struct ShmHold {
    pub(crate) mapped: bool,
    shared: u8,
    exclusive: u8,
}

/// The WAL index of one database file.
#[derive(Debug, Default)]
pub(crate) struct Shm {
    regions: Vec<Box<[AtomicU8]>>,
    region_size: usize,
    shared: [u32; SLOTS as usize],
    exclusive: u8,
    mapped: usize,
}

/// An `xShmLock` request that conflicts with another connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Busy;

impl Shm {
    /// Region `idx`, allocated (zeroed) if `extend`; `Ok(None)` when it does
    /// not exist and should not be created.
    pub(crate) fn map(
        &mut self,
        hold: &mut ShmHold,
        idx: usize,
        size: usize,
        extend: bool,
    ) -> Result<Option<NonNull<u8>>, String> {
        if self.regions.is_empty() {
            self.region_size = size;
        } else if size != self.region_size {
            return Err(format!(
                "WAL index region size changed from {} to {size}",
                self.region_size
            ));
        }
        if !hold.mapped {
            hold.mapped = true;
            self.mapped += 1;
        }
        while self.regions.len() <= idx {
            if !extend {
                return Ok(None);
            }
            self.regions
                .push((0..size).map(|_| AtomicU8::new(0)).collect());
        }
        Ok(NonNull::new(self.regions[idx].as_ptr() as *mut u8))
    }

    /// Drops `hold`'s locks and mapping; the last unmapping frees the index.
    pub(crate) fn unmap(&mut self, hold: &mut ShmHold) {
        self.release(hold);
        if hold.mapped {
            hold.mapped = false;
            self.mapped -= 1;
            if self.mapped == 0 {
                self.regions.clear();
            }
        }
    }

    /// Releases every lock `hold` has.
    pub(crate) fn release(&mut self, hold: &mut ShmHold) {
        let _ = self.lock(hold, 0, SLOTS, ShmLockMode::UnlockShared);
        let _ = self.lock(hold, 0, SLOTS, ShmLockMode::UnlockExclusive);
    }

    /// `xShmLock` for slots `[offset, offset + n)`.
    pub(crate) fn lock(
        &mut self,
        hold: &mut ShmHold,
        offset: u32,
        n: u32,
        mode: ShmLockMode,
    ) -> Result<(), Busy> {
        if n == 0 || offset + n > SLOTS {
            return Err(Busy);
        }
        let mask = (((1u32 << n) - 1) << offset) as u8;
        let slots = offset as usize..(offset + n) as usize;
        match mode {
            ShmLockMode::LockShared => {
                if hold.shared & mask == mask {
                    return Ok(());
                }
                if self.exclusive & mask & !hold.exclusive != 0 {
                    return Err(Busy);
                }
                for i in slots {
                    if hold.shared & (1 << i) == 0 {
                        self.shared[i] += 1;
                    }
                }
                hold.shared |= mask;
            }
            ShmLockMode::LockExclusive => {
                if hold.exclusive & mask == mask {
                    return Ok(());
                }
                if self.exclusive & mask & !hold.exclusive != 0 {
                    return Err(Busy);
                }
                for i in slots {
                    let own = u32::from(hold.shared & (1 << i) != 0);
                    if self.shared[i] > own {
                        return Err(Busy);
                    }
                }
                self.exclusive |= mask;
                hold.exclusive |= mask;
            }
            ShmLockMode::UnlockShared => {
                for i in slots {
                    if hold.shared & (1 << i) != 0 {
                        self.shared[i] -= 1;
                    }
                }
                hold.shared &= !mask;
            }
            ShmLockMode::UnlockExclusive => {
                self.exclusive &= !(hold.exclusive & mask);
                hold.exclusive &= !mask;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn slots_are_shared_or_exclusive() {
        let mut shm = Shm::default();
        let (mut a, mut b) = (ShmHold::default(), ShmHold::default());
        shm.lock(&mut a, 3, 1, ShmLockMode::LockShared).unwrap();
        shm.lock(&mut b, 3, 1, ShmLockMode::LockShared).unwrap();
        assert_eq!(
            shm.lock(&mut a, 3, 1, ShmLockMode::LockExclusive),
            Err(Busy)
        );
        shm.lock(&mut b, 3, 1, ShmLockMode::UnlockShared).unwrap();
        shm.lock(&mut a, 3, 1, ShmLockMode::LockExclusive).unwrap();
        assert_eq!(shm.lock(&mut b, 3, 1, ShmLockMode::LockShared), Err(Busy));
        assert_eq!(
            shm.lock(&mut b, 0, 8, ShmLockMode::LockExclusive),
            Err(Busy)
        );
        shm.release(&mut a);
        shm.lock(&mut b, 0, 8, ShmLockMode::LockExclusive).unwrap();
    }

    #[test]
    fn regions_are_shared_and_freed_by_the_last_unmap() {
        let mut shm = Shm::default();
        let (mut a, mut b) = (ShmHold::default(), ShmHold::default());
        assert_eq!(shm.map(&mut a, 0, 32768, false).unwrap(), None);
        let pa = shm.map(&mut a, 1, 32768, true).unwrap().unwrap();
        let pb = shm.map(&mut b, 1, 32768, false).unwrap().unwrap();
        assert_eq!(pa, pb);
        shm.unmap(&mut a);
        assert!(shm.map(&mut b, 0, 32768, false).unwrap().is_some());
        shm.unmap(&mut b);
        assert_eq!(shm.map(&mut a, 0, 32768, false).unwrap(), None);
    }
}
