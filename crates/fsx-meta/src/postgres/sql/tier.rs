//! The `tiers` family's statements.

use crate::logic::tiers::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {}
}
