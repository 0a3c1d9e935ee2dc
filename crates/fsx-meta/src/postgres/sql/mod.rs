//! PostgreSQL's text of every statement of the shared logic
//! ([`crate::logic`]), by family. Parameters are `$N`; a list parameter
//! is an array (`= ANY($N)`); flags are 0/1 `BIGINT`s. Statements that
//! check before they act take row locks here (`FOR UPDATE`), where the
//! logic's [`crate::logic::Lock`]s do not already serialise them.

crate::logic::dialect_sql!();
