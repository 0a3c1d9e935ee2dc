//! The `extents` family's statements.

use crate::logic::extents::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {}
}
