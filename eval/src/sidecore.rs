//! The sidecore front end: the guest's VT-d register page is a RAM page; a
//! VMM thread polls it and plays the unit's side of the register protocol
//! through the guest's vIOMMU. VT-d permits it (the seed, §3 of the
//! paper): commands are synchronous (write, then poll a status bit), no
//! register mixes read-only and writable fields, and memory-resident
//! structures are flushed by explicit commands.
//!
//! The polling is `viommu::sidecore`'s, the one the library's tests and
//! benchmarks use, in its [`Polling::All`] mode: no register access traps
//! here (the whole page is guest RAM, written with plain stores), so the
//! sidecore polls GCMD and the write-1-to-clear registers too (see the
//! library's docs for how). This module only times it.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use viommu::sidecore::{Layout, Polling, Registers, Sidecore};

use crate::host::rdtsc;
use crate::memory::GuestRam;

/// The unit as a sidecore drives it (`viommu::sidecore::Registers`, which
/// `viommu::Viommu` implements: reads without side effects and without
/// counting a register access, writes as the guest's).
#[derive(Debug)]
pub struct Polled<'r, U: ?Sized>(pub &'r U);

impl<U: ?Sized> Clone for Polled<'_, U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U: ?Sized> Copy for Polled<'_, U> {}

/// What the poller did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SidecoreStats {
    /// Passes over the page.
    pub passes: u64,
    /// Register writes forwarded to the unit.
    pub writes: u64,
    /// Time spent in passes that did work (forwarding writes, emulating
    /// and publishing registers: what a sidecore does beyond looking), TSC
    /// cycles.
    pub busy_cycles: u64,
    /// Time the poller ran, TSC cycles.
    pub total_cycles: u64,
}

impl SidecoreStats {
    /// Fraction of its time the sidecore was busy (not merely polling).
    #[must_use]
    pub fn busy_fraction(&self) -> f64 {
        self.busy_cycles as f64 / self.total_cycles.max(1) as f64
    }
}

/// A register page the poller owns.
pub struct Poller<'a, R> {
    sidecore: Sidecore<'a, [AtomicU32]>,
    regs: R,
    /// What it did.
    pub stats: SidecoreStats,
}

impl<'a, 'r, U: Registers + ?Sized> Poller<'a, Polled<'r, U>> {
    /// A poller serving `page` for `regs` (the vIOMMU); the page is filled
    /// with the unit's current registers. `iotlb_reg` is the IOTLB
    /// register's offset (ECAP.IRO + 8) and `fault_records` the fault
    /// recording registers' range.
    pub fn new(
        page: &'a GuestRam,
        regs: Polled<'r, U>,
        iotlb_reg: usize,
        fault_records: Range<usize>,
    ) -> std::io::Result<Self> {
        let words = page.atomic_words()?;
        let layout = Layout::at(iotlb_reg, fault_records, Polling::All);
        let sidecore = Sidecore::with_layout(words, regs.0, layout);
        Ok(Poller { sidecore, regs, stats: SidecoreStats::default() })
    }

    /// Polls until `stop` is set. Passes are timed with the TSC (a clock
    /// read per pass would lengthen the poll loop the guest waits on).
    pub fn run(&mut self, stop: &AtomicBool) {
        let started = rdtsc();
        while !stop.load(Ordering::Relaxed) {
            let t0 = rdtsc();
            if self.sidecore.poll(self.regs.0) {
                self.stats.busy_cycles += rdtsc().saturating_sub(t0);
            } else {
                std::hint::spin_loop();
            }
        }
        self.stats.total_cycles = rdtsc().saturating_sub(started);
        self.stats.passes = self.sidecore.passes();
        self.stats.writes = self.sidecore.forwarded();
    }
}
