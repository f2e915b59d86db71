//! The vIOMMU: a guest-visible VT-d unit ([`vtd_emu::Emulator`] over the
//! guest's RAM, caching mode on) whose invalidations are shadowed into the
//! host's unit.
//!
//! With CAP.CM set (VT-d §6.1) the guest must invalidate after every
//! change of its tables, a map included. Each context-cache or IOTLB
//! invalidation the guest issues, queued (§6.5.2) or through the registers
//! (§6.5.1), is seen by the vIOMMU *before* the emulated unit performs it:
//! the vIOMMU walks the guest's tables for the invalidated range (GIOVA ->
//! GPA), pins the guest pages through a [`PagePinner`] (GPA -> HPA) and
//! installs or removes GIOVA -> HPA in the host unit, waits for the host
//! invalidation, unpins what is no longer mapped, and only then lets the
//! emulated unit run the descriptor, so the guest's wait descriptor reports
//! completion after the host is in sync.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use invalidation::Invalidator;
use teardown::PagePinner;
use vtd_emu::{Access, EmuConfig, Emulator, Fault};
use vtd_regs::regs::{Ccmd, Gcmd, GlobalBits, Gsts, IotlbInv, Iqa, Iqh, Iqt, Iva, Rtaddr, offset};
use vtd_regs::{
    Descriptor, FrameAllocator, IotlbScope, Iova, Mmio, PAGE_SHIFT, PhysAddr, PhysMem, SourceId,
};
use vtd_tables::{ContextInfo, TranslationType, WalkLimits, lookup_context};

use crate::Error;
use crate::counters::ViommuCounters;
use crate::host::{Host, SharedHost};
use crate::pinner::SharedPinner;
use crate::shadow::{ShadowDomain, Sync};

/// A device the hypervisor assigned to the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Assignment {
    /// Its source id in the guest (what the guest's context tables index).
    pub guest: SourceId,
    /// Its source id on the host (what the host unit sees).
    pub host: SourceId,
}

/// Limits a vIOMMU puts on what one guest can make the host do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ViommuConfig {
    /// The guest-visible unit (caching mode is forced on).
    pub unit: EmuConfig,
    /// Most guest pages mapped in the host unit at once (each is pinned);
    /// one guest domain holds at most 2048 of them.
    pub max_pages: usize,
    /// Most guest domains shadowed at once.
    pub max_domains: usize,
    /// Most table entries one invalidation may make the vIOMMU read.
    pub scan_budget: u32,
}

impl ViommuConfig {
    /// QEMU's `intel-iommu` as the guest's unit, 64 Ki pages, 16 domains,
    /// 2^20 entries per scan.
    pub const fn qemu() -> Self {
        Self { unit: EmuConfig::qemu(), max_pages: 1 << 16, max_domains: 16, scan_budget: 1 << 20 }
    }
}

/// A device's state.
#[derive(Clone, Copy, Debug)]
struct Device {
    ids: Assignment,
    /// The guest context it is attached with in the host (index of the
    /// shadow domain's key), `None` when blocked.
    attached: Option<ContextInfo>,
}

/// What the lock protects.
struct State<'h, M: PhysMem + Clone, A: FrameAllocator + Clone, I, P> {
    /// The guest's root table latched by its last SRTP.
    root: Option<PhysAddr>,
    devices: Vec<Device>,
    domains: Vec<ShadowDomain<'h, M, A, I, P>>,
    counters: ViommuCounters,
    /// Pages this guest may still install.
    room: usize,
    /// IVA_REG as the guest last wrote it: the register is write-only
    /// (§10.4.8.2), so the vIOMMU keeps its own copy for the page-selective
    /// invalidation IOTLB_REG starts.
    iva: u64,
}

/// An emulated VT-d for one guest, shadowing into the host unit `Host`.
///
/// `&Viommu` is the guest's register page under trap-and-emulate: it
/// implements [`Mmio`], one call per trapped access. The sidecore front end
/// ([`crate::sidecore`]) drives the same methods from a polling thread.
pub struct Viommu<'h, G, M, A, I, P>
where
    G: PhysMem,
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
{
    emu: Emulator<G>,
    host: &'h spin::Mutex<Host<M, A, I>>,
    pinner: SharedPinner<P>,
    state: spin::Mutex<State<'h, M, A, I, P>>,
    limits: WalkLimits,
    config: ViommuConfig,
    assigned: Vec<Assignment>,
    accesses: AtomicU64,
}

impl<'h, G, M, A, I, P> Viommu<'h, G, M, A, I, P>
where
    G: PhysMem,
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    P: PagePinner,
{
    /// A vIOMMU over the guest's RAM `guest_mem`, for the `devices` assigned
    /// to the guest, pinning through `pinner` and shadowing into `host`.
    /// Every device is blocked until the guest attaches it.
    pub fn new(
        guest_mem: G,
        host: &'h spin::Mutex<Host<M, A, I>>,
        pinner: P,
        devices: &[Assignment],
        config: ViommuConfig,
    ) -> Result<Self, Error> {
        let unit = config.unit.with_caching_mode(true);
        let limits = WalkLimits::new(unit.cap, unit.ecap, unit.host_address_width.bits());
        let emu = Emulator::new(guest_mem, unit).map_err(Error::Config)?;
        let assigned = devices.to_vec();
        let devices = devices.iter().map(|&ids| Device { ids, attached: None }).collect();
        Ok(Self {
            emu,
            host,
            pinner: SharedPinner::new(pinner),
            state: spin::Mutex::new(State {
                root: None,
                devices,
                domains: Vec::new(),
                counters: ViommuCounters::default(),
                room: config.max_pages,
                iva: 0,
            }),
            limits,
            config: ViommuConfig { unit, ..config },
            assigned,
            accesses: AtomicU64::new(0),
        })
    }

    /// The guest-visible unit (its registers, fault records and counters).
    pub fn unit(&self) -> &Emulator<G> {
        &self.emu
    }

    /// The configuration.
    pub const fn config(&self) -> &ViommuConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> ViommuCounters {
        let mut c = self.state.lock().counters;
        c.register_accesses = self.accesses.load(Ordering::Relaxed);
        let pins = self.pinner.lock();
        (c.pins, c.unpins) = (pins.pins, pins.unpins);
        c
    }

    /// Runs `f` on the pinner.
    pub fn with_pinner<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        f(&self.pinner.lock().pinner)
    }

    /// The guest pages mapped in the host unit, as (GIOVA, guest page
    /// address) pairs of every shadowed domain.
    pub fn shadowed(&self) -> Vec<(Iova, PhysAddr)> {
        let st = self.state.lock();
        st.domains
            .iter()
            .flat_map(|d| d.pages.iter())
            .map(|(g, l)| (Iova::new(g << PAGE_SHIFT), PhysAddr::new(l.page << PAGE_SHIFT)))
            .collect()
    }

    /// A DMA request of the assigned device whose guest source id is
    /// `guest_sid`, translated by the host unit `unit`. A request the host
    /// unit blocks is also reported to the guest: the guest's unit walks
    /// the guest's tables for it and records the fault in its fault
    /// recording registers (§7.2) if they do not allow it either.
    pub fn dma<HM: PhysMem, const IO: usize, const CO: usize>(
        &self,
        unit: &Emulator<HM, IO, CO>,
        guest_sid: SourceId,
        iova: Iova,
        access: Access,
    ) -> Result<PhysAddr, Fault> {
        let host_sid = self.assigned.iter().find(|a| a.guest == guest_sid).map(|a| a.host);
        let result = match host_sid {
            Some(sid) => unit.translate(sid, iova, access),
            None => Err(Fault {
                source: guest_sid,
                addr: iova,
                reason: vtd_regs::FaultReason::ContextEntryNotPresent,
                kind: match access {
                    Access::Read => vtd_regs::regs::FaultType::Read,
                    Access::Write => vtd_regs::regs::FaultType::Write,
                },
            }),
        };
        if result.is_err() {
            let _ = self.emu.translate(guest_sid, iova, access);
        }
        result
    }

    /// Emulates a guest read of the 32-bit register at `off`.
    pub fn read_register(&self, off: usize) -> u32 {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        self.emu.read32(off)
    }

    /// Emulates a guest write of `value` to the 32-bit register at `off`:
    /// shadows the invalidations it starts, then performs it.
    pub fn write_register(&self, off: usize, value: u32) {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state.lock();
        let ecap = self.config.unit.ecap;
        let (iva, iotlb) = (ecap.iro().iva(), ecap.iro().iotlb());
        let qie = self.status().contains(GlobalBits::QIE);
        match off {
            offset::IQT => self.shadow_queue(&mut st, Iqt(u64::from(value))),
            offset::FSTS => {
                let halted = self.emu.fault_status();
                let clears = vtd_regs::regs::Fsts(value);
                if (halted.iqe() && clears.iqe()) || (halted.ite() && clears.ite()) {
                    let tail = Iqt(self.emu_read64(offset::IQT));
                    self.shadow_queue(&mut st, tail);
                }
            }
            o if o == offset::CCMD + 4 && !qie => {
                let cmd = Ccmd(u64::from(value) << 32 | u64::from(self.emu_read32(offset::CCMD)));
                if cmd.icc() {
                    st.counters.invalidations_shadowed += 1;
                    self.sync_contexts(&mut st);
                }
            }
            o if o == iva => st.iva = st.iva & !0xffff_ffff | u64::from(value),
            o if o == iva + 4 => st.iva = st.iva & 0xffff_ffff | u64::from(value) << 32,
            o if o == iotlb + 4 && !qie => {
                let cmd = IotlbInv(u64::from(value) << 32 | u64::from(self.emu_read32(iotlb)));
                if let Some(scope) = cmd.ivt().then(|| cmd.scope(Iva(st.iva))) {
                    st.counters.invalidations_shadowed += 1;
                    if let Some(scope) = scope {
                        self.sync_iotlb(&mut st, scope);
                    }
                }
            }
            _ => {}
        }
        let before = self.status();
        (&self.emu).write32(off, value);
        if off == offset::GCMD {
            if Gcmd(value).bits().contains(GlobalBits::SRTP) {
                st.root = Some(Rtaddr(self.emu_read64(offset::RTADDR)).table());
            }
            if before.contains(GlobalBits::TE) != self.status().contains(GlobalBits::TE)
                || Gcmd(value).bits().contains(GlobalBits::SRTP)
            {
                self.sync_contexts(&mut st);
            }
        }
    }

    fn status(&self) -> Gsts {
        Gsts(self.emu_read32(offset::GSTS))
    }

    fn emu_read32(&self, off: usize) -> u32 {
        self.emu.read32(off)
    }

    fn emu_read64(&self, off: usize) -> u64 {
        self.emu.read64(off)
    }

    /// Shadows the descriptors the unit will run when the tail moves to
    /// `tail`: from IQH to `tail`, stopping at the first it cannot decode
    /// (the unit stops there too, with IQE).
    fn shadow_queue(&self, st: &mut State<'h, M, A, I, P>, tail: Iqt) {
        if !self.status().contains(GlobalBits::QIE) {
            return;
        }
        let iqa = Iqa(self.emu_read64(offset::IQA));
        let (width, entries) = (iqa.width(), iqa.entries());
        let tail = tail.index(width);
        if tail >= entries {
            return;
        }
        let mut head = Iqh(self.emu_read64(offset::IQH)).index(width) % entries;
        let mem = self.emu.memory();
        for _ in 0..entries {
            if head == tail {
                break;
            }
            let mut slot = [0u8; 32];
            let bytes = &mut slot[..width.bytes()];
            let at = iqa.base().checked_add((head * width.bytes()) as u64);
            if at.is_none_or(|a| mem.read_bytes(a, bytes).is_err()) {
                break;
            }
            match Descriptor::read(width, bytes) {
                Ok(Descriptor::ContextCache(_)) => {
                    st.counters.invalidations_shadowed += 1;
                    self.sync_contexts(st);
                }
                Ok(Descriptor::Iotlb(inv)) => {
                    st.counters.invalidations_shadowed += 1;
                    self.sync_iotlb(st, inv.scope);
                }
                Ok(_) => {}
                Err(_) => break,
            }
            head = (head + 1) % entries;
        }
    }

    /// What a resynchronisation of this guest's shadow may use.
    fn sync<'s>(&'s self, counters: &'s mut ViommuCounters, room: &'s mut usize) -> Sync<'s, G> {
        Sync {
            guest_mem: self.emu.memory(),
            limits: &self.limits,
            counters,
            room,
            budget: self.config.scan_budget,
        }
    }

    /// An IOTLB invalidation of `scope`: resynchronises every shadowed
    /// domain it covers, over the range it covers.
    fn sync_iotlb(&self, st: &mut State<'h, M, A, I, P>, scope: IotlbScope) {
        let State { domains, counters, room, .. } = st;
        let mut sync = self.sync(counters, room);
        for d in domains.iter_mut() {
            let range = match scope {
                IotlbScope::Global => (0, u64::MAX),
                IotlbScope::Domain(id) if id == d.guest.domain => (0, u64::MAX),
                IotlbScope::Pages { domain, addr, order, .. } if domain == d.guest.domain => {
                    let first = addr.page_number();
                    (first, first.saturating_add(1u64 << order.min(52)))
                }
                _ => continue,
            };
            d.resync(&mut sync, range);
        }
    }

    /// A context-cache invalidation (any scope), or a change of the root
    /// table or of translation enable: re-reads every assigned device's
    /// guest context, moves devices between shadow domains in the host
    /// unit, and drops shadow domains no device uses any more.
    fn sync_contexts(&self, st: &mut State<'h, M, A, I, P>) {
        let te = self.status().contains(GlobalBits::TE);
        let mem = self.emu.memory();
        for i in 0..st.devices.len() {
            let dev = st.devices[i];
            let wanted = st.root.filter(|_| te).and_then(|root| {
                lookup_context(mem, root, dev.ids.guest, &self.limits)
                    .ok()
                    .filter(|c| c.translation_type == TranslationType::Untranslated)
            });
            if wanted == dev.attached {
                continue;
            }
            st.counters.context_changes += 1;
            let target = wanted.and_then(|ctx| self.domain_for(st, ctx));
            let to = target.map(|d| (st.domains[d].host_domain(), st.domains[d].mapper.table()));
            let result = self.host.lock().set_context(dev.ids.host, to);
            if result.is_err() {
                st.counters.host_errors += 1;
            }
            if let Some(old) = dev.attached
                && let Some(d) = st.domains.iter_mut().find(|d| d.guest == old)
            {
                d.devices -= 1;
            }
            if let Some(d) = target {
                st.domains[d].devices += 1;
            }
            st.devices[i].attached = target.and(wanted);
        }
        self.drop_unused(st);
    }

    /// The shadow domain of the guest context `ctx`, created and filled if
    /// there is none yet.
    fn domain_for(&self, st: &mut State<'h, M, A, I, P>, ctx: ContextInfo) -> Option<usize> {
        if let Some(i) = st.domains.iter().position(|d| d.guest == ctx) {
            return Some(i);
        }
        if st.domains.len() >= self.config.max_domains {
            st.counters.domain_drops += 1;
            return None;
        }
        let Ok((host_domain, table)) = self.host.lock().new_domain() else {
            st.counters.host_errors += 1;
            return None;
        };
        let host = SharedHost::new(self.host);
        let Ok(mut d) = ShadowDomain::new(ctx, host_domain, table, host, self.pinner.clone())
        else {
            st.counters.host_errors += 1;
            return None;
        };
        let State { counters, room, .. } = st;
        let mut sync = self.sync(counters, room);
        d.resync(&mut sync, (0, u64::MAX));
        st.domains.push(d);
        Some(st.domains.len() - 1)
    }

    /// Tears down the shadow domains no device is attached to.
    fn drop_unused(&self, st: &mut State<'h, M, A, I, P>) {
        let mut i = 0;
        while i < st.domains.len() {
            if st.domains[i].devices > 0 {
                i += 1;
                continue;
            }
            let mut d = st.domains.swap_remove(i);
            let State { counters, room, .. } = st;
            let mut sync = self.sync(counters, room);
            if d.clear(&mut sync) {
                self.host.lock().destroy(d.into_table());
            }
        }
    }
}

/// Trap-and-emulate: every guest access to the register page exits to the
/// hypervisor, which calls this.
impl<G, M, A, I, P> Mmio for &Viommu<'_, G, M, A, I, P>
where
    G: PhysMem,
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    P: PagePinner,
{
    fn read32(&self, offset: usize) -> u32 {
        self.read_register(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.write_register(offset, value)
    }
}

/// The sidecore's access to the unit: reads without side effects (and
/// without counting an access), writes as the guest's.
impl<G, M, A, I, P> crate::sidecore::Registers for Viommu<'_, G, M, A, I, P>
where
    G: PhysMem,
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    P: PagePinner,
{
    fn read(&self, off: usize) -> u32 {
        self.emu.read32(off)
    }

    fn write(&self, off: usize, value: u32) {
        self.write_register(off, value)
    }
}
