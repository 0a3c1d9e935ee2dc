//! Checked conversions between the contract's unsigned numbers (`u64`,
//! `usize`, `u32`) and SQL's signed 64-bit integer, shared by every engine.
//!
//! Both SQLite and PostgreSQL store integers as `i64`. A bare `as` cast would
//! wrap `u64` values above [`i64::MAX`] into negative numbers that sort,
//! compare and sum wrongly; the helpers here make the two engines agree:
//!
//! - a number **going in** that does not fit is [`MetaErrorKind::InvalidInput`]
//!   naming the quantity (`page number 18446744073709551615 is out of range:
//!   at most 9223372036854775807`), before any row is touched;
//! - a number **coming out** that does not fit the contract's type (a negative
//!   size, a page size above `u32::MAX`) is [`MetaErrorKind::Corrupt`] naming
//!   the column: the database holds what no engine writes;
//! - the bounds of a range query and a `LIMIT` are clamped instead, because
//!   nothing stored exceeds `i64::MAX` and so "up to `u64::MAX`" means "all".
//!
//! Invariant: every value an engine stores through these helpers is in
//! `0..=i64::MAX`, so every value read back converts unless the database was
//! changed behind fsx's back.

use crate::error::{MetaError, MetaErrorKind, Result};

/// The largest number a SQL integer column holds, as the contract's type.
// `i64::MAX` is positive, so this cast is exact.
pub const SQL_MAX: u64 = i64::MAX as u64;

/// A contract number (a size, offset, page number, index or count) as a SQL
/// integer; `InvalidInput` naming `what` when it exceeds [`SQL_MAX`].
pub fn to_sql(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| MetaError::invalid(format!("{what} {v} is out of range: at most {SQL_MAX}")))
}

/// A length or count held as `usize` as a SQL integer; `InvalidInput`
/// naming `what` when it exceeds [`SQL_MAX`].
pub fn len_to_sql(v: usize, what: &str) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| MetaError::invalid(format!("{what} {v} is out of range: at most {SQL_MAX}")))
}

/// An in-memory length or index (of a `Vec`, a slice, a batch) as a SQL
/// integer. Exact: Rust caps every allocation at `isize::MAX` bytes, which is
/// at most [`SQL_MAX`]; saturates rather than wraps regardless.
pub fn len(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The bound of a range query, clamped to [`SQL_MAX`]: nothing stored is
/// larger, so a larger bound selects the same rows.
pub fn bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A row limit, clamped to [`SQL_MAX`]: no table holds more rows.
pub fn limit(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One more than a row limit (to learn whether more rows follow), clamped.
pub fn limit_plus_one(v: usize) -> i64 {
    limit(v).saturating_add(1)
}

/// A count of items in memory as the contract's `u64`. Exact on every
/// target fsx builds for (`usize` is at most 64 bits); saturates otherwise.
pub fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A `u32` (an extent or page size) widened to `usize` for a length
/// comparison; exact where `usize` has 32 bits or more, saturating below.
pub fn u32_len(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A contract number as an in-memory length or index; `InvalidInput`
/// naming `what` when this target's `usize` cannot hold it (32-bit targets).
pub fn to_usize(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| {
        MetaError::invalid(format!(
            "{what} {v} is out of range: at most {} on this platform",
            usize::MAX
        ))
    })
}

/// A SQL integer read from `column` as the contract's `u64`; `Corrupt`
/// naming the column when it is negative.
pub fn from_sql(v: i64, column: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt_value(v, column, "negative"))
}

/// A SQL integer read from `column` as a `u32`; `Corrupt` naming the column
/// when it is negative or above `u32::MAX`.
pub fn u32_from_sql(v: i64, column: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt_value(v, column, "not a 32-bit unsigned number"))
}

/// A SQL integer read from `column` as a `usize`; `Corrupt` naming the
/// column when it is negative or too large for this target.
pub fn usize_from_sql(v: i64, column: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| corrupt_value(v, column, "out of range"))
}

fn corrupt_value(v: i64, column: &str, why: &str) -> MetaError {
    MetaError::new(
        MetaErrorKind::Corrupt,
        format!("stored {column} {v} is {why}: the metadata is damaged (run `fsx fsck`)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn going_in_too_large_is_invalid_input_naming_the_quantity() {
        let e = to_sql(u64::MAX, "page number").unwrap_err();
        assert_eq!(e.kind(), MetaErrorKind::InvalidInput);
        assert_eq!(
            e.message(),
            "page number 18446744073709551615 is out of range: at most 9223372036854775807"
        );
        let e = to_sql(SQL_MAX + 1, "file size").unwrap_err();
        assert_eq!(e.kind(), MetaErrorKind::InvalidInput);
        assert!(e.message().starts_with("file size 9223372036854775808 "));
        assert_eq!(to_sql(SQL_MAX, "file size").ok(), Some(i64::MAX));
        assert_eq!(to_sql(0, "file size").ok(), Some(0));
        assert_eq!(len_to_sql(7, "rows").ok(), Some(7));
    }

    #[test]
    fn coming_out_of_range_is_corrupt_naming_the_column() {
        let e = from_sql(-1, "file size").unwrap_err();
        assert_eq!(e.kind(), MetaErrorKind::Corrupt);
        assert!(
            e.message().starts_with("stored file size -1 is negative"),
            "{e}"
        );
        assert_eq!(from_sql(i64::MAX, "x").ok(), Some(SQL_MAX));
        let e = u32_from_sql(i64::from(u32::MAX) + 1, "page_size").unwrap_err();
        assert_eq!(e.kind(), MetaErrorKind::Corrupt);
        assert_eq!(u32_from_sql(4096, "page_size").ok(), Some(4096));
        assert!(usize_from_sql(-3, "n").is_err());
    }

    #[test]
    fn bounds_and_limits_clamp() {
        assert_eq!(bound(u64::MAX), i64::MAX);
        assert_eq!(bound(5), 5);
        assert_eq!(limit(usize::MAX), i64::MAX);
        assert_eq!(limit_plus_one(usize::MAX), i64::MAX);
        assert_eq!(limit_plus_one(9), 10);
        assert_eq!(count(3), 3);
        assert_eq!(len(3), 3);
        assert_eq!(u32_len(4096), 4096);
        assert_eq!(to_usize(8, "n").ok(), Some(8));
    }
}
