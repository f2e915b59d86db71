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
//! VT-d bends the second property in a few registers: the write-1-to-clear
//! status bits of FSTS, ICS and the fault recording registers (a guest
//! writing back a 1 that is already there leaves the page unchanged, so a
//! poller cannot see it), and GCMD, whose one-shot commands (SRTP, SIRTP)
//! report completion in GSTS bits that stay set from the previous command
//! (and a guest may write the same GCMD value twice). None of them is on
//! the map/unmap path. Two ways to serve them:
//! - [`Polling::Trapped`]: they trap (the guest-side [`SidecoreMmio`]
//!   forwards them synchronously); everything else is polled. For a guest
//!   whose accesses to those registers a hypervisor can intercept, or an
//!   in-process driver.
//! - [`Polling::All`]: every register is plain memory, as in a VM whose
//!   register page is a RAM page (no access traps). GCMD is polled like a
//!   doorbell: after serving a write the sidecore stores
//!   [`GCMD_IDLE`] into the page (GCMD reads as 0 on hardware; no driver
//!   reads it), so the same command written again is seen. The
//!   write-1-to-clear registers are served when the guest's write changes
//!   the page; FSTS and ICS are published with [`W1C_MARK`] (bit 31, reserved
//!   in both) set, so a write of the status bits a driver wants cleared
//!   always differs from what the page shows. The limit: a guest that
//!   writes back exactly the value it read, mark included, is not seen.
//!   Status is published with a compare-and-swap against the last value
//!   published, so a guest write racing a publication is never lost.
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
    /// Stores `new` into word `index` if it still holds `current`; whether
    /// it did. The default loads and stores, which is enough where only the
    /// sidecore stores the word (with [`Polling::Trapped`]); a page served
    /// with [`Polling::All`], which the guest writes concurrently, needs a
    /// compare-and-swap.
    fn swap_if(&self, index: usize, current: u32, new: u32) -> bool {
        let same = self.load(index) == current;
        if same {
            self.store(index, new);
        }
        same
    }
    /// Runs `f` while no other publisher stores status into the page.
    fn publishing(&self, f: &mut dyn FnMut()) {
        f()
    }
}

/// A page of atomic words, such as a VM's RAM page the guest sees as its
/// register page.
impl SharedWords for [AtomicU32] {
    fn load(&self, index: usize) -> u32 {
        self.get(index).map_or(0, |w| w.load(Ordering::Acquire))
    }

    fn store(&self, index: usize, value: u32) {
        if let Some(w) = self.get(index) {
            w.store(value, Ordering::Release);
        }
    }

    fn swap_if(&self, index: usize, current: u32, new: u32) -> bool {
        self.get(index).is_some_and(|w| {
            w.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
        })
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
        self.words.as_slice().load(index)
    }

    fn store(&self, index: usize, value: u32) {
        self.words.as_slice().store(index, value)
    }

    fn swap_if(&self, index: usize, current: u32, new: u32) -> bool {
        self.words.as_slice().swap_if(index, current, new)
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
    /// The registers at `offs`, into `out` (the same length): what the
    /// sidecore publishes after each command. The default reads them one
    /// by one; a unit behind a lock reads them under one acquisition.
    fn read_into(&self, offs: &[usize], out: &mut [u32]) {
        for (o, v) in offs.iter().zip(out) {
            *v = self.read(*o);
        }
    }
}

/// Registers the guest writes and the unit never changes, polled for
/// changes and forwarded before any doorbell (IVA and the IOTLB register's
/// low half are added from the layout).
const DATA: usize = 19;
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

/// Registers the unit never changes, stored into the page when it is
/// filled and at each refresh.
const FIXED: [usize; 5] =
    [offset::VER, offset::CAP, offset::CAP + 4, offset::ECAP, offset::ECAP + 4];

/// What GCMD holds in a page served with [`Polling::All`] while no command
/// is pending: bit 0, reserved (a driver writes it as 0).
pub const GCMD_IDLE: u32 = 1;
/// Bit 31 of FSTS and ICS as published in a page served with
/// [`Polling::All`] (reserved in both): a guest's write-1-to-clear of their
/// status bits then always changes the page.
pub const W1C_MARK: u32 = 1 << 31;

/// Which registers a sidecore polls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Polling {
    /// All but GCMD, FSTS, ICS and the fault recording registers, which
    /// trap to the unit through [`SidecoreMmio`].
    Trapped,
    /// All of them: the guest's register page is plain memory (see the
    /// [module](self) docs for how GCMD and the write-1-to-clear registers
    /// are served).
    All,
}

/// Where the registers of one unit configuration are, and which the
/// sidecore polls.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    data: [usize; DATA],
    iotlb: usize,
    frcd: (usize, usize),
    polling: Polling,
}

impl Layout {
    /// The layout of a unit configured as `cfg` (IVA/IOTLB_REG at ECAP.IRO,
    /// fault records at CAP.FRO, §10.4), served as `polling` says.
    pub fn new(cfg: &EmuConfig, polling: Polling) -> Self {
        let fro = cfg.cap.fro().byte_offset();
        let records = fro..fro + usize::from(cfg.cap.nfr().count()) * 16;
        Self::at(cfg.ecap.iro().iotlb(), records, polling)
    }

    /// The layout of a unit whose IOTLB register is at `iotlb` (IVA_REG 8
    /// bytes below) and whose fault recording registers span
    /// `fault_records`.
    pub fn at(iotlb: usize, fault_records: core::ops::Range<usize>, polling: Polling) -> Self {
        let iva = iotlb.saturating_sub(8);
        use offset::*;
        let data = [
            RTADDR,
            RTADDR + 4,
            IQA,
            IQA + 4,
            IQT + 4,
            IRTA,
            IRTA + 4,
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
        let frcd = (fault_records.start, fault_records.end.min(PAGE_WORDS * 4));
        Self { data, iotlb, frcd, polling }
    }

    /// Registers the guest-side handle forwards synchronously (they trap).
    pub fn trapped(&self, off: usize) -> bool {
        self.polling == Polling::Trapped && self.write_1_to_clear_or_gcmd(off)
    }

    /// GCMD and the registers with write-1-to-clear bits.
    fn write_1_to_clear_or_gcmd(&self, off: usize) -> bool {
        matches!(off & !3, offset::GCMD | offset::FSTS | offset::ICS)
            || (self.frcd.0..self.frcd.1).contains(&off)
    }

    /// The registers with write-1-to-clear bits a polled page serves: FSTS,
    /// ICS and the fault records' dwords.
    fn write_1_to_clear(&self) -> impl Iterator<Item = usize> + use<> {
        [offset::FSTS, offset::ICS].into_iter().chain((self.frcd.0..self.frcd.1).step_by(4))
    }

    /// How register `off` is shown in the page: FSTS and ICS with
    /// [`W1C_MARK`] in a polled page.
    fn shown(&self, off: usize, value: u32) -> u32 {
        let marked = self.polling == Polling::All && matches!(off, offset::FSTS | offset::ICS);
        if marked { value | W1C_MARK } else { value }
    }

    /// Stores the unit's status registers (and, with `all`, the
    /// capability and fault recording registers) into the page; `shown`
    /// keeps what was last stored of each register the guest may write too,
    /// so a guest write racing the store is never lost.
    fn publish<W: SharedWords + ?Sized, R: Registers + ?Sized>(
        &self,
        page: &W,
        regs: &R,
        shown: &mut Shown,
        all: bool,
    ) {
        let mut status = [0; STATUS.len()];
        regs.read_into(&STATUS, &mut status);
        page.publishing(&mut || {
            for (off, value) in STATUS.into_iter().zip(status) {
                self.show(page, shown, off, value);
            }
        });
        if all {
            // The fixed and fault recording registers, read at once (one
            // lock acquisition behind a lock).
            let mut offs = [0; FIXED.len() + FRCD_WORDS];
            let mut n = 0;
            for (slot, off) in
                offs.iter_mut().zip(FIXED.into_iter().chain((self.frcd.0..self.frcd.1).step_by(4)))
            {
                *slot = off;
                n += 1;
            }
            let mut values = [0; FIXED.len() + FRCD_WORDS];
            regs.read_into(&offs[..n], &mut values[..n]);
            page.publishing(&mut || {
                for (off, value) in offs[..n].iter().zip(&values[..n]) {
                    self.show(page, shown, *off, *value);
                }
            });
        }
    }

    /// Stores register `off`, whose value is `value`, into the page: by a
    /// compare-and-swap against what was shown last where the guest writes
    /// it too (a polled page's write-1-to-clear registers), elsewhere by a
    /// store only if the page shows another value. A store takes the cache
    /// line from the guest's core, which must then fetch it back to read
    /// its next status (GSTS, FSTS) or write its next tail (IQT shares a
    /// line with IQH): the status that did not change is left alone. Only
    /// publishers (under [`SharedWords::publishing`]) store these words.
    fn show<W: SharedWords + ?Sized>(&self, page: &W, shown: &mut Shown, off: usize, value: u32) {
        let value = self.shown(off, value);
        match shown.slot(self, off) {
            Some(last) if *last != value && page.swap_if(off / 4, *last, value) => *last = value,
            Some(_) => {}
            None if page.load(off / 4) != value => page.store(off / 4, value),
            None => {}
        }
    }
}

/// What was last shown of each register a polled page's guest writes too.
#[derive(Clone, Copy, Debug)]
struct Shown {
    fsts: u32,
    ics: u32,
    frcd: [u32; FRCD_WORDS],
}

/// The fault recording dwords a polled page tracks (64 records, §10.4.14).
const FRCD_WORDS: usize = 256;

impl Default for Shown {
    fn default() -> Self {
        Self { fsts: 0, ics: 0, frcd: [0; FRCD_WORDS] }
    }
}

impl Shown {
    /// The last value shown of `off`, if the guest writes it too.
    fn slot(&mut self, layout: &Layout, off: usize) -> Option<&mut u32> {
        if layout.polling != Polling::All {
            return None;
        }
        match off {
            offset::FSTS => Some(&mut self.fsts),
            offset::ICS => Some(&mut self.ics),
            o if (layout.frcd.0..layout.frcd.1).contains(&o) => {
                self.frcd.get_mut((o - layout.frcd.0) / 4)
            }
            _ => None,
        }
    }
}

/// How many idle polls pass between refreshes of the fault status (which
/// the unit may change on its own: a fault it records). Some tens of
/// microseconds of idle polling: a refresh reads every fault record, and a
/// doorbell rung meanwhile waits for it, so it must be rare next to the
/// commands a busy guest sends.
const REFRESH: u32 = 4096;

/// The sidecore's side: polls the page and emulates what changed.
#[derive(Debug)]
pub struct Sidecore<'p, W: ?Sized> {
    page: &'p W,
    layout: Layout,
    /// The data registers as last forwarded.
    last: [u32; DATA],
    last_iqt: u32,
    shown: Shown,
    idle: u32,
    /// Commands served.
    served: u64,
    /// Passes over the page.
    passes: u64,
    /// Register writes forwarded to the unit.
    forwarded: u64,
}

impl<'p, W: SharedWords + ?Sized> Sidecore<'p, W> {
    /// Takes over `page` for the unit `regs` configured as `cfg`, with GCMD,
    /// FSTS, ICS and the fault records trapping ([`Polling::Trapped`]):
    /// fills the page with the unit's registers.
    pub fn new<R: Registers + ?Sized>(page: &'p W, regs: &R, cfg: &EmuConfig) -> Self {
        Self::with_layout(page, regs, Layout::new(cfg, Polling::Trapped))
    }

    /// Takes over `page`, served as `layout` says, for the unit `regs`:
    /// fills the page with the unit's registers.
    pub fn with_layout<R: Registers + ?Sized>(page: &'p W, regs: &R, layout: Layout) -> Self {
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
        let mut shown = Shown::default();
        if layout.polling == Polling::All {
            page.store(offset::GCMD / 4, GCMD_IDLE);
            for off in layout.write_1_to_clear() {
                let v = layout.shown(off, regs.read(off));
                page.store(off / 4, v);
                if let Some(slot) = shown.slot(&layout, off) {
                    *slot = v;
                }
            }
        }
        layout.publish(page, regs, &mut shown, true);
        Self { page, layout, last, last_iqt, shown, idle: 0, served: 0, passes: 0, forwarded: 0 }
    }

    /// The layout served.
    pub const fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Commands served so far.
    pub const fn served(&self) -> u64 {
        self.served
    }

    /// Passes over the page so far.
    pub const fn passes(&self) -> u64 {
        self.passes
    }

    /// Register writes forwarded to the unit so far.
    pub const fn forwarded(&self) -> u64 {
        self.forwarded
    }

    /// One pass over the page: serves a rung doorbell (context-cache or
    /// IOTLB register command, a moved queue tail, and in a polled page a
    /// GCMD command or a write-1-to-clear) after forwarding the data
    /// registers the guest changed. Returns whether it did any work.
    pub fn poll<R: Registers + ?Sized>(&mut self, regs: &R) -> bool {
        let page = self.page;
        self.passes += 1;
        let mut work = false;
        // The queue tail first: the doorbell of every queued invalidation.
        let tail = page.load(offset::IQT / 4);
        if tail != self.last_iqt {
            self.forward_data(regs);
            self.last_iqt = tail;
            self.write(regs, offset::IQT, tail);
            work = true;
        }
        if self.layout.polling == Polling::All {
            work |= self.poll_trapped(regs);
        }
        for bell in [offset::CCMD + 4, self.layout.iotlb + 4] {
            let v = page.load(bell / 4);
            if v & DOORBELL_HI != 0 {
                self.forward_data(regs);
                self.write(regs, bell, v);
                let lo = bell - 4;
                page.publishing(&mut || {
                    page.store(lo / 4, regs.read(lo));
                    page.store(bell / 4, regs.read(bell));
                });
                work = true;
            }
        }
        if work {
            self.served += 1;
            self.layout.publish(page, regs, &mut self.shown, false);
        } else {
            self.idle = self.idle.wrapping_add(1);
            if self.idle.is_multiple_of(REFRESH) {
                self.forward_data(regs);
                self.layout.publish(page, regs, &mut self.shown, true);
            }
        }
        work
    }

    /// In a polled page: serves a GCMD write and the guest's
    /// write-1-to-clear writes. Whether there was one.
    fn poll_trapped<R: Registers + ?Sized>(&mut self, regs: &R) -> bool {
        let page = self.page;
        let mut work = false;
        let gcmd = page.load(offset::GCMD / 4);
        if gcmd != GCMD_IDLE {
            // What the guest wrote before the command reaches the unit first
            // (IQA before GCMD.QIE, RTADDR before GCMD.SRTP); the page shows
            // GCMD idle again before GSTS shows the command done.
            self.forward_data(regs);
            self.write(regs, offset::GCMD, gcmd);
            page.store(offset::GCMD / 4, GCMD_IDLE);
            work = true;
        }
        for off in self.layout.write_1_to_clear() {
            let v = page.load(off / 4);
            let Some(last) = self.shown.slot(&self.layout, off) else { continue };
            if v != *last {
                // The guest wrote: its 1s clear (the mark is reserved).
                *last = v;
                self.write(regs, off, v & !self.layout.shown(off, 0));
                work = true;
            }
        }
        if work {
            self.layout.publish(page, regs, &mut self.shown, true);
        }
        work
    }

    /// Forwards a guest write of `value` to `off`.
    fn write<R: Registers + ?Sized>(&mut self, regs: &R, off: usize, value: u32) {
        self.forwarded += 1;
        regs.write(off, value);
    }

    /// Forwards the data registers that changed since last time.
    fn forward_data<R: Registers + ?Sized>(&mut self, regs: &R) {
        for i in 0..DATA {
            let off = self.layout.data[i];
            let v = self.page.load(off / 4);
            if v != self.last[i] {
                self.last[i] = v;
                self.write(regs, off, v);
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
    /// The guest's handle on `page`, trapping to `regs` (a page served
    /// with [`Polling::Trapped`]).
    pub fn new(page: &'p W, regs: &'p R, cfg: &EmuConfig) -> Self {
        Self { page, regs, layout: Layout::new(cfg, Polling::Trapped) }
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
            self.layout.publish(self.page, self.regs, &mut Shown::default(), true);
        } else {
            self.page.store(off / 4, value);
        }
    }
}
