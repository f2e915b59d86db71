//! Sidecore emulation (Amit et al. 2011, §4): the guest's register page is
//! plain memory shared with a hypervisor thread on another core, which
//! polls it and emulates what the guest wrote, so the guest's map/unmap
//! path takes no VM exit.
//!
//! # What the sidecore relies on
//! Polling works because of four properties of VT-d's register interface:
//! 1. **A synchronous protocol**: every command is "write, then poll a
//!    status" (CCMD.ICC and IOTLB_REG.IVT read 1 until the invalidation is
//!    done, §10.4.7, §10.4.8; a queued invalidation completes by a wait
//!    descriptor's status write to memory, §6.5.2.8). The guest writes the
//!    command's data registers first and the register that starts it
//!    (the *doorbell*) last, and never writes again before the status says
//!    done; so the sidecore may notice the doorbell late, and when it does
//!    (an `Acquire` load that sees the guest's `Release` store), everything
//!    the guest wrote before is visible.
//! 2. **No register mixes fields the guest writes with fields the unit
//!    updates on its own**: IQT, IQA, IVA, RTADDR and the event registers are
//!    written only by the guest; GSTS, IQH and the capability registers only
//!    by the unit. The sidecore can store status into the page without ever
//!    overwriting a value the guest is writing. (CCMD and IOTLB_REG hold both
//!    a doorbell and its status, but the protocol keeps the guest off them
//!    while the command runs.)
//! 3. **Loose response time**: nothing breaks if a command takes longer; the
//!    guest just polls longer.
//! 4. **Explicit flushes**: the unit reads in-memory structures (tables,
//!    the queue) only when told to by an invalidation, so the sidecore never
//!    has to notice a guest store to memory.
//!
//! VT-d bends the second property in a few registers, which therefore still
//! trap (the guest-side [`SidecoreMmio`] forwards them synchronously): the
//! write-1-to-clear status bits of FSTS, ICS and the fault recording
//! registers (a guest writing back a 1 that is already there leaves the
//! page unchanged, so a poller cannot see it), and GCMD, whose one-shot
//! commands (SRTP, SIRTP) report completion in GSTS bits that stay set from
//! the previous command. None of them is on the map/unmap path.
//!
//! AMD's IOMMU lacks these properties: its command buffer and event log are
//! driven by head/tail registers whose completion is signalled
//! asynchronously (COMPLETION_WAIT with an interrupt or a store, and the
//! event log written by the IOMMU at any time), its device table entries
//! and page tables may be cached without an explicit invalidation order a
//! poller could follow, and its control register mixes enable bits the
//! driver writes with run-time status the IOMMU updates (MMIO offset 0x18
//! vs the status register 0x2020 carrying both software-cleared and
//! hardware-set bits). A sidecore would have to watch guest memory as well
//! as the register page, and could race the guest on shared registers.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vtd_emu::EmuConfig;
use vtd_regs::Mmio;
use vtd_regs::regs::offset;

/// Dwords in the register page.
pub const PAGE_WORDS: usize = offset::REGISTER_PAGE_SIZE / 4;

/// Bit 31 of CCMD's and IOTLB_REG's high dword: ICC and IVT (bit 63).
const DOORBELL_HI: u32 = 1 << 31;

/// Memory shared between the guest and the sidecore, as 32-bit words.
pub trait SharedWords {
    /// Loads word `index` (`Acquire`).
    fn load(&self, index: usize) -> u32;
    /// Stores word `index` (`Release`).
    fn store(&self, index: usize, value: u32);
    /// Runs `f` while no other publisher stores status into the page.
    fn publishing(&self, f: &mut dyn FnMut()) {
        f()
    }
}

/// The register page: 4 KiB of shared memory.
#[derive(Debug)]
pub struct RegisterPage {
    words: [AtomicU32; PAGE_WORDS],
    publish: spin::Mutex<()>,
}

impl Default for RegisterPage {
    fn default() -> Self {
        Self::new()
    }
}

impl RegisterPage {
    /// A zeroed page.
    pub const fn new() -> Self {
        Self { words: [const { AtomicU32::new(0) }; PAGE_WORDS], publish: spin::Mutex::new(()) }
    }
}

impl SharedWords for RegisterPage {
    fn load(&self, index: usize) -> u32 {
        self.words.get(index).map_or(0, |w| w.load(Ordering::Acquire))
    }

    fn store(&self, index: usize, value: u32) {
        if let Some(w) = self.words.get(index) {
            w.store(value, Ordering::Release);
        }
    }

    fn publishing(&self, f: &mut dyn FnMut()) {
        let _guard = self.publish.lock();
        f()
    }
}

/// The emulated unit behind the page: what the sidecore forwards to.
pub trait Registers {
    /// The register at `off` as the unit has it (no side effect).
    fn read(&self, off: usize) -> u32;
    /// A guest write of `value` to `off`, with its side effects.
    fn write(&self, off: usize, value: u32);
}

/// Registers the guest writes and the unit never changes, polled for
/// changes and forwarded before any doorbell.
const DATA: usize = 17;
/// Registers the unit updates, stored into the page after each command.
const STATUS: [usize; 7] = [
    offset::GSTS,
    offset::FSTS,
    offset::IQH,
    offset::IQH + 4,
    offset::ICS,
    offset::IQERCD,
    offset::IQERCD + 4,
];

/// Where the registers of one unit configuration are.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    data: [usize; DATA],
    iotlb: usize,
    frcd: (usize, usize),
}

impl Layout {
    /// The layout of a unit configured as `cfg` (IVA/IOTLB_REG at ECAP.IRO,
    /// fault records at CAP.FRO, §10.4).
    pub fn new(cfg: &EmuConfig) -> Self {
        let iva = cfg.ecap.iro().iva();
        let iotlb = cfg.ecap.iro().iotlb();
        let fro = cfg.cap.fro().byte_offset();
        let frcd_end = (fro + usize::from(cfg.cap.nfr().count()) * 16).min(PAGE_WORDS * 4);
        use offset::*;
        let data = [
            RTADDR,
            RTADDR + 4,
            IQA,
            IQA + 4,
            IQT + 4,
            FECTL,
            FEDATA,
            FEADDR,
            FEUADDR,
            IECTL,
            IEDATA,
            IEADDR,
            IEUADDR,
            CCMD,
            iva,
            iva + 4,
            iotlb,
        ];
        Self { data, iotlb, frcd: (fro, frcd_end) }
    }

    /// Registers the guest-side handle forwards synchronously (they trap).
    pub fn trapped(&self, off: usize) -> bool {
        matches!(off & !3, offset::GCMD | offset::FSTS | offset::ICS)
            || (self.frcd.0..self.frcd.1).contains(&off)
    }

    /// Stores the unit's status registers (and, with `all`, the
    /// capability and fault recording registers) into the page.
    fn publish<W: SharedWords + ?Sized, R: Registers + ?Sized>(
        &self,
        page: &W,
        regs: &R,
        all: bool,
    ) {
        page.publishing(&mut || {
            for off in STATUS {
                page.store(off / 4, regs.read(off));
            }
            if all {
                let fixed =
                    [offset::VER, offset::CAP, offset::CAP + 4, offset::ECAP, offset::ECAP + 4];
                for off in fixed.into_iter().chain((self.frcd.0..self.frcd.1).step_by(4)) {
                    page.store(off / 4, regs.read(off));
                }
            }
        });
    }
}

/// How many idle polls pass between refreshes of the fault status.
const REFRESH: u32 = 64;

/// The sidecore's side: polls the page and emulates what changed.
#[derive(Debug)]
pub struct Sidecore<'p, W: ?Sized> {
    page: &'p W,
    layout: Layout,
    /// The data registers as last forwarded.
    last: [u32; DATA],
    last_iqt: u32,
    idle: u32,
    /// Commands served.
    served: u64,
}

impl<'p, W: SharedWords + ?Sized> Sidecore<'p, W> {
    /// Takes over `page` for the unit `regs` configured as `cfg`: fills the
    /// page with the unit's registers.
    pub fn new<R: Registers + ?Sized>(page: &'p W, regs: &R, cfg: &EmuConfig) -> Self {
        let layout = Layout::new(cfg);
        let mut last = [0; DATA];
        for (l, off) in last.iter_mut().zip(layout.data) {
            *l = regs.read(off);
            page.store(off / 4, *l);
        }
        let last_iqt = regs.read(offset::IQT);
        page.store(offset::IQT / 4, last_iqt);
        for off in [offset::CCMD + 4, layout.iotlb + 4] {
            page.store(off / 4, regs.read(off));
        }
        layout.publish(page, regs, true);
        Self { page, layout, last, last_iqt, idle: 0, served: 0 }
    }

    /// The layout served.
    pub const fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Commands served so far.
    pub const fn served(&self) -> u64 {
        self.served
    }

    /// One pass over the page: serves a rung doorbell (context-cache or
    /// IOTLB register command, or a moved queue tail) after forwarding the
    /// data registers the guest changed. Returns whether it did any work.
    pub fn poll<R: Registers + ?Sized>(&mut self, regs: &R) -> bool {
        let page = self.page;
        let mut work = false;
        for bell in [offset::CCMD + 4, self.layout.iotlb + 4] {
            let v = page.load(bell / 4);
            if v & DOORBELL_HI != 0 {
                self.forward_data(regs);
                regs.write(bell, v);
                let lo = bell - 4;
                page.publishing(&mut || {
                    page.store(lo / 4, regs.read(lo));
                    page.store(bell / 4, regs.read(bell));
                });
                work = true;
            }
        }
        let tail = page.load(offset::IQT / 4);
        if tail != self.last_iqt {
            self.forward_data(regs);
            self.last_iqt = tail;
            regs.write(offset::IQT, tail);
            work = true;
        }
        if work {
            self.served += 1;
            self.layout.publish(page, regs, false);
        } else {
            self.idle = self.idle.wrapping_add(1);
            if self.idle.is_multiple_of(REFRESH) {
                self.forward_data(regs);
                self.layout.publish(page, regs, true);
            }
        }
        work
    }

    /// Forwards the data registers that changed since last time.
    fn forward_data<R: Registers + ?Sized>(&mut self, regs: &R) {
        for (l, off) in self.last.iter_mut().zip(self.layout.data) {
            let v = self.page.load(off / 4);
            if v != *l {
                *l = v;
                regs.write(off, v);
            }
        }
    }

    /// Polls until `stop` is set, spinning while idle (a dedicated core).
    pub fn run<R: Registers + ?Sized>(&mut self, regs: &R, stop: &AtomicBool) {
        self.run_with(regs, stop, core::hint::spin_loop)
    }

    /// Polls until `stop` is set, calling `idle` after each pass that found
    /// nothing to do (e.g. to yield a core the sidecore shares).
    pub fn run_with<R: Registers + ?Sized>(
        &mut self,
        regs: &R,
        stop: &AtomicBool,
        mut idle: impl FnMut(),
    ) {
        while !stop.load(Ordering::Acquire) {
            if !self.poll(regs) {
                idle();
            }
        }
    }
}

/// The guest's view of the page: loads and stores to shared memory, except
/// for the registers that trap ([`Layout::trapped`]), which are forwarded to
/// the unit at once, with the status they change published before the
/// access returns.
#[derive(Debug)]
pub struct SidecoreMmio<'p, W: ?Sized, R: ?Sized> {
    page: &'p W,
    regs: &'p R,
    layout: Layout,
}

impl<W: ?Sized, R: ?Sized> Clone for SidecoreMmio<'_, W, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W: ?Sized, R: ?Sized> Copy for SidecoreMmio<'_, W, R> {}

impl<'p, W: SharedWords + ?Sized, R: Registers + ?Sized> SidecoreMmio<'p, W, R> {
    /// The guest's handle on `page`, trapping to `regs`.
    pub fn new(page: &'p W, regs: &'p R, cfg: &EmuConfig) -> Self {
        Self { page, regs, layout: Layout::new(cfg) }
    }
}

impl<W: SharedWords + ?Sized, R: Registers + ?Sized> Mmio for SidecoreMmio<'_, W, R> {
    fn read32(&self, off: usize) -> u32 {
        if off.is_multiple_of(4) { self.page.load(off / 4) } else { 0 }
    }

    fn write32(&mut self, off: usize, value: u32) {
        if !off.is_multiple_of(4) {
            return;
        }
        if self.layout.trapped(off) {
            // What the guest wrote before the trapping access must reach the
            // unit first (IQA before GCMD.QIE, RTADDR before GCMD.SRTP).
            for d in self.layout.data {
                let v = self.page.load(d / 4);
                if v != self.regs.read(d) {
                    self.regs.write(d, v);
                }
            }
            self.regs.write(off, value);
            self.layout.publish(self.page, self.regs, true);
        } else {
            self.page.store(off / 4, value);
        }
    }
}
