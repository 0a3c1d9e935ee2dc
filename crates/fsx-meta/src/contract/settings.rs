//! Settings and counters: the volume's configuration, its free-form
//! settings and its persistent operation counters.

use fsx_store::BoxFuture;

use super::{Counter, VolumeConfig};
use crate::Result;

/// Settings and counters of a volume.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]).
///
/// - **Creation and opening.** [`MetaSettings::init_volume`] records the
///   configuration once (`AlreadyExists` after that);
///   [`MetaSettings::open_volume`] migrates an older schema, refuses a newer
///   one with `Unsupported`, and is `NotFound` on a database with no volume.
/// - **Reserved settings.** [`MetaSettings::set_setting`] refuses every
///   [`RESERVED_SETTINGS`](super::RESERVED_SETTINGS) name and the empty name
///   with `InvalidInput`: what is fixed at creation stays fixed.
/// - **Counters only add.** [`MetaSettings::add_counters`] sums its deltas
///   into the stored counters by tier and operation; nothing else changes
///   them.
pub trait MetaSettings {
    /// Creates the schema and records `config`; `AlreadyExists` if the
    /// database already holds a volume.
    fn init_volume<'a>(&'a self, config: &'a VolumeConfig) -> BoxFuture<'a, Result<()>>;

    /// Checks the schema version (migrating an older one, refusing a newer
    /// one with `Unsupported`) and returns the configuration; `NotFound` if
    /// the database holds no volume.
    fn open_volume(&self) -> BoxFuture<'_, Result<VolumeConfig>>;

    /// A volume setting, or `None` if never set.
    fn setting<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>>>;

    /// Sets a volume setting; `InvalidInput` for a
    /// [`RESERVED_SETTINGS`](super::RESERVED_SETTINGS) name.
    fn set_setting<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Adds `deltas` to the volume's persistent operation counters (summing
    /// by tier and operation).
    fn add_counters<'a>(&'a self, deltas: &'a [Counter]) -> BoxFuture<'a, Result<()>>;

    /// The volume's operation counters, sorted by tier and operation.
    fn counters(&self) -> BoxFuture<'_, Result<Vec<Counter>>>;
}
