//! The knobs a volume stores in its settings: extents in flight,
//! readahead, the extent cache's size, the capacity a file system
//! reports, and how many changes the change feed keeps.
//!
//! They live in the metadata (`MetaSettings::setting`), so every process
//! that opens the volume uses them; a value stored there overrides the
//! [`VolumeOptions`] the opener passed, whose defaults apply otherwise.
//! Each value is checked when set and again when read: a stored value out
//! of range is `Corrupt`, never silently replaced by a default.

use fsx_meta::MetaEngine;

use crate::error::{Error, ErrorKind, Result};
use crate::volume::VolumeOptions;

/// One stored I/O knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoKnob {
    /// Its setting name.
    pub name: &'static str,
    /// What it does, for help and `fsx stats`.
    pub help: &'static str,
    field: Field,
    min: u64,
    max: u64,
}

/// Which [`VolumeOptions`] field a knob sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    InFlight,
    Readahead,
    Cache,
    Capacity,
    ChangesRetain,
}

/// Extents a sync uploads, or a read loads, at once.
pub const EXTENTS_IN_FLIGHT: IoKnob = IoKnob {
    name: "io.extents_in_flight",
    field: Field::InFlight,
    help: "extents a sync uploads, or a read loads, at once",
    min: 1,
    max: 64,
};

/// Extents a sequential read loads ahead.
pub const READAHEAD_EXTENTS: IoKnob = IoKnob {
    name: "io.readahead_extents",
    field: Field::Readahead,
    help: "extents a sequential read loads ahead (0: off)",
    min: 0,
    max: 256,
};

/// Bytes of verified extents cached in memory per volume and process.
pub const CACHE_BYTES: IoKnob = IoKnob {
    name: "io.cache_bytes",
    field: Field::Cache,
    help: "bytes of verified extents cached in memory, per volume and process",
    min: 0,
    max: 1 << 40,
};

/// The capacity a file system over the volume reports (`statfs`).
pub const CAPACITY_BYTES: IoKnob = IoKnob {
    name: "fs.capacity_bytes",
    field: Field::Capacity,
    help: "bytes a mounted file system reports as its size (statfs)",
    min: 1 << 20,
    max: 1 << 62,
};

/// Changes the change feed keeps.
pub const CHANGES_RETAIN: IoKnob = IoKnob {
    name: "changes.retain",
    field: Field::ChangesRetain,
    help: "changes the change feed keeps; older ones are pruned (fsx gc, mount, serve)",
    min: 1,
    max: 1 << 40,
};

/// Every stored knob.
pub const IO_KNOBS: [IoKnob; 5] = [
    EXTENTS_IN_FLIGHT,
    READAHEAD_EXTENTS,
    CACHE_BYTES,
    CAPACITY_BYTES,
    CHANGES_RETAIN,
];

impl IoKnob {
    /// The knob named `name`, if there is one.
    pub fn named(name: &str) -> Option<IoKnob> {
        IO_KNOBS.into_iter().find(|k| k.name == name)
    }

    /// Parses and range-checks a value for this knob.
    pub fn parse(&self, value: &str) -> Result<u64> {
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|v| (self.min..=self.max).contains(v))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} takes a whole number from {} to {}, not {value:?}",
                    self.name, self.min, self.max
                ))
            })
    }

    /// This knob's value in `options`.
    pub fn get(&self, options: &VolumeOptions) -> u64 {
        match self.field {
            Field::InFlight => options.extents_in_flight as u64,
            Field::Readahead => options.readahead_extents as u64,
            Field::Cache => options.cache_bytes,
            Field::Capacity => options.capacity_bytes,
            Field::ChangesRetain => options.changes_retain,
        }
    }

    fn set(&self, options: &mut VolumeOptions, v: u64) {
        // Values are range-checked to well under `usize::MAX` on 32 bits.
        let n = usize::try_from(v).unwrap_or(usize::MAX);
        match self.field {
            Field::InFlight => options.extents_in_flight = n,
            Field::Readahead => options.readahead_extents = n,
            Field::Cache => options.cache_bytes = v,
            Field::Capacity => options.capacity_bytes = v,
            Field::ChangesRetain => options.changes_retain = v,
        }
    }
}

/// `options` with the volume's stored knobs applied.
pub(crate) async fn apply(
    meta: &dyn MetaEngine,
    mut options: VolumeOptions,
) -> Result<VolumeOptions> {
    for knob in IO_KNOBS {
        if let Some(v) = meta.setting(knob.name).await? {
            let parsed = knob.parse(&v).map_err(|e| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("volume setting {e}; set it again with `fsx config`"),
                )
            })?;
            knob.set(&mut options, parsed);
        }
    }
    Ok(options)
}

/// Stores `value` for the knob `name` after checking both; it applies to
/// volumes opened from then on.
pub async fn set_io_knob(meta: &dyn MetaEngine, name: &str, value: &str) -> Result<()> {
    let knob = IoKnob::named(name).ok_or_else(|| {
        let names: Vec<&str> = IO_KNOBS.iter().map(|k| k.name).collect();
        Error::invalid(format!(
            "{name:?} is not a volume setting; the settings are {}",
            names.join(", ")
        ))
    })?;
    let v = knob.parse(value)?;
    meta.set_setting(knob.name, &v.to_string()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_out_of_range_are_refused() {
        assert!(EXTENTS_IN_FLIGHT.parse("0").is_err());
        assert!(EXTENTS_IN_FLIGHT.parse("65").is_err());
        assert!(EXTENTS_IN_FLIGHT.parse("-1").is_err());
        assert!(EXTENTS_IN_FLIGHT.parse("four").is_err());
        assert_eq!(EXTENTS_IN_FLIGHT.parse(" 8 ").unwrap(), 8);
        assert_eq!(READAHEAD_EXTENTS.parse("0").unwrap(), 0);
        assert!(CACHE_BYTES.parse(&((1u64 << 40) + 1).to_string()).is_err());
    }

    #[test]
    fn every_knob_reads_back_what_it_sets() {
        let mut o = VolumeOptions::default();
        for (i, k) in IO_KNOBS.iter().enumerate() {
            k.set(&mut o, 7 + i as u64);
        }
        for (i, k) in IO_KNOBS.iter().enumerate() {
            assert_eq!(k.get(&o), 7 + i as u64, "{}", k.name);
        }
    }
}
