//! Time for deadlines: the plug-in point an OS fills with its monotonic
//! clock, and the clocks shipped here: [`TscClock`] (x86-64, no_std) and
//! `StdClock` (with the `std` feature).
//!
//! A deadline needs a clock that tells time. [`NoClock`] never advances, so
//! it says so ([`Clock::TELLS_TIME`] is `false`), and the flush policies and
//! mapping layers built on it refuse a deadline or time limit with a typed
//! configuration error rather than silently never firing it.

use core::time::Duration;

/// A point in time, in nanoseconds since an arbitrary epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// The time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A monotonic clock.
pub trait Clock {
    /// Whether [`now`](Self::now) advances. `false` only for clocks that
    /// cannot tell time ([`NoClock`]): a deadline measured with one would
    /// never pass.
    const TELLS_TIME: bool = true;

    /// The current time; never goes backwards.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for &C {
    const TELLS_TIME: bool = C::TELLS_TIME;
    #[inline]
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// A clock that never advances, for policies without deadlines (strict
/// invalidation, a vIOMMU's explicitly flushed batches). It cannot tell
/// time: configuring a deadline with it is an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClock;

impl Clock for NoClock {
    const TELLS_TIME: bool = false;
    #[inline]
    fn now(&self) -> Instant {
        Instant(0)
    }
}

/// Time from the x86-64 time-stamp counter: one `RDTSC` per reading, no
/// system call, usable in a kernel or unikernel. The counter must be
/// invariant (CPUID.80000007H:EDX bit 8, every x86-64 CPU of the last decade):
/// it then ticks at a constant rate, which the clock is given or reads from
/// CPUID.
///
/// ```
/// use iommu_platform::{Clock, TscClock};
///
/// let clock = TscClock::from_hz(2_400_000_000).expect("a non-zero frequency");
/// let (a, b) = (clock.now(), clock.now());
/// assert!(b >= a);
/// // On hardware that reports its TSC frequency (Intel since Skylake):
/// let _maybe = TscClock::from_cpuid();
/// ```
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscClock {
    /// Nanoseconds per tick, 32.32 fixed point.
    ns_per_tick: u64,
    /// The frequency it was made for.
    hz: u64,
}

#[cfg(target_arch = "x86_64")]
impl TscClock {
    /// A clock for a TSC ticking at `hz`; `None` for 0 Hz.
    pub const fn from_hz(hz: u64) -> Option<Self> {
        if hz == 0 {
            return None;
        }
        let ns_per_tick = (1_000_000_000u128 << 32) / hz as u128;
        // At least 1 Hz, so ns_per_tick < 2^62 and fits.
        Some(Self { ns_per_tick: ns_per_tick as u64, hz })
    }

    /// A clock at the TSC frequency CPUID reports: leaf 15H (TSC / crystal
    /// ratio and crystal frequency, Intel SDM vol. 2A "CPUID"), else leaf
    /// 16H (the processor base frequency), else the hypervisor's leaf
    /// 4000_0010H (TSC frequency in kHz, VMware's and some KVM's). `None`
    /// when none of them answers: pass the frequency to
    /// [`from_hz`](Self::from_hz) then (from firmware, or calibrated
    /// against the HPET or PIT).
    pub fn from_cpuid() -> Option<Self> {
        let max = cpuid(0).0;
        if max >= 0x15 {
            let (denominator, numerator, crystal_hz, _) = cpuid(0x15);
            if denominator != 0 && numerator != 0 && crystal_hz != 0 {
                let hz = u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator);
                return Self::from_hz(hz);
            }
        }
        if max >= 0x16 {
            let base_mhz = cpuid(0x16).0 & 0xffff;
            if base_mhz != 0 {
                return Self::from_hz(u64::from(base_mhz) * 1_000_000);
            }
        }
        if cpuid(1).2 & (1 << 31) != 0 && cpuid(0x4000_0000).0 >= 0x4000_0010 {
            let khz = cpuid(0x4000_0010).0;
            return Self::from_hz(u64::from(khz) * 1000);
        }
        None
    }

    /// A clock calibrated against the operating system's monotonic clock
    /// over `over` (20 ms gives about 5 significant digits).
    #[cfg(feature = "std")]
    pub fn calibrate(over: Duration) -> Option<Self> {
        let (t0, w0) = (rdtsc(), std::time::Instant::now());
        while w0.elapsed() < over {
            core::hint::spin_loop();
        }
        let (ticks, ns) = (rdtsc().wrapping_sub(t0), w0.elapsed().as_nanos());
        let hz = u128::from(ticks) * 1_000_000_000 / ns.max(1);
        Self::from_hz(u64::try_from(hz).ok()?)
    }

    /// The TSC frequency in Hz the clock converts with.
    pub const fn hz(&self) -> u64 {
        self.hz
    }

    /// The nanoseconds `ticks` TSC ticks last.
    #[inline]
    pub const fn ticks_to_nanos(&self, ticks: u64) -> u64 {
        ((ticks as u128 * self.ns_per_tick as u128) >> 32) as u64
    }
}

#[cfg(target_arch = "x86_64")]
impl Clock for TscClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant(self.ticks_to_nanos(rdtsc()))
    }
}

/// Reads the time-stamp counter.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn rdtsc() -> u64 {
    #[allow(unsafe_code, unused_unsafe)] // reason: the intrinsic is unsafe on older compilers
    // SAFETY: RDTSC reads a counter; it has no memory effects, and every
    // x86-64 processor implements it.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// CPUID `leaf` (subleaf 0): EAX, EBX, ECX, EDX.
#[cfg(target_arch = "x86_64")]
fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    #[allow(unsafe_code, unused_unsafe)] // reason: the intrinsic is unsafe on older compilers
    // SAFETY: CPUID only reads processor information; every x86-64
    // processor implements it, and leaves beyond the maximum return
    // defined (if meaningless) values that the callers check.
    let r = unsafe { core::arch::x86_64::__cpuid(leaf) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Time from the operating system's monotonic clock
/// (`std::time::Instant`), for hosted programs and tests.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    epoch: std::time::Instant,
}

#[cfg(feature = "std")]
impl StdClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self { epoch: std::time::Instant::now() }
    }
}

#[cfg(feature = "std")]
impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for StdClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_clock_cannot_tell_time_and_forwarding_keeps_it() {
        const { assert!(!NoClock::TELLS_TIME && !<&NoClock as Clock>::TELLS_TIME) };
        assert_eq!(NoClock.now(), Instant(0));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tsc_conversion() {
        assert_eq!(TscClock::from_hz(0), None);
        let c = TscClock::from_hz(1_000_000_000).unwrap();
        assert_eq!(c.ticks_to_nanos(1_000_000), 1_000_000);
        let c = TscClock::from_hz(2_500_000_000).unwrap();
        assert_eq!(c.ticks_to_nanos(2_500_000_000), 1_000_000_000 - 1, "rounds down");
        assert_eq!(c.hz(), 2_500_000_000);
        let c = TscClock::from_hz(1).unwrap();
        assert_eq!(c.ticks_to_nanos(3), 3_000_000_000);
        assert!(c.now() >= Instant(0) && TscClock::TELLS_TIME);
    }

    #[cfg(feature = "std")]
    #[test]
    fn std_clocks_advance() {
        let c = StdClock::new();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.now().saturating_since(a) >= Duration::from_millis(2));
        let tsc = TscClock::calibrate(Duration::from_millis(5)).unwrap();
        let t = tsc.now();
        std::thread::sleep(Duration::from_millis(10));
        let elapsed = tsc.now().saturating_since(t);
        assert!(elapsed >= Duration::from_millis(8), "{elapsed:?}");
    }
}
