//! The sidecore front end: the guest's VT-d register page is a RAM page;
//! a VMM thread polls it and plays the unit's side of the register
//! protocol through the guest's vIOMMU (any [`Mmio`]: the evaluation
//! passes the `viommu::Viommu` as [`Polled`], its sidecore interface). VT-d permits it (the seed, §3 of the
//! paper): commands are synchronous (write, then poll a status bit), no
//! register mixes read-only and writable fields, and memory-resident
//! structures are flushed by explicit commands.
//!
//! Each pass compares every 8-byte granule of the page with the value last
//! seen; a changed granule is forwarded as register writes (both halves of
//! a 64-bit register, low first, so the side effect bound to the high half
//! fires, §10.2). Polling must not reorder the guest's writes where order
//! matters: a command (GCMD, IQT, CCMD, IOTLB_REG) acts on registers the
//! guest wrote before it (IQA before GCMD.QIE, §10.4.23). So each pass
//! reads the command registers first and the others after (x86 stores are
//! seen in program order, so every write that preceded a command seen is
//! seen too), then forwards the others first and the commands last. A
//! guest writes nothing after a command until its status says it is done
//! (the synchronous protocol), except further IQT writes. After any change, every register is read back from the
//! unit and published into the page with a compare-and-swap against
//! the last-seen value, so a guest write racing the publication is never
//! lost: it is seen by the next pass.
//!
//! Limit: a write-1-to-clear of FSTS that writes the value already shown
//! cannot be seen by value comparison (none happens in these runs: the
//! evaluation takes no faults).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use viommu::sidecore::Registers;
use vtd_regs::{Mmio, regs::offset};

use crate::memory::GuestRam;

/// Words in the register page.
const WORDS: usize = 1024;
/// The registers at fixed offsets (§10.4) and, in the configurations run
/// here, the IOTLB registers (ECAP.IRO = 0xF0); fault recording
/// registers are added from CAP.FRO.
const REGISTER_BLOCK: usize = 0x100;

/// A unit as a sidecore drives it (`viommu::sidecore::Registers`, which
/// `viommu::Viommu` implements): reads without side effects and without
/// counting a register access, writes as the guest's.
#[derive(Debug)]
pub struct Polled<'r, U: ?Sized>(pub &'r U);

impl<U: ?Sized> Clone for Polled<'_, U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U: ?Sized> Copy for Polled<'_, U> {}

impl<U: Registers + ?Sized> Mmio for Polled<'_, U> {
    fn read32(&self, offset: usize) -> u32 {
        self.0.read(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.0.write(offset, value);
    }
}

/// What the poller did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SidecoreStats {
    /// Passes over the page.
    pub passes: u64,
    /// Register writes forwarded to the unit.
    pub writes: u64,
    /// Time spent forwarding writes and publishing registers (the work a
    /// sidecore does beyond looking), nanoseconds.
    pub busy_ns: u64,
    /// Time the poller ran, nanoseconds.
    pub total_ns: u64,
}

impl SidecoreStats {
    /// Fraction of its time the sidecore was busy (not merely polling).
    #[must_use]
    pub fn busy_fraction(&self) -> f64 {
        self.busy_ns as f64 / self.total_ns.max(1) as f64
    }
}

/// A register page the poller owns.
pub struct Poller<'a, R> {
    page: &'a [AtomicU32],
    regs: R,
    seen: Vec<u32>,
    wide: Vec<bool>,
    /// Granules holding a command register, forwarded last.
    commands: Vec<usize>,
    /// Granules holding any register (the rest of the page is reserved).
    active: Vec<usize>,
    /// What it did.
    pub stats: SidecoreStats,
}

impl<'a, R: Mmio> Poller<'a, R> {
    /// A poller publishing `regs` (the vIOMMU) into `page`; the page is
    /// filled with the unit's current registers. `iotlb_reg` is the
    /// IOTLB register's offset (ECAP.IRO + 8) and `fault_records` the fault
    /// recording registers' range, both 64-bit.
    pub fn new(
        page: &'a GuestRam,
        regs: R,
        iotlb_reg: usize,
        fault_records: std::ops::Range<usize>,
    ) -> std::io::Result<Self> {
        let page = page.atomic_words()?;
        let mut wide = vec![false; WORDS / 2];
        let mut mark = |off: usize| {
            if let Some(w) = wide.get_mut(off / 8) {
                *w = true;
            }
        };
        for off in
            [offset::RTADDR, offset::CCMD, offset::IQH, offset::IQT, offset::IQA, offset::IRTA]
        {
            mark(off);
        }
        mark(iotlb_reg);
        mark(iotlb_reg - 8);
        for off in fault_records.clone().step_by(8) {
            mark(off);
        }
        let commands = vec![offset::GCMD / 8, offset::CCMD / 8, iotlb_reg / 8, offset::IQT / 8];
        let mut active: Vec<usize> = (0..REGISTER_BLOCK / 8).collect();
        active.extend(fault_records.step_by(8).map(|off| off / 8));
        active.retain(|g| *g < WORDS / 2);
        let mut p = Poller {
            page,
            regs,
            seen: vec![0; WORDS],
            wide,
            commands,
            active,
            stats: SidecoreStats::default(),
        };
        p.publish();
        Ok(p)
    }

    /// Polls until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut idle: u32 = 0;
        let started = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let t0 = std::time::Instant::now();
            if self.pass() {
                idle = 0;
                self.publish();
                self.stats.busy_ns += u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            } else {
                idle = idle.saturating_add(1);
                // Re-publish now and then: fault records change on DMA.
                if idle.is_multiple_of(4096) {
                    self.publish();
                }
                std::hint::spin_loop();
            }
        }
        self.stats.total_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    }

    /// One pass: forwards changed granules, commands last; true if any
    /// changed.
    fn pass(&mut self) -> bool {
        self.stats.passes += 1;
        let commands: Vec<(usize, u32, u32)> =
            self.commands.iter().map(|&g| (g, self.load(2 * g), self.load(2 * g + 1))).collect();
        let mut changed = false;
        for i in 0..self.active.len() {
            let g = self.active[i];
            if !self.commands.contains(&g) {
                let (lo, hi) = (self.load(2 * g), self.load(2 * g + 1));
                changed |= self.forward(g, lo, hi);
            }
        }
        for (g, lo, hi) in commands {
            changed |= self.forward(g, lo, hi);
        }
        changed
    }

    fn load(&self, word: usize) -> u32 {
        self.page[word].load(Ordering::Acquire)
    }

    /// Forwards granule `g` read as `lo`, `hi` if it changed.
    fn forward(&mut self, g: usize, lo: u32, hi: u32) -> bool {
        let (lo_i, hi_i) = (2 * g, 2 * g + 1);
        let (lo_changed, hi_changed) = (lo != self.seen[lo_i], hi != self.seen[hi_i]);
        if !lo_changed && !hi_changed {
            return false;
        }
        let off = g * 8;
        if self.wide[g] {
            self.regs.write32(off, lo);
            self.regs.write32(off + 4, hi);
            self.stats.writes += 2;
        } else {
            if lo_changed {
                self.regs.write32(off, lo);
                self.stats.writes += 1;
            }
            if hi_changed {
                self.regs.write32(off + 4, hi);
                self.stats.writes += 1;
            }
        }
        self.seen[lo_i] = lo;
        self.seen[hi_i] = hi;
        true
    }

    /// Copies every register from the unit into the page, unless the
    /// guest wrote the word since it was last seen.
    fn publish(&mut self) {
        for &g in &self.active {
            for i in [2 * g, 2 * g + 1] {
                let value = self.regs.read32(i * 4);
                if value != self.seen[i]
                    && self.page[i]
                        .compare_exchange(self.seen[i], value, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.seen[i] = value;
                }
            }
        }
    }
}
