//! `fsx-meta`: the metadata engine of fsx.
//!
//! The page store keeps everything but page data here: files, the map from
//! `(file, extent index)` to content keys, extent reference counts, the
//! durable dirty-page buffer, and writer leases. Every engine implements one
//! contract, [`MetaEngine`] (the sum of a few family traits; read each one's
//! "Contract" section), and passes one
//! conformance suite, [`conformance`].
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`checksum`] | checksums of dirty-page rows | — |
//! | [`contract`] | the [`MetaEngine`] trait, its family traits and their types | — |
//! | [`prelude`] | the family traits in one import | — |
//! | [`error`] | [`MetaError`], classified by caller action | — |
//! | [`conformance`] | the shared suite every engine's tests run | — |
//! | [`num`] | checked conversions between contract numbers and SQL integers | — |
//! | [`graph`] | retention planning over layers, branches and commits | — |
//! | [`perm`] | POSIX permission rules for the file tree (pure functions) | — |
//! | [`names`] | entry names, symlink targets and extended attributes the tree accepts | — |
//! | [`rename`] | what a rename does or which errno refuses it | — |
//! | [`remove`] | what `unlink` and `rmdir` refuse, and why | — |
//! | `resolve` | what a layer shows: the layered-row rules every engine applies | — |
//! | [`sqlite`] | the embedded engine: WAL, one writer, pooled readers | `sqlite` |
//! | [`open`] | [`open_meta`]: a URL (`sqlite://…`, `postgres://…`) to an engine | engines behind `sqlite`, `postgres` |
//! | [`hot`] | the hot tier: extents as rows split under a row-size limit | `sqlite` or `postgres` |
//! | [`postgres`] | the shared engine: several processes on one volume | `postgres` |

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod checksum;
pub mod conformance;
pub mod contract;
pub mod error;
pub mod graph;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod hot;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod logic;
pub mod names;
pub mod num;
pub mod open;
pub mod perm;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod remove;
pub mod rename;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) mod resolve;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use contract::{
    AccessStats, Attr, BranchId, BranchInfo, ByteLock, Change, ChangeKind, CommitId, CommitInfo,
    CommitRequest, CopyState, Counter, DEFAULT_CHANGES_KEPT, DirEntry, DirtyExtent, DirtyPage,
    DirtyPageCheck, DirtyPageCursor, DirtySummary, ExtentRecord, ExtentState, ExtentTotals,
    ExtentWrite, FileId, FileMeta, FileRename, Ino, JournalSnapshot, LayerGraph, LayerId,
    LayerInfo, LayerUsage, LeaseInfo, LeaseRequest, LockKind, MAIN_BRANCH, MAIN_BRANCH_NAME,
    MakeNode, MetaBranches, MetaChanges, MetaEngine, MetaExtents, MetaFiles, MetaSettings,
    MetaTiers, MetaTokens, MetaTree, NewLease, NodeKind, Orphan, PackCommit, PageWrite,
    RESERVED_SETTINGS, ReadMap, SetAttr, SetTime, TierCopy, TierMark, TierTotals, TokenInfo,
    TokenRecord, TreeNode, Unlinked, View, VolumeConfig, WriteBatch,
};
pub use error::{MetaError, MetaErrorKind, Result};
pub use open::{OpenOptions, open_meta};

/// One import for callers: `use fsx_meta::prelude::*;` brings the family
/// traits (whose methods a `dyn MetaEngine` needs in scope to be called)
/// and [`MetaEngine`] itself.
pub mod prelude {
    pub use crate::contract::{
        MetaBranches, MetaChanges, MetaEngine, MetaExtents, MetaFiles, MetaSettings, MetaTiers,
        MetaTokens,
    };
}

/// The metadata schema version this build writes. Volumes with an older
/// version are migrated on open; newer ones are refused.
pub const SCHEMA_VERSION: u32 = 9;

/// Smallest extent size a volume may be created with.
pub const MIN_EXTENT_SIZE: u32 = 256 << 10;
/// Largest extent size a volume may be created with.
pub const MAX_EXTENT_SIZE: u32 = 16 << 20;
/// Extent size of a volume created with defaults.
pub const DEFAULT_EXTENT_SIZE: u32 = 2 << 20;

/// What opening a volume whose schema is at `version` must do: `Ok(true)`
/// to migrate it first, `Ok(false)` when it is current; `NotFound` when the
/// database (named by `location`) holds no volume, `Unsupported` when the
/// volume is newer than this build. Shared by every engine so they refuse
/// and migrate alike.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn schema_verdict(version: u32, location: &dyn std::fmt::Display) -> Result<bool> {
    if version == 0 {
        return Err(MetaError::not_found(format!(
            "{location} holds no fsx volume (run `fsx init` first)"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(MetaError::new(
            MetaErrorKind::Unsupported,
            format!(
                "the volume's metadata format is version {version}, newer than this fsx supports \
                 ({SCHEMA_VERSION}); upgrade fsx to open it"
            ),
        ));
    }
    Ok(version < SCHEMA_VERSION)
}

/// Checks an extent size: a power of two from 256 KiB to 16 MiB.
pub fn check_extent_size(extent_size: u32) -> Result<()> {
    if extent_size.is_power_of_two() && (MIN_EXTENT_SIZE..=MAX_EXTENT_SIZE).contains(&extent_size) {
        Ok(())
    } else {
        Err(MetaError::invalid(format!(
            "extent size {extent_size} is not allowed: use a power of two from 256 KiB to 16 MiB (default 2 MiB)"
        )))
    }
}
