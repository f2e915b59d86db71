//! Bounded waits for the unit's status bits.

use super::error::{Operation, UnitError};
use crate::mmio::Mmio;

/// How many times a status register is read before an operation gives up
/// with [`UnitError::Timeout`]. Hardware completes register commands within
/// microseconds; the budget only bounds a wait on a unit that never answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PollBudget(u32);

impl PollBudget {
    /// The default: 2^20 reads, well over a millisecond of MMIO reads.
    pub const DEFAULT: Self = Self(1 << 20);

    /// A budget of `reads` status reads (at least one).
    pub const fn new(reads: u32) -> Self {
        Self(if reads == 0 { 1 } else { reads })
    }
    /// The number of status reads allowed per wait.
    pub const fn reads(self) -> u32 {
        self.0
    }

    /// Reads through `done` until it returns `Some`, at most `reads` times.
    pub(crate) fn wait<M: Mmio, T>(
        self,
        mmio: &M,
        what: Operation,
        mut done: impl FnMut(&M) -> Option<T>,
    ) -> Result<T, UnitError> {
        for _ in 0..self.0 {
            if let Some(v) = done(mmio) {
                return Ok(v);
            }
            core::hint::spin_loop();
        }
        Err(UnitError::Timeout { what })
    }
}

impl Default for PollBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}
