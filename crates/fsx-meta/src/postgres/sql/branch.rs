//! The `branches` family's statements.

use crate::logic::branches::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {}
}
