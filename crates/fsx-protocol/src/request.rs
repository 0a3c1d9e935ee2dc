//! What a server parses out of a request besides its route and its JSON
//! body: the query string and a `Range` header. Both servers (`fsx serve`
//! and the later Workers build) call these, and the fuzz target
//! `fuzz/fuzz_targets/request.rs` drives them with arbitrary input.
//!
//! # Invariants
//!
//! - **Total.** Every input gives a value or an error, never a panic, for
//!   any query string, header value and object size.
//! - **A range is inside its object.** [`parse_range`] answers
//!   `start < end <= size` or refuses (416): a handler can slice with it
//!   without checking again.
//! - **Queries are strict.** The query types refuse unknown fields, so a
//!   misspelt parameter is a 400, as in JSON bodies.

use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// The query string of a request (without its `?`; `None` when the URL
/// has none) as `T`, one of the query types of [`crate::types`]; a 400
/// `bad_request` naming the problem otherwise.
pub fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("bad query string: {e}")))
}

/// The byte range `[start, end)` a `Range` header value asks for, within
/// an object of `size` bytes. One range only: `bytes=START-END`
/// (inclusive end, cut to the object), `bytes=START-` or `bytes=-N` (the
/// last `N` bytes). Anything else, or a range that selects no byte of the
/// object, is a 416 `range_not_satisfiable`.
pub fn parse_range(value: &str, size: u64) -> Result<(u64, u64), ApiError> {
    let unsatisfiable = || {
        ApiError::new(
            ErrorCode::RangeNotSatisfiable,
            format!(
                "the range is not within the {size} bytes (one range of bytes=START-END, bytes=START- or bytes=-N)"
            ),
        )
    };
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .filter(|s| !s.contains(','))
        .ok_or_else(unsatisfiable)?;
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| unsatisfiable());
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, true) => (num(a)?, size),
        (false, false) => (num(a)?, num(b)?.saturating_add(1).min(size)),
        (true, false) => (size.saturating_sub(num(b)?), size),
        (true, true) => return Err(unsatisfiable()),
    };
    if start >= size || start >= end {
        return Err(unsatisfiable());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ListQuery, PathQuery};

    #[test]
    fn queries_parse_with_defaults_and_refuse_unknown_fields() {
        let q: Result<PathQuery, _> = parse_query(Some("path=%2Fa%20b"));
        assert!(q.is_ok_and(|q| q.path == "/a b" && q.branch == "main"));
        let q: Result<ListQuery, _> = parse_query(Some("path=/&limit=5&after=x"));
        assert!(q.is_ok_and(|q| q.limit == Some(5) && q.after.as_deref() == Some("x")));
        for bad in [None, Some("path=/&pth=/"), Some("path=/&limit=-1")] {
            let q: Result<ListQuery, _> = parse_query(bad);
            assert_eq!(q.map_err(|e| e.code), Err(ErrorCode::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn ranges_stay_inside_the_object() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 100)));
        assert_eq!(parse_range("bytes=-1000", 100), Ok((0, 100)));
        assert_eq!(parse_range("bytes=50-5000", 100), Ok((50, 100)));
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", u64::MAX),
            Ok((0, u64::MAX))
        );
        for bad in [
            "",
            "bytes=",
            "bytes=-",
            "bytes=100-",
            "bytes=5-4",
            "bytes=-0",
            "bytes=0-1,2-3",
            "items=0-1",
            "bytes=x-1",
        ] {
            assert!(parse_range(bad, 100).is_err(), "{bad:?}");
        }
        assert!(
            parse_range("bytes=0-", 0).is_err(),
            "an empty object has no range"
        );
    }
}
