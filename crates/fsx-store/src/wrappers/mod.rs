//! Wrappers: backends over another `Arc<dyn ExtentBackend>` that add one
//! concern each — retry, fault injection, metering — and compose in any
//! order.
//!
//! Rule for every wrapper: implement every method of
//! [`ExtentBackend`](crate::ExtentBackend) explicitly (no defaults that could
//! silently bypass the wrapper), forward capabilities unchanged unless the
//! wrapper changes them, and say what it adds in `Display`
//! (`retrying(5 attempts) over s3://bucket/prefix`).

use std::fmt;

mod fault;
mod metered;
mod retrying;

pub use fault::{FaultInjecting, FaultStats, OpFaults};
pub use metered::{MeterSnapshot, Metered, OpStats};
pub use retrying::{RetryPolicy, Retrying};

/// The operations of the contract, for per-operation configuration and
/// statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `get`
    Get,
    /// `get_range`
    GetRange,
    /// `put`
    Put,
    /// `delete`
    Delete,
    /// `head`
    Head,
    /// `list`
    List,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 6] = [
        Operation::Get,
        Operation::GetRange,
        Operation::Put,
        Operation::Delete,
        Operation::Head,
        Operation::List,
    ];

    /// Stable lower-case name, as used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::GetRange => "get_range",
            Operation::Put => "put",
            Operation::Delete => "delete",
            Operation::Head => "head",
            Operation::List => "list",
        }
    }

    /// Whether the operation changes stored state.
    pub fn is_write(self) -> bool {
        matches!(self, Operation::Put | Operation::Delete)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
