//! The vIOMMU: a guest-visible VT-d unit ([`vtd_emu::Emulator`] over the
//! guest's RAM, caching mode on) whose [`Shadow`] hook keeps a host IOMMU
//! backend in step with the guest's invalidations.

use core::sync::atomic::{AtomicU64, Ordering};

use vtd_emu::{Access, Emulator, Fault};
use vtd_regs::regs::FaultType;
use vtd_regs::{Iova, Mmio, SourceId};

use crate::Error;
use crate::config::{Assignment, ViommuConfig};
use crate::counters::ViommuCounters;
use crate::guest_mem::GuestRam;
use crate::host::{HostIommu, Placed};
use crate::shadow::{Shadow, placed};

/// The guest-visible unit of a vIOMMU: the software VT-d over the guest's
/// RAM `G`, with no caches of its own, telling the [`Shadow`] of backend
/// `B` what it executes.
pub type GuestUnit<G, B> = Emulator<G, 0, 0, Shadow<B>>;

/// An emulated VT-d for one guest, over the guest's RAM `G`, shadowing into
/// the host IOMMU through the backend `B`.
///
/// `&Viommu` is the guest's register page under trap-and-emulate: it
/// implements [`Mmio`], one call per trapped access. The sidecore front end
/// ([`crate::sidecore`]) drives the same unit from a polling thread. Every
/// guest register access, queue fetch and resulting host operation runs
/// under the unit's lock: a `Viommu` is `Sync` when `G` and `B` are `Send`.
pub struct Viommu<G: GuestRam, B: HostIommu> {
    unit: GuestUnit<G, B>,
    accesses: AtomicU64,
}

impl<G: GuestRam, B: HostIommu> Viommu<G, B> {
    /// A vIOMMU over the guest's RAM `guest_mem`, for the `devices`
    /// assigned to the guest, shadowing through `backend`. Every device is
    /// blocked until the guest attaches it (or, with
    /// [`ViommuConfig::pass_through`], reaches all guest RAM until the guest
    /// enables translation).
    pub fn new(
        guest_mem: G,
        backend: B,
        devices: &[Assignment],
        config: ViommuConfig,
    ) -> Result<Self, Error> {
        let config = config.effective();
        let shadow = Shadow::new(backend, devices, config).map_err(|_| Error::TooManyDevices)?;
        let unit = Emulator::with_hook(guest_mem, config.unit, shadow).map_err(Error::Config)?;
        Ok(Self { unit, accesses: AtomicU64::new(0) })
    }

    /// The guest-visible unit (its configuration, fault records, counters,
    /// memory).
    pub fn unit(&self) -> &GuestUnit<G, B> {
        &self.unit
    }

    /// The configuration, as the vIOMMU runs it (caching mode on).
    pub fn config(&self) -> ViommuConfig {
        self.unit.with_hook_mut(|s| s.config)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> ViommuCounters {
        let mut c = self.unit.with_hook_mut(|s| s.counters);
        c.register_accesses = self.accesses.load(Ordering::Relaxed);
        c
    }

    /// Runs `f` on the backend (its pinner, its counters), with the unit
    /// locked.
    pub fn with_backend<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        self.unit.with_hook_mut(|s| f(&mut s.backend))
    }

    /// The assignment of the device the guest knows as `guest`.
    pub fn assignment(&self, guest: SourceId) -> Option<Assignment> {
        self.unit.with_hook_mut(|s| s.devices.iter().map(|d| d.ids).find(|a| a.guest == guest))
    }

    /// Calls `f` with each shadow domain's host domain (to inspect what a
    /// backend built).
    pub fn for_each_domain(&self, mut f: impl FnMut(&B::Domain)) {
        self.unit.with_hook_mut(|s| s.domains.iter().for_each(|d| f(&d.host)))
    }

    /// Calls `f` with every range mapped in the host, in each shadow
    /// domain's IOVA order.
    pub fn for_each_mapping(&self, mut f: impl FnMut(Placed)) {
        self.unit.with_hook_mut(|s| {
            for d in s.domains.iter() {
                d.extents.iter().for_each(|e| f(placed(*e)));
            }
        })
    }

    /// A DMA request of the assigned device the host knows as `host` that
    /// the host IOMMU blocked, reported to the guest: the guest's unit walks
    /// the guest's tables for it and records the fault they give in its
    /// fault recording registers (§7.2). If the guest's tables allow the
    /// request to a page of its RAM (the guest mapped it without
    /// invalidating, which caching mode forbids, or beyond its quota), the
    /// unit records a not-present fault, as a unit that cached the absent
    /// entry does (§6.1). Returns the fault the guest sees; `None` for a
    /// device not assigned to this guest, or a request the guest's tables
    /// send outside its RAM (on hardware it would end on the bus, not in a
    /// translation fault).
    ///
    /// Whatever the host IOMMU is, the hypervisor calls this when it
    /// learns of a blocked request (a fault record of its own unit, a
    /// device error): the vIOMMU does not need to see the host's faults
    /// itself.
    pub fn report_host_fault(&self, host: SourceId, iova: Iova, access: Access) -> Option<Fault> {
        let find = |s: &mut Shadow<B>| s.devices.iter().map(|d| d.ids).find(|a| a.host == host);
        let guest = self.unit.with_hook_mut(find)?.guest;
        match self.unit.translate(guest, iova, access) {
            Err(fault) => Some(fault),
            Ok(gpa) if self.unit.memory().ram_at(gpa).is_some() => {
                let kind = match access {
                    Access::Read => FaultType::Read,
                    Access::Write => FaultType::Write,
                };
                let fault = Fault { source: guest, addr: iova, reason: access.denied(), kind };
                self.unit.record_fault(&fault);
                Some(fault)
            }
            Ok(_) => None,
        }
    }

    /// Emulates a guest read of the 32-bit register at `off`.
    pub fn read_register(&self, off: usize) -> u32 {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        self.unit.read32(off)
    }

    /// Emulates a guest write of `value` to the 32-bit register at `off`.
    pub fn write_register(&self, off: usize, value: u32) {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        (&self.unit).write32(off, value)
    }

    /// Emulates a guest 64-bit read of the register at `off` (8-byte
    /// aligned): one access, as a 64-bit load from the register page is one
    /// VM exit.
    pub fn read_register64(&self, off: usize) -> u64 {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        self.unit.read64(off)
    }

    /// Emulates a guest 64-bit write of `value` to the register at `off`
    /// (8-byte aligned): one access, as a 64-bit store to the register page
    /// (Linux writes IQT, IQA and RTADDR with one `writeq`) is one VM exit;
    /// the unit takes both halves at once.
    pub fn write_register64(&self, off: usize, value: u64) {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        (&self.unit).write64(off, value)
    }
}

/// A guest that goes away: its devices are blocked and its host domains
/// emptied (each unmap completed) and destroyed.
impl<G: GuestRam, B: HostIommu> Drop for Viommu<G, B> {
    fn drop(&mut self) {
        self.unit.hook_mut().shutdown();
    }
}

/// Trap-and-emulate: every guest access to the register page exits to the
/// hypervisor, which calls this.
impl<G: GuestRam, B: HostIommu> Mmio for &Viommu<G, B> {
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

/// The sidecore's access to the unit: reads without side effects (and
/// without counting an access), writes as the guest's.
impl<G: GuestRam, B: HostIommu> crate::sidecore::Registers for Viommu<G, B> {
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
