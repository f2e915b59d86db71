//! The nested vIOMMU: the guest's own first-stage tables, walked by the host
//! unit over a host second stage that maps all guest RAM (VT-d §3.8,
//! PGTT = 011b), beside the shadowing [`Viommu`](crate::Viommu).
//!
//! The guest sees a scalable-mode unit ([`NestedConfig`]: ECAP.SMTS and
//! FLTS, no caching mode, no second stage or pass-through of its own) and
//! drives it as it would hardware: it writes first-stage tables and PASID
//! entries in its RAM and posts PASID-cache and PASID-based IOTLB
//! invalidations (§6.5.2.2, §6.5.2.4). Its map is table writes only: no
//! exit, nothing for the vIOMMU to do. The vIOMMU learns what the unit
//! executes through its hook ([`vtd_emu::hook`]) and:
//!
//! - on a PASID-cache invalidation, a context-cache invalidation, a new
//!   root table or translation switched (the guest changed which table a
//!   device's PASID uses), reads the guest's scalable-mode context entry
//!   and PASID entry for each assigned device with the unit's own bounded,
//!   validating lookups (a hostile entry is a fault reason, never a panic
//!   or an unbounded read) and programs the device's host PASID entry as
//!   nested: the guest's first-stage pointer (a guest-physical address)
//!   over this guest's host second stage, tagged by a host domain id of
//!   its own for the guest's domain id ([`NestedIommu::set_nested`]);
//! - on a PASID-based IOTLB invalidation, forwards it to the host with the
//!   host domain id ([`NestedIommu::invalidate`]), before the guest's wait
//!   descriptor completes;
//! - never reads the guest's first-stage tables: the host unit walks them,
//!   each table address and each output address translated by the second
//!   stage, so a table or a page outside guest RAM faults in the second
//!   stage on the host.
//!
//! Refused, the device's host PASID entry then blocked (its DMA at that
//! PASID faults): a PASID entry whose PGTT is not first-stage (the guest's
//! unit offers no second stage, nesting or pass-through, so its own lookup
//! faults with 5Bh), any entry the lookup faults on (a PASID directory or
//! table outside guest RAM, reserved bits), a context entry whose RID_PASID
//! is not 0 (the host's requests without a PASID use PASID 0), translation
//! disabled (no pass-through is offered).
//!
//! The price: the second stage maps, and the backend pins, all guest RAM
//! for as long as the guest lives, whatever its device can reach: no
//! memory overcommit (the shadowing vIOMMU pins only what is mapped).
//! Intra-guest protection is the guest's own, as on hardware: an unmapped
//! page is unreachable once the guest's PASID-based invalidation
//! completed. Inter-guest protection is the second stage's: it maps
//! nothing but the guest's RAM.

#[cfg(feature = "alloc")]
pub mod native;

use heapless::Vec;
use vtd_emu::hook::{Change, Hook, Invalidation, Outcome, UnitView};
use vtd_emu::{EmuConfig, Emulator};
use vtd_regs::desc::{Pasid, PasidCacheScope, PasidIotlbInv, PasidIotlbScope};
use vtd_regs::{DomainId, IotlbScope, Mmio, PhysAddr, SourceId};
use vtd_tables::scalable::PasidTranslationType;
use vtd_tables::walk::{ScalableLimits, lookup_pasid, lookup_scalable_context};

use crate::Error;
use crate::config::Assignment;
use crate::guest_mem::GuestRam;
use crate::shadow::MAX_DEVICES;

#[cfg(feature = "alloc")]
pub use native::{NativeNested, NestedHost};

/// PASIDs of one guest the vIOMMU keeps nested on the host at once (beyond
/// them a PASID entry is refused, its device blocked at that PASID).
pub const MAX_NESTED_PASIDS: usize = 32;

/// The nested capability of a host IOMMU: what a backend does for a
/// [`NestedViommu`]. Optional beside [`HostIommu`](crate::HostIommu): the
/// native VT-d backend ([`NativeNested`]) and iommufd (a nested HWPT over
/// an IOAS holding all guest RAM, `IOMMU_HWPT_ALLOC` with the guest's
/// PASID entry as its data, `IOMMU_HWPT_INVALIDATE`) can nest; VFIO type1
/// cannot (it has no nested domain).
///
/// The backend owns the host second stage, which maps (and pins) all guest
/// RAM from its creation to its end; nothing here maps or unmaps.
pub trait NestedIommu {
    /// Why an operation failed.
    type Error: core::fmt::Debug;

    /// Makes `device`'s (host source id) requests at `pasid` translate
    /// nested: the guest's first-stage table at guest-physical `first`
    /// (5-level if `five_level`) over the guest's second stage, tagged by
    /// a host domain id of the backend's choice for the guest's domain id
    /// `domain`. When this returns `Ok` the host uses nothing older for
    /// them (the PASID-cache and IOTLB invalidations the change owes have
    /// completed).
    fn set_nested(
        &mut self,
        device: SourceId,
        pasid: Pasid,
        domain: DomainId,
        first: PhysAddr,
        five_level: bool,
    ) -> Result<(), Self::Error>;

    /// Blocks `device`'s requests at `pasid`, completed as for
    /// [`set_nested`](Self::set_nested). A device the backend never set up
    /// is blocked already.
    fn block(&mut self, device: SourceId, pasid: Pasid) -> Result<(), Self::Error>;

    /// Performs the guest's PASID-based IOTLB invalidation (§6.5.2.4) of
    /// `pasid` in the guest's domain `domain` with the host domain id:
    /// completed when this returns `Ok`.
    fn invalidate(
        &mut self,
        domain: DomainId,
        pasid: Pasid,
        scope: PasidIotlbScope,
    ) -> Result<(), Self::Error>;

    /// Drops every host translation of the guest (its global IOTLB
    /// invalidation).
    fn invalidate_all(&mut self) -> Result<(), Self::Error>;

    /// Guest pages the backend keeps pinned (all guest RAM).
    fn pinned_pages(&self) -> u64;
}

/// The guest-visible unit of a nested vIOMMU and its limits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NestedConfig {
    /// The guest-visible unit, as given; [`effective`](Self::effective)
    /// makes it scalable-mode first-stage only.
    pub unit: EmuConfig,
}

impl NestedConfig {
    /// [`EmuConfig::scalable`] as the guest's unit.
    pub const fn new() -> Self {
        Self { unit: EmuConfig::scalable() }
    }

    /// The guest's unit as the vIOMMU runs it: ECAP.SMTS and FLTS, no
    /// SLTS, NEST or PT (the guest gets no second stage of its own: its
    /// tables are the first stage of the host's nesting), caching mode off
    /// (the guest does not invalidate after a map, as on hardware), and no
    /// caches of the unit's own (the host unit translates the device).
    pub const fn effective(self) -> EmuConfig {
        let mut unit = self.unit.with_caching_mode(false).with_iotlb(0, 1).with_context_cache(0, 1);
        unit.ecap = unit
            .ecap
            .with_smts(true)
            .with_flts(true)
            .with_slts(false)
            .with_nest(false)
            .with_pass_through(false);
        unit
    }
}

impl Default for NestedConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What a nested vIOMMU did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NestedCounters {
    /// Guest register accesses (exits under trap-and-emulate).
    pub register_accesses: u64,
    /// Guest PASID entries read and programmed into the host as nested.
    pub nested: u64,
    /// Guest PASID entries refused (the device blocked at that PASID).
    pub refused: u64,
    /// PASID-based IOTLB invalidations forwarded to the host.
    pub forwarded: u64,
    /// Host operations that failed (the guest's invalidation retried).
    pub host_errors: u64,
}

/// A device and the PASIDs it has nested on the host.
#[derive(Debug)]
struct Device {
    ids: Assignment,
}

/// The hook of a nested vIOMMU's guest unit: programs and invalidates the
/// host from what the guest's unit executes.
pub struct NestedHook<H> {
    backend: H,
    devices: Vec<Device, MAX_DEVICES>,
    /// (guest source id, PASID) nested on the host now.
    nested: Vec<(SourceId, Pasid), MAX_NESTED_PASIDS>,
    counters: NestedCounters,
}

/// Why a guest PASID entry is refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Translation off, or a legacy-mode root table.
    NotScalable,
    /// The guest's lookup faulted (the entry is hostile or absent).
    Fault,
    /// PGTT other than first-stage, or RID_PASID not 0.
    Unsupported,
}

impl<H: NestedIommu> NestedHook<H> {
    /// The guest's first-stage table for `dev` at `pasid`: (domain, table,
    /// 5-level).
    fn guest_entry<G: GuestRam>(
        unit: &UnitView<'_, G>,
        dev: SourceId,
        pasid: Pasid,
    ) -> Result<(DomainId, PhysAddr, bool), Refusal> {
        let root = unit.scalable_root().ok_or(Refusal::NotScalable)?;
        let cfg = unit.config();
        let limits = ScalableLimits::new(cfg.cap, cfg.ecap, cfg.host_address_width.bits());
        let ctx = lookup_scalable_context(unit.memory(), root, dev, &limits)
            .map_err(|_| Refusal::Fault)?;
        if ctx.rid_pasid != Pasid::default() {
            return Err(Refusal::Unsupported);
        }
        let info =
            lookup_pasid(unit.memory(), &ctx, pasid, false, &limits).map_err(|_| Refusal::Fault)?;
        match (info.pgtt, info.first) {
            (PasidTranslationType::FirstStage, Some((table, five))) => {
                Ok((info.domain, table, five))
            }
            _ => Err(Refusal::Unsupported),
        }
    }

    /// Brings the host entry of device `i` at `pasid` in step with the
    /// guest's.
    fn sync<G: GuestRam>(
        &mut self,
        unit: &UnitView<'_, G>,
        i: usize,
        pasid: Pasid,
    ) -> Result<(), H::Error> {
        let ids = self.devices[i].ids;
        let key = (ids.guest, pasid);
        let at = self.nested.iter().position(|k| *k == key);
        let entry = Self::guest_entry(unit, ids.guest, pasid);
        let room = at.is_some() || !self.nested.is_full();
        match entry {
            Ok((domain, first, five)) if room => {
                self.backend.set_nested(ids.host, pasid, domain, first, five)?;
                self.counters.nested += 1;
                if at.is_none() {
                    // Room checked above.
                    let _ = self.nested.push(key);
                }
            }
            refused => {
                self.backend.block(ids.host, pasid)?;
                if !matches!(refused, Err(Refusal::NotScalable)) {
                    self.counters.refused += 1;
                }
                if let Some(at) = at {
                    self.nested.swap_remove(at);
                }
            }
        }
        Ok(())
    }

    /// Syncs `pasid` of every device.
    fn sync_pasid<G: GuestRam>(
        &mut self,
        unit: &UnitView<'_, G>,
        pasid: Pasid,
    ) -> Result<(), H::Error> {
        (0..self.devices.len()).try_for_each(|i| self.sync(unit, i, pasid))
    }

    /// Syncs every device's RID_PASID and every PASID nested now.
    fn sync_all<G: GuestRam>(&mut self, unit: &UnitView<'_, G>) -> Result<(), H::Error> {
        for i in 0..self.devices.len() {
            self.sync(unit, i, Pasid::default())?;
            let guest = self.devices[i].ids.guest;
            let mut n = 0;
            // Each sync keeps or removes the entry at `n`; bounded by the
            // list's capacity.
            while let Some(&(dev, pasid)) = self.nested.get(n) {
                n += 1;
                if dev == guest && pasid != Pasid::default() {
                    let before = self.nested.len();
                    self.sync(unit, i, pasid)?;
                    if self.nested.len() < before {
                        n -= 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn perform<G: GuestRam>(
        &mut self,
        unit: &UnitView<'_, G>,
        inv: Invalidation,
    ) -> Result<(), H::Error> {
        match inv {
            Invalidation::PasidCache(PasidCacheScope::Pasid { pasid, .. }) => {
                self.sync_pasid(unit, pasid)
            }
            Invalidation::PasidCache(_) | Invalidation::ContextCache(_) => self.sync_all(unit),
            Invalidation::PasidIotlb(PasidIotlbInv { domain, pasid, scope }) => {
                self.counters.forwarded += 1;
                self.backend.invalidate(domain, pasid, scope)
            }
            Invalidation::Iotlb(IotlbScope::Global) => self.backend.invalidate_all(),
            // Second-stage translations of the guest's own: it has none.
            _ => Ok(()),
        }
    }
}

impl<G: GuestRam, H: NestedIommu> Hook<G> for NestedHook<H> {
    fn invalidate(&mut self, unit: &UnitView<'_, G>, inv: Invalidation) -> Outcome {
        match self.perform(unit, inv) {
            Ok(()) => Outcome::Complete,
            Err(_) => {
                self.counters.host_errors += 1;
                Outcome::Stall
            }
        }
    }

    fn changed(&mut self, unit: &UnitView<'_, G>, change: Change) {
        if matches!(change, Change::Reset | Change::RootTable(_) | Change::Translation(_))
            && self.sync_all(unit).is_err()
        {
            self.counters.host_errors += 1;
        }
    }
}

/// The guest-visible unit of a nested vIOMMU.
pub type NestedUnit<G, H> = Emulator<G, 0, 0, NestedHook<H>>;

/// A nested vIOMMU for one guest over its RAM `G`, nesting through the
/// backend `H` (see the [module](self) docs).
///
/// `&NestedViommu` is the guest's register page under trap-and-emulate
/// ([`Mmio`], one call per trapped access); the sidecore
/// ([`crate::sidecore`]) drives it as it drives a [`Viommu`](crate::Viommu).
pub struct NestedViommu<G: GuestRam, H: NestedIommu> {
    unit: NestedUnit<G, H>,
    accesses: core::sync::atomic::AtomicU64,
}

impl<G: GuestRam, H: NestedIommu> NestedViommu<G, H> {
    /// A nested vIOMMU over the guest's RAM, for the `devices` assigned to
    /// the guest, through `backend`. Every device is blocked until the
    /// guest gives it a first-stage PASID entry.
    pub fn new(
        guest_mem: G,
        backend: H,
        devices: &[Assignment],
        config: NestedConfig,
    ) -> Result<Self, Error> {
        let mut list = Vec::new();
        for &ids in devices {
            list.push(Device { ids }).map_err(|_| Error::TooManyDevices)?;
        }
        let hook = NestedHook {
            backend,
            devices: list,
            nested: Vec::new(),
            counters: NestedCounters::default(),
        };
        let unit =
            Emulator::with_hook(guest_mem, config.effective(), hook).map_err(Error::Config)?;
        Ok(Self { unit, accesses: core::sync::atomic::AtomicU64::new(0) })
    }

    /// The guest-visible unit.
    pub fn unit(&self) -> &NestedUnit<G, H> {
        &self.unit
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> NestedCounters {
        let mut c = self.unit.with_hook_mut(|h| h.counters);
        c.register_accesses = self.accesses.load(core::sync::atomic::Ordering::Relaxed);
        c
    }

    /// Runs `f` on the backend, with the unit locked.
    pub fn with_backend<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        self.unit.with_hook_mut(|h| f(&mut h.backend))
    }

    /// Emulates a guest read of the 32-bit register at `off`.
    pub fn read_register(&self, off: usize) -> u32 {
        self.accesses.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        self.unit.read32(off)
    }

    /// Emulates a guest write of `value` to the 32-bit register at `off`.
    pub fn write_register(&self, off: usize, value: u32) {
        self.accesses.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        (&self.unit).write32(off, value)
    }

    /// Emulates a guest 64-bit read of the register at `off` (8-byte
    /// aligned): one access, one exit, as for [`Viommu`](crate::Viommu).
    pub fn read_register64(&self, off: usize) -> u64 {
        self.accesses.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        self.unit.read64(off)
    }

    /// Emulates a guest 64-bit write (a `writeq` of IQT) to the register at
    /// `off` (8-byte aligned): one access, both halves at once.
    pub fn write_register64(&self, off: usize, value: u64) {
        self.accesses.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        (&self.unit).write64(off, value)
    }
}

/// A guest that goes away: its devices are blocked on the host.
impl<G: GuestRam, H: NestedIommu> Drop for NestedViommu<G, H> {
    fn drop(&mut self) {
        let h = self.unit.hook_mut();
        while let Some((guest, pasid)) = h.nested.pop() {
            if let Some(d) = h.devices.iter().find(|d| d.ids.guest == guest) {
                let _ = h.backend.block(d.ids.host, pasid);
            }
        }
    }
}

/// Trap-and-emulate: every guest access to the register page exits.
impl<G: GuestRam, H: NestedIommu> Mmio for &NestedViommu<G, H> {
    fn read32(&self, offset: usize) -> u32 {
        self.read_register(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.write_register(offset, value)
    }

    fn read64(&self, offset: usize) -> u64 {
        self.read_register64(offset)
    }

    fn write64(&mut self, offset: usize, value: u64) {
        self.write_register64(offset, value)
    }
}

/// The sidecore's access to the unit, as for [`Viommu`](crate::Viommu).
impl<G: GuestRam, H: NestedIommu> crate::sidecore::Registers for NestedViommu<G, H> {
    fn read(&self, off: usize) -> u32 {
        self.unit.read32(off)
    }

    fn write(&self, off: usize, value: u32) {
        self.write_register(off, value)
    }

    fn read_into(&self, offs: &[usize], out: &mut [u32]) {
        self.unit.read_registers(offs, out)
    }
}
