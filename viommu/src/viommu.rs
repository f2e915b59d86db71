//! The vIOMMU: a guest-visible VT-d unit ([`vtd_emu::Emulator`] over the
//! guest's RAM, caching mode on) whose [`Shadow`] hook keeps a host IOMMU
//! backend in step with the guest's invalidations.

use core::sync::atomic::{AtomicU64, Ordering};

use vtd_emu::{Access, Delivered, Emulator, Fault, InterruptFault};
use vtd_regs::irq::{Interrupt, MsiMessage};
use vtd_regs::regs::FaultType;
use vtd_regs::{Iova, Mmio, SourceId};

use crate::Error;
use crate::config::{Assignment, ViommuConfig};
use crate::counters::ViommuCounters;
use crate::guest_mem::GuestRam;
use crate::host::{HostIommu, Placed};
use crate::interrupts::{InterruptRoutes, NoInterruptRoutes};
use crate::shadow::{Shadow, placed};

/// The guest-visible unit of a vIOMMU: the software VT-d over the guest's
/// RAM `G`, with no caches of its own, telling the [`Shadow`] of backend
/// `B` and interrupt routes `R` what it executes.
pub type GuestUnit<G, B, R = NoInterruptRoutes> = Emulator<G, 0, 0, Shadow<B, R>>;

/// An emulated VT-d for one guest, over the guest's RAM `G`, shadowing into
/// the host IOMMU through the backend `B`.
///
/// `&Viommu` is the guest's register page under trap-and-emulate: it
/// implements [`Mmio`], one call per trapped access. The sidecore front end
/// ([`crate::sidecore`]) drives the same unit from a polling thread. Every
/// guest register access, queue fetch and resulting host operation runs
/// under the unit's lock: a `Viommu` is `Sync` when `G`, `B` and `R` are
/// `Send`.
///
/// With host interrupt routes `R` ([`Viommu::with_interrupts`]), the
/// guest's interrupt remapping table is shadowed too
/// ([`crate::interrupts`]); by default ([`NoInterruptRoutes`]) it is not.
pub struct Viommu<G: GuestRam, B: HostIommu, R: InterruptRoutes = NoInterruptRoutes> {
    unit: GuestUnit<G, B, R>,
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
        Viommu::with_interrupts(guest_mem, backend, NoInterruptRoutes, devices, config)
    }
}

impl<G: GuestRam, B: HostIommu, R: InterruptRoutes> Viommu<G, B, R> {
    /// [`Viommu::new`], with the guest's remapped interrupts shadowed into
    /// the host through `routes` ([`crate::interrupts`]). The guest's unit
    /// offers interrupt remapping if `config.unit` has ECAP.IR
    /// ([`vtd_emu::EmuConfig::with_interrupt_remapping`]).
    pub fn with_interrupts(
        guest_mem: G,
        backend: B,
        routes: R,
        devices: &[Assignment],
        config: ViommuConfig,
    ) -> Result<Self, Error> {
        let config = config.effective();
        let shadow =
            Shadow::new(backend, routes, devices, config).map_err(|_| Error::TooManyDevices)?;
        let unit = Emulator::with_hook(guest_mem, config.unit, shadow).map_err(Error::Config)?;
        Ok(Self { unit, accesses: AtomicU64::new(0) })
    }

    /// Runs `f` on the host interrupt routes, with the unit locked.
    pub fn with_routes<T>(&self, f: impl FnOnce(&mut R) -> T) -> T {
        self.unit.with_hook_mut(|s| f(&mut s.interrupts.routes))
    }

    /// Calls `f` with every host interrupt route the vIOMMU holds: the
    /// device, the guest interrupt index, the route as set.
    pub fn for_each_route(&self, f: impl FnMut(Assignment, u16, Interrupt)) {
        self.unit.with_hook_mut(|s| s.interrupts.for_each(&s.devices, f))
    }

    /// The guest-visible unit (its configuration, fault records, counters,
    /// memory).
    pub fn unit(&self) -> &GuestUnit<G, B, R> {
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
    pub fn with_backend<T>(&self, f: impl FnOnce(&mut B) -> T) -> T {
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
        let guest = self.guest_id(host)?;
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

    /// An interrupt of the assigned device the host knows as `host` that
    /// found no host route, reported to the guest: the guest's unit remaps
    /// `msi` (the message the guest gave the device) for the device's guest
    /// requester id, and records the fault the guest's table gives (22h
    /// not present, 24h reserved or posted, 26h source id, ... §5.1.4.1,
    /// in the fault recording registers with the index in FI bits 63:48,
    /// unless the entry's FPD suppresses it). `None` for a device not
    /// assigned to this guest; `Some(Ok(_))` when the guest's table does
    /// deliver it (the guest changed it without invalidating, or named a
    /// destination the VMM refused).
    pub fn report_blocked_interrupt(
        &self,
        host: SourceId,
        msi: MsiMessage,
    ) -> Option<Result<Delivered, InterruptFault>> {
        let guest = self.guest_id(host)?;
        Some(self.unit.remap_interrupt(guest, msi))
    }

    /// The guest's requester id of the device the host knows as `host`.
    fn guest_id(&self, host: SourceId) -> Option<SourceId> {
        let find = |s: &mut Shadow<B, R>| s.devices.iter().map(|d| d.ids).find(|a| a.host == host);
        Some(self.unit.with_hook_mut(find)?.guest)
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
impl<G: GuestRam, B: HostIommu, R: InterruptRoutes> Drop for Viommu<G, B, R> {
    fn drop(&mut self) {
        self.unit.hook_mut().shutdown();
    }
}

/// Trap-and-emulate: every guest access to the register page exits to the
/// hypervisor, which calls this.
impl<G: GuestRam, B: HostIommu, R: InterruptRoutes> Mmio for &Viommu<G, B, R> {
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
impl<G: GuestRam, B: HostIommu, R: InterruptRoutes> crate::sidecore::Registers for Viommu<G, B, R> {
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
