//! PostgreSQL's text of every statement of the shared logic
//! ([`crate::logic`]), by family. Parameters are `$N`; a list parameter
//! is an array (`= ANY($N)`); flags are 0/1 `BIGINT`s. Statements that
//! check before they act take row locks here (`FOR UPDATE`), where the
//! logic's [`crate::logic::Lock`]s do not already serialise them.

use crate::logic::Stmt;

mod branch;
mod extent;
mod file;
mod hot;
mod layer;
mod setting;
mod tier;

/// The SQL of `stmt`.
pub(super) fn text(stmt: Stmt) -> &'static str {
    match stmt {
        Stmt::Layer(q) => layer::text(q),
        Stmt::File(q) => file::text(q),
        Stmt::Extent(q) => extent::text(q),
        Stmt::Tier(q) => tier::text(q),
        Stmt::Setting(q) => setting::text(q),
        Stmt::Branch(q) => branch::text(q),
        Stmt::Hot(q) => hot::text(q),
    }
}
