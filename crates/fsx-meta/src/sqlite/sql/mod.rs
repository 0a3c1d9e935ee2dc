//! SQLite's text of every statement of the shared logic
//! ([`crate::logic`]), by family. Parameters are `?N`; a list parameter
//! is a `rarray(?N)` table; flags are 0/1 integers.

crate::logic::dialect_sql!();
