//! Time from the time-stamp counter: RDTSC for the driver's timing, and a
//! [`Clock`] for the flush and teardown deadlines.

use invalidation::{Clock, Instant};

/// Reads the time-stamp counter.
#[inline]
#[must_use]
#[allow(unsafe_code)] // reason: the RDTSC intrinsic
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Busy-waits `cycles` TSC cycles (the per-buffer protocol work the model
/// charges, see [`crate::Params::work_cycles`]).
pub fn spin_cycles(cycles: u64) {
    let until = rdtsc().wrapping_add(cycles);
    while (until.wrapping_sub(rdtsc()) as i64) > 0 {
        core::hint::spin_loop();
    }
}

/// A monotonic clock in nanoseconds from the TSC at a known frequency.
#[derive(Clone, Copy, Debug)]
pub struct TscClock {
    /// Nanoseconds per tick, 32.32 fixed point.
    ns_per_tick: u64,
}

impl TscClock {
    /// A clock for a TSC ticking at `khz` kHz (1 GHz if `khz` is 0).
    #[must_use]
    pub const fn new(khz: u64) -> Self {
        let khz = if khz == 0 { 1_000_000 } else { khz };
        Self { ns_per_tick: ((1_000_000u128 << 32) / khz as u128) as u64 }
    }
}

impl Clock for TscClock {
    fn now(&self) -> Instant {
        Instant(((u128::from(rdtsc()) * u128::from(self.ns_per_tick)) >> 32) as u64)
    }
}
