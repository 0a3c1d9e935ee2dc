//! The `files` family's statements.

use crate::logic::files::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {}
}
