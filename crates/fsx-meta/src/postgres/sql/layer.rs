//! The `layers` family's statements.

use crate::logic::layers::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {}
}
