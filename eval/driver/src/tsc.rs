//! Time from the time-stamp counter: RDTSC for the driver's timing, and
//! `iommu_platform`'s [`TscClock`] for the flush and teardown deadlines.

pub use iommu_platform::TscClock;
pub use iommu_platform::clock::rdtsc;

/// Busy-waits `cycles` TSC cycles (the per-buffer protocol work the model
/// charges, see [`crate::Params::work_cycles`]).
pub fn spin_cycles(cycles: u64) {
    let until = rdtsc().wrapping_add(cycles);
    while (until.wrapping_sub(rdtsc()) as i64) > 0 {
        core::hint::spin_loop();
    }
}

/// The shipped TSC clock for a TSC ticking at `khz` kHz (1 GHz if `khz`
/// is 0: the VMM could not tell).
#[must_use]
pub fn clock(khz: u64) -> TscClock {
    let one_ghz = const {
        match TscClock::from_hz(1_000_000_000) {
            Some(c) => c,
            None => panic!("1 GHz is a frequency"),
        }
    };
    TscClock::from_hz(khz.saturating_mul(1000)).unwrap_or(one_ghz)
}
