//! The VMM's vIOMMU for the guest front ends ([`GuestIommu`]), one of two
//! ([`Mode`]):
//!
//! - shadowing (trap & emulate, sidecore): a [`viommu::Viommu`] (the
//!   guest-visible unit, caching mode on, over the guest's RAM) shadowing
//!   the guest's invalidations into a physical software unit (the native
//!   backend, [`viommu::Native`] over a [`viommu::Host`] driving a
//!   `vtd_emu::Emulator`, caching mode off) on simulated host memory;
//! - nested: a [`NestedViommu`] (the guest-visible unit in scalable mode
//!   with first-stage translation, caching mode off) programming the
//!   physical unit, in scalable mode with nesting, to walk the guest's own
//!   first-stage tables over a second stage mapping all guest RAM
//!   ([`NativeNested`] over a [`NestedHost`]), and forwarding the guest's
//!   PASID-based invalidations to it.
//!
//! Host-physical memory ([`HostMemory`]) is the host's table memory
//! (`[0, HOST_TABLES)`, a [`HeapMemory`]) and the guest's RAM, placed at
//! host-physical [`GUEST_RAM_HPA`] by a [`GuestLayout`]: the vIOMMU reads
//! the guest's tables and queue through that layout, pins guest pages
//! (GPA -> HPA) with a counting [`GuestPinner`], and the NIC's DMA is
//! translated by the physical unit for the NIC's host-side source id
//! ([`HOST_NIC`]) and written at the host-physical address it gives (a
//! blocked one reported to the shadowing vIOMMU's unit, as a hypervisor
//! does on a fault of its own unit). The nested backend pins all guest RAM
//! when it is built; the shadowing one pins the pages the guest maps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use invalidation::QueuedInvalidator;
use viommu::nested::{NativeNested, NestedConfig, NestedHost, NestedIommu, NestedViommu};
use viommu::sidecore::Registers;
use viommu::{
    Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Native, Viommu, ViommuConfig,
};
use viommu_eval_driver::layout::NIC;
use vtd_emu::{Access, EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
use vtd_regs::regs::QueueSize;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{DomainId, Iova, MemError, Mmio, PhysAddr, PhysMem, RemappingUnit, SourceId};
use vtd_tables::{ContextManager, ScalableContextManager, TableConfig};

use crate::measurement::PinCounts;

/// Host-physical address of guest-physical 0.
pub const GUEST_RAM_HPA: u64 = 1 << 30;
/// The host's table memory: `[0, HOST_TABLES)` host-physical (the root
/// table, context tables, domain tables and the host's invalidation
/// queue; the frames come from 4 KiB up).
pub const HOST_TABLES: u64 = 4 << 20;
/// The NIC's source id on the host (the guest sees it as
/// [`viommu_eval_driver::layout::NIC`], 00:01.0).
pub const HOST_NIC: SourceId = SourceId::from_raw(0x0300);

/// Host-physical memory: the host's table memory, and the guest's RAM at
/// [`GUEST_RAM_HPA`]. An access must lie wholly in one of them.
pub struct HostMemory<R> {
    tables: HeapMemory,
    ram: R,
    ram_size: u64,
}

impl<R: PhysMem> HostMemory<R> {
    /// Host memory around the guest RAM `ram` of `ram_size` bytes.
    #[must_use]
    pub fn new(ram: R, ram_size: u64) -> Self {
        Self { tables: HeapMemory::new(HOST_TABLES as usize), ram, ram_size }
    }

    /// Where `[addr, addr + len)` is: in the tables (`Ok(None)`) or in the
    /// guest RAM at that guest-physical address.
    fn route(&self, addr: PhysAddr, len: usize) -> Result<Option<PhysAddr>, MemError> {
        let err = MemError::OutOfRange { addr, len };
        let end = addr.as_u64().checked_add(len as u64).ok_or(err)?;
        if end <= HOST_TABLES {
            Ok(None)
        } else if addr.as_u64() >= GUEST_RAM_HPA && end - GUEST_RAM_HPA <= self.ram_size {
            Ok(Some(PhysAddr::new(addr.as_u64() - GUEST_RAM_HPA)))
        } else {
            Err(err)
        }
    }
}

impl<R: PhysMem> PhysMem for HostMemory<R> {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        match self.route(addr, 8)? {
            None => self.tables.read_u64(addr),
            Some(gpa) => self.ram.read_u64(gpa),
        }
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        match self.route(addr, 8)? {
            None => self.tables.write_u64(addr, value),
            Some(gpa) => self.ram.write_u64(gpa, value),
        }
    }

    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        match self.route(addr, 4)? {
            None => self.tables.read_u32(addr),
            Some(gpa) => self.ram.read_u32(gpa),
        }
    }

    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        match self.route(addr, 4)? {
            None => self.tables.write_u32(addr, value),
            Some(gpa) => self.ram.write_u32(gpa, value),
        }
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        match self.route(addr, buf.len())? {
            None => self.tables.read_bytes(addr, buf),
            Some(gpa) => self.ram.read_bytes(gpa, buf),
        }
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        match self.route(addr, data.len())? {
            None => self.tables.write_bytes(addr, data),
            Some(gpa) => self.ram.write_bytes(gpa, data),
        }
    }
}

/// The physical unit.
pub type HostEmu<'a, R> = Emulator<&'a HostMemory<R>>;
/// The host's table frames.
pub type HostFrames<'a, R> = SimFrameAllocator<&'a HostMemory<R>>;
/// The physical unit's invalidator.
pub type HostInv<'a, R> = QueuedInvalidator<&'a HostEmu<'a, R>, &'a HostMemory<R>>;
/// The physical unit every guest's backend shares.
pub type PhysicalHost<'a, R> = Host<&'a HostMemory<R>, &'a HostFrames<'a, R>, HostInv<'a, R>>;
/// The guest's backend: the physical unit, pinning through a
/// [`GuestPinner`].
pub type Backend<'a, R> =
    Native<&'a HostMemory<R>, &'a HostFrames<'a, R>, HostInv<'a, R>, GuestPinner>;
/// The guest's shadowing vIOMMU.
pub type Vmmu<'a, R> = Viommu<GuestMemory<&'a HostMemory<R>>, Backend<'a, R>>;
/// The nested vIOMMU's backend: the physical unit, all guest RAM pinned
/// through a [`GuestPinner`].
pub type NestedBackend<'a, R> =
    NativeNested<&'a HostMemory<R>, &'a HostFrames<'a, R>, HostInv<'a, R>, GuestPinner>;
/// The guest's nested vIOMMU.
pub type NestedVmmu<'a, R> = NestedViommu<GuestMemory<&'a HostMemory<R>>, NestedBackend<'a, R>>;

/// Which vIOMMU the guest gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The shadowing vIOMMU. With `pass_through` the guest unit offers
    /// pass-through ([`ViommuConfig::pass_through`]): with translation off
    /// (the policy *none*) the NIC reaches all guest RAM through an
    /// identity-mapped host domain.
    Shadow {
        /// ECAP.PT offered.
        pass_through: bool,
    },
    /// The nested vIOMMU (see the [module](self) docs).
    Nested,
}

/// The guest's vIOMMU, either kind: its register interface (`&GuestIommu`
/// is [`Mmio`] for trap-and-emulate, `GuestIommu` is [`Registers`] for a
/// sidecore), its pins, and the most pages it had pinned when the NIC
/// reached through it.
pub struct GuestIommu<'a, R: PhysMem> {
    kind: Kind<'a, R>,
    pinned_peak: AtomicU64,
}

/// The two vIOMMUs (boxed: each holds its unit's registers and caches
/// inline, about 10 KiB).
pub enum Kind<'a, R: PhysMem> {
    /// Shadowing.
    Shadow(Box<Vmmu<'a, R>>),
    /// Nested.
    Nested(Box<NestedVmmu<'a, R>>),
}

impl<'a, R: PhysMem> GuestIommu<'a, R> {
    /// Which vIOMMU it is.
    #[must_use]
    pub fn kind(&self) -> &Kind<'a, R> {
        &self.kind
    }

    /// The guest-visible unit's configuration.
    #[must_use]
    pub fn config(&self) -> EmuConfig {
        match &self.kind {
            Kind::Shadow(v) => v.unit().config(),
            Kind::Nested(v) => v.unit().config(),
        }
    }

    /// Pins and unpins of guest pages so far (the nested vIOMMU pins all
    /// guest RAM before the guest runs, and nothing after).
    #[must_use]
    pub fn pins(&self) -> PinCounts {
        match &self.kind {
            Kind::Shadow(v) => PinCounts::of(v.counters()),
            Kind::Nested(_) => PinCounts::default(),
        }
    }

    /// Guest pages pinned now.
    #[must_use]
    pub fn pinned_pages(&self) -> u64 {
        match &self.kind {
            Kind::Shadow(v) => v.with_backend(|b| b.pinner().pinned_pages() as u64),
            Kind::Nested(v) => v.with_backend(|b| b.pinned_pages()),
        }
    }

    /// The most guest pages pinned at a DMA of the NIC ([`Rig::dma`]).
    #[must_use]
    pub fn pinned_peak(&self) -> u64 {
        self.pinned_peak.load(Ordering::Relaxed)
    }

    /// A DMA the physical unit blocked, reported to the guest's unit (the
    /// shadowing vIOMMU records the fault the guest's tables give; the
    /// nested vIOMMU does not model fault forwarding: the physical unit
    /// records it).
    fn report_host_fault(&self, iova: Iova, access: Access) {
        if let Kind::Shadow(v) = &self.kind {
            v.report_host_fault(HOST_NIC, iova, access);
        }
    }
}

/// Trap-and-emulate: each guest access to the register page.
impl<R: PhysMem> Mmio for &GuestIommu<'_, R> {
    fn read32(&self, offset: usize) -> u32 {
        match &self.kind {
            Kind::Shadow(v) => v.read_register(offset),
            Kind::Nested(v) => v.read_register(offset),
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        match &self.kind {
            Kind::Shadow(v) => v.write_register(offset, value),
            Kind::Nested(v) => v.write_register(offset, value),
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        match &self.kind {
            Kind::Shadow(v) => v.read_register64(offset),
            Kind::Nested(v) => v.read_register64(offset),
        }
    }

    fn write64(&mut self, offset: usize, value: u64) {
        match &self.kind {
            Kind::Shadow(v) => v.write_register64(offset, value),
            Kind::Nested(v) => v.write_register64(offset, value),
        }
    }
}

/// The sidecore's access to the unit.
impl<R: PhysMem> Registers for GuestIommu<'_, R> {
    fn read(&self, off: usize) -> u32 {
        match &self.kind {
            Kind::Shadow(v) => v.read(off),
            Kind::Nested(v) => v.read(off),
        }
    }

    fn write(&self, off: usize, value: u32) {
        match &self.kind {
            Kind::Shadow(v) => v.write(off, value),
            Kind::Nested(v) => v.write(off, value),
        }
    }

    fn read_into(&self, offs: &[usize], out: &mut [u32]) {
        match &self.kind {
            Kind::Shadow(v) => v.read_into(offs, out),
            Kind::Nested(v) => v.read_into(offs, out),
        }
    }
}

/// What a front end gets: the vIOMMU (its register interface, counters and
/// pinner), the physical unit and host memory (for the NIC's DMA).
pub struct Rig<'r, 'a, R: PhysMem> {
    /// The guest's vIOMMU.
    pub viommu: &'r GuestIommu<'a, R>,
    /// The physical unit.
    pub host_unit: &'r HostEmu<'a, R>,
    /// Host-physical memory.
    pub mem: &'a HostMemory<R>,
}

impl<R: PhysMem> Clone for Rig<'_, '_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: PhysMem> Copy for Rig<'_, '_, R> {}

impl<R: PhysMem> Rig<'_, '_, R> {
    /// The NIC reading or writing at `iova`: the physical unit's
    /// translation for the NIC's host source id (a fault is also reported
    /// to the guest's unit). Notes the guest pages pinned at the time
    /// ([`GuestIommu::pinned_peak`]).
    #[must_use]
    pub fn dma(&self, iova: Iova, access: Access) -> Option<PhysAddr> {
        let hpa = self.host_unit.translate(HOST_NIC, iova, access);
        if hpa.is_err() {
            self.viommu.report_host_fault(iova, access);
        }
        self.viommu.pinned_peak.fetch_max(self.viommu.pinned_pages(), Ordering::Relaxed);
        hpa.ok()
    }
}

/// Builds the physical unit and the guest's vIOMMU of `mode` around the
/// guest RAM `ram` of `ram_size` bytes and runs `f` with them.
pub fn with_viommu<R: PhysMem, T>(
    ram: R,
    ram_size: u64,
    mode: Mode,
    f: impl for<'r, 'a> FnOnce(Rig<'r, 'a, R>) -> T,
) -> Result<T, String> {
    let mem = HostMemory::new(ram, ram_size);
    let m = &mem;
    let frames = SimFrameAllocator::new(m, PhysAddr::new(0x1000), PhysAddr::new(HOST_TABLES));
    let host_config = match mode {
        Mode::Shadow { .. } => EmuConfig::qemu(),
        Mode::Nested => EmuConfig::scalable(),
    };
    let emu: HostEmu<'_, R> = Emulator::new(m, host_config).map_err(|e| e.to_string())?;
    let unit = RemappingUnit::new(&emu).map_err(|e| format!("host unit: {e}"))?;
    let tables = TableConfig::from_cap(unit.cap(), 39).map_err(|e| e.to_string())?;
    let qs = QueueSize::from_order(0).ok_or("queue size")?;
    let layout = GuestLayout::new(PhysAddr::new(GUEST_RAM_HPA), ram_size);
    let devices = [Assignment { guest: NIC, host: HOST_NIC }];
    let pinner = GuestPinner::new(layout);
    let guest_mem = GuestMemory::new(m, layout);
    let kind = match mode {
        Mode::Shadow { pass_through } => {
            let contexts = ContextManager::new(m, &frames).map_err(|e| e.to_string())?;
            let inv =
                QueuedInvalidator::enable_remapping(unit, contexts.root_table(), m, &frames, qs)
                    .map_err(|e| format!("host unit: {e}"))?;
            let host = Arc::new(Host::new(m, &frames, contexts, inv, tables, DomainId::new(1)));
            let config = ViommuConfig { pass_through, ..ViommuConfig::qemu() };
            let viommu = Viommu::new(guest_mem, Native::new(host, pinner), &devices, config)
                .map_err(|e| format!("vIOMMU: {e}"))?;
            Kind::Shadow(Box::new(viommu))
        }
        Mode::Nested => {
            let host_err = |e: invalidation::Error| format!("host unit: {e}");
            let mut inv =
                QueuedInvalidator::new(unit, m, &frames, qs).map_err(|r| host_err(r.error))?;
            let contexts = ScalableContextManager::new(m, &frames).map_err(|e| e.to_string())?;
            inv.unit()
                .set_root_table(contexts.root_table(), TranslationTableMode::Scalable)
                .map_err(|e| format!("host unit: {e}"))?;
            // The unit was off: nothing cached to invalidate.
            inv.unit().enable_translation().map_err(|e| format!("host unit: {e}"))?;
            let host =
                Arc::new(NestedHost::new(m, &frames, contexts, inv, tables, DomainId::new(1)));
            let ram = [PhysAddr::ZERO..PhysAddr::new(ram_size)];
            let backend =
                NativeNested::new(host, pinner, ram).map_err(|e| format!("host: {e:?}"))?;
            let viommu = NestedViommu::new(guest_mem, backend, &devices, NestedConfig::new())
                .map_err(|e| format!("nested vIOMMU: {e}"))?;
            Kind::Nested(Box::new(viommu))
        }
    };
    let viommu = GuestIommu { kind, pinned_peak: AtomicU64::new(0) };
    Ok(f(Rig { viommu: &viommu, host_unit: &emu, mem: m }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_memory_routes_tables_and_guest_ram_and_nothing_else() {
        let ram = HeapMemory::new(0x4000);
        let host = HostMemory::new(&ram, 0x4000);
        host.write_u64(PhysAddr::new(GUEST_RAM_HPA + 0x1008), 7).unwrap();
        assert_eq!(ram.read_u64(PhysAddr::new(0x1008)), Ok(7));
        host.write_u64(PhysAddr::new(0x1008), 9).unwrap();
        assert_eq!(host.read_u64(PhysAddr::new(0x1008)), Ok(9));
        assert_eq!(ram.read_u64(PhysAddr::new(0x1008)), Ok(7));
        for bad in [HOST_TABLES - 4, HOST_TABLES, GUEST_RAM_HPA - 8, GUEST_RAM_HPA + 0x4000] {
            assert!(host.read_u64(PhysAddr::new(bad)).is_err(), "{bad:#x}");
        }
        assert!(host.write_bytes(PhysAddr::new(GUEST_RAM_HPA + 0x3ff0), &[0; 17]).is_err());
    }

    #[test]
    fn before_the_guest_attaches_it_the_nic_is_blocked() {
        let ram = HeapMemory::new(1 << 20);
        for mode in [Mode::Shadow { pass_through: false }, Mode::Nested] {
            with_viommu(&ram, 1 << 20, mode, |rig| {
                assert_eq!(rig.dma(Iova::new(0x5000), Access::Write), None, "{mode:?}");
                assert_eq!(rig.viommu.pins(), PinCounts::default());
            })
            .unwrap();
        }
    }

    /// The policy *none*: with pass-through offered and translation off,
    /// the NIC reaches every guest page at its host address.
    #[test]
    fn with_pass_through_and_translation_off_the_nic_reaches_all_guest_ram() {
        let ram = HeapMemory::new(1 << 20);
        with_viommu(&ram, 1 << 20, Mode::Shadow { pass_through: true }, |rig| {
            assert!(RemappingUnit::new(rig.viommu).expect("guest unit").ecap().pass_through());
            for gpa in [8, 0x5008, (1 << 20) - 8] {
                let hpa = PhysAddr::new(GUEST_RAM_HPA + gpa);
                assert_eq!(rig.dma(Iova::new(gpa), Access::Write), Some(hpa), "{gpa:#x}");
            }
            assert_eq!(rig.dma(Iova::new(1 << 20), Access::Read), None, "beyond guest RAM");
        })
        .unwrap();
    }

    /// Where [`map_then_unmap`] is.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Step {
        Up,
        Mapped,
        Unmapped,
    }

    /// The evaluation's driver on the vIOMMU of `mode`, policy secure: a
    /// mapped buffer is reachable through the physical unit at its host
    /// address; after the strict unmap it is blocked. Runs `check` (with
    /// the buffer) after the bring-up, the map and the unmap.
    fn map_then_unmap(
        mode: Mode,
        check: impl Fn(&GuestIommu<'_, &HeapMemory>, PhysAddr, Step) + Sync,
    ) {
        use viommu_eval_driver::{Driver, Params, Policy, bringup, layout, tsc};
        use vtd_regs::PollBudget;
        // The driver's inline tables want a big stack in a debug build.
        let run = || {
            let ram = HeapMemory::new(layout::RAM_SIZE as usize);
            let frames = bringup::frames();
            let params = Params {
                policy: Policy::Secure,
                buffers: 1,
                batch: 1,
                quota: 1,
                time_limit_us: 1,
                work_cycles: 0,
                tsc_khz: 2_000_000,
                ..Params::from_words(&[0; viommu_eval_driver::params::PARAM_WORDS])
                    .expect("the receive workload")
            };
            with_viommu(&ram, layout::RAM_SIZE, mode, |rig| {
                let config = params.mapper_config().expect("an IOMMU policy");
                let clock = tsc::clock(params.tsc_khz);
                let budget = PollBudget::new(1 << 20);
                let mut d = Driver::bring_up(rig.viommu, &ram, &frames, budget, config, clock)
                    .expect("bring-up");
                let buf = PhysAddr::new(layout::BUFFERS + 0x3000);
                check(rig.viommu, buf, Step::Up);
                let write = bringup::device_write(Some(&d.mapper));
                let iova = d.mapper.map(buf, 4096, write).expect("map");
                check(rig.viommu, buf, Step::Mapped);
                let hpa = PhysAddr::new(GUEST_RAM_HPA + buf.as_u64());
                assert_eq!(rig.dma(iova, Access::Write), Some(hpa));
                d.mapper.unmap(iova, 4096).expect("unmap");
                assert_eq!(rig.dma(iova, Access::Write), None);
                check(rig.viommu, buf, Step::Unmapped);
            })
            .expect("rig");
        };
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn_scoped(scope, run)
                .expect("thread")
                .join()
                .expect("the test thread");
        });
    }

    /// Shadowing: the mapped page is pinned while mapped, unpinned after
    /// the unmap, and the blocked DMA is recorded in the guest unit.
    #[test]
    fn the_nic_reaches_through_the_physical_unit_what_the_guest_mapped() {
        map_then_unmap(Mode::Shadow { pass_through: false }, |viommu, buf, step| {
            let Kind::Shadow(v) = viommu.kind() else { panic!("shadowing") };
            let c = viommu.pins();
            let mapped = step == Step::Mapped;
            let expected = match step {
                Step::Up => (0, 0),
                Step::Mapped => (1, 0),
                Step::Unmapped => (1, 1),
            };
            assert_eq!((c.pins, c.unpins), expected);
            assert_eq!(v.with_backend(|b| b.pinner().pins(buf)), u32::from(mapped));
            assert_eq!(viommu.pinned_pages(), u64::from(mapped));
            if step == Step::Unmapped {
                assert!(v.unit().fault_status().ppf(), "fault recorded in the guest unit");
            }
        });
    }

    /// Nested: the driver brings the unit up in scalable mode with a
    /// first-stage table; all guest RAM is pinned throughout; the map
    /// costs no register access, the strict unmap's PASID-based IOTLB
    /// invalidation is forwarded to the host.
    #[test]
    fn nested_the_guests_first_stage_map_costs_no_exit() {
        use viommu_eval_driver::layout::RAM_SIZE;
        let up = std::sync::Mutex::new(None);
        map_then_unmap(Mode::Nested, |viommu, _, step| {
            let Kind::Nested(v) = viommu.kind() else { panic!("nested") };
            assert_eq!(viommu.pinned_pages(), RAM_SIZE / 4096);
            assert_eq!(viommu.pins(), PinCounts::default());
            let c = v.counters();
            assert_eq!(c.refused, 0);
            assert!(c.nested >= 1, "the guest's RID_PASID entry is nested on the host");
            match step {
                Step::Up => *up.lock().expect("lock") = Some(c),
                Step::Mapped => {
                    let up = up.lock().expect("lock").expect("brought up");
                    assert_eq!(c.register_accesses, up.register_accesses, "the map exits not");
                    assert_eq!(c.forwarded, up.forwarded);
                }
                Step::Unmapped => {
                    let up = up.lock().expect("lock").expect("brought up");
                    assert!(
                        c.forwarded > up.forwarded,
                        "the unmap's invalidation reached the host"
                    );
                }
            }
        });
    }
}
