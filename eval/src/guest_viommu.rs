//! The VMM's vIOMMU for the trap-and-emulate and sidecore front ends: a
//! [`viommu::Viommu`] (the guest-visible unit, caching mode on, over the
//! guest's RAM) shadowing the guest's invalidations into a physical
//! software unit (the native backend, [`viommu::Native`] over a
//! [`viommu::Host`] driving a `vtd_emu::Emulator`, caching mode off) on
//! simulated host memory.
//!
//! Host-physical memory ([`HostMemory`]) is the host's table memory
//! (`[0, HOST_TABLES)`, a [`HeapMemory`]) and the guest's RAM, placed at
//! host-physical [`GUEST_RAM_HPA`] by a [`GuestLayout`]: the vIOMMU reads
//! the guest's tables and queue through that layout, pins guest pages
//! (GPA -> HPA) with a counting [`GuestPinner`], and the NIC's DMA is
//! translated by the physical unit for the NIC's host-side source id
//! ([`HOST_NIC`]) and written at the host-physical address it gives (a
//! blocked one reported to the guest's unit, as a hypervisor does on a
//! fault of its own unit).

use std::sync::Arc;

use invalidation::QueuedInvalidator;
use viommu::{
    Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Native, Viommu, ViommuConfig,
};
use viommu_eval_driver::layout::NIC;
use vtd_emu::{Access, EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
use vtd_regs::regs::QueueSize;
use vtd_regs::{DomainId, Iova, MemError, PhysAddr, PhysMem, RemappingUnit, SourceId};
use vtd_tables::{ContextManager, TableConfig};

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
/// The guest's vIOMMU.
pub type Vmmu<'a, R> = Viommu<GuestMemory<&'a HostMemory<R>>, Backend<'a, R>>;

/// What a front end gets: the vIOMMU (its register interface, counters and
/// pinner), the physical unit and host memory (for the NIC's DMA).
pub struct Rig<'r, 'a, R: PhysMem> {
    /// The guest's vIOMMU.
    pub viommu: &'r Vmmu<'a, R>,
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
    /// to the guest's unit).
    #[must_use]
    pub fn dma(&self, iova: Iova, access: Access) -> Option<PhysAddr> {
        let hpa = self.host_unit.translate(HOST_NIC, iova, access);
        if hpa.is_err() {
            self.viommu.report_host_fault(HOST_NIC, iova, access);
        }
        hpa.ok()
    }
}

/// Builds the physical unit and the guest's vIOMMU around the guest RAM
/// `ram` of `ram_size` bytes and runs `f` with them. With `pass_through`
/// the guest unit offers pass-through ([`ViommuConfig::pass_through`]):
/// with translation off (the policy *none*) the NIC reaches all guest RAM
/// through an identity-mapped host domain.
pub fn with_viommu<R: PhysMem, T>(
    ram: R,
    ram_size: u64,
    pass_through: bool,
    f: impl for<'r, 'a> FnOnce(Rig<'r, 'a, R>) -> T,
) -> Result<T, String> {
    let mem = HostMemory::new(ram, ram_size);
    let m = &mem;
    let frames = SimFrameAllocator::new(m, PhysAddr::new(0x1000), PhysAddr::new(HOST_TABLES));
    let emu: HostEmu<'_, R> = Emulator::new(m, EmuConfig::qemu()).map_err(|e| e.to_string())?;
    let unit = RemappingUnit::new(&emu).map_err(|e| format!("host unit: {e}"))?;
    let tables = TableConfig::from_cap(unit.cap(), 39).map_err(|e| e.to_string())?;
    let contexts = ContextManager::new(m, &frames).map_err(|e| e.to_string())?;
    let qs = QueueSize::from_order(0).ok_or("queue size")?;
    let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), m, &frames, qs)
        .map_err(|e| format!("host unit: {e}"))?;
    let host = Arc::new(Host::new(m, &frames, contexts, inv, tables, DomainId::new(1)));
    let layout = GuestLayout::new(PhysAddr::new(GUEST_RAM_HPA), ram_size);
    let devices = [Assignment { guest: NIC, host: HOST_NIC }];
    let backend = Native::new(host, GuestPinner::new(layout));
    let config = ViommuConfig { pass_through, ..ViommuConfig::qemu() };
    let viommu = Viommu::new(GuestMemory::new(m, layout), backend, &devices, config)
        .map_err(|e| format!("vIOMMU: {e}"))?;
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
        with_viommu(&ram, 1 << 20, false, |rig| {
            assert_eq!(rig.dma(Iova::new(0x5000), Access::Write), None);
            assert_eq!(rig.viommu.counters().pins, 0);
        })
        .unwrap();
    }

    /// The policy *none*: with pass-through offered and translation off,
    /// the NIC reaches every guest page at its host address.
    #[test]
    fn with_pass_through_and_translation_off_the_nic_reaches_all_guest_ram() {
        let ram = HeapMemory::new(1 << 20);
        with_viommu(&ram, 1 << 20, true, |rig| {
            assert!(RemappingUnit::new(rig.viommu).expect("guest unit").ecap().pass_through());
            for gpa in [8, 0x5008, (1 << 20) - 8] {
                let hpa = PhysAddr::new(GUEST_RAM_HPA + gpa);
                assert_eq!(rig.dma(Iova::new(gpa), Access::Write), Some(hpa), "{gpa:#x}");
            }
            assert_eq!(rig.dma(Iova::new(1 << 20), Access::Read), None, "beyond guest RAM");
        })
        .unwrap();
    }

    /// The evaluation's driver on the vIOMMU: a mapped buffer is reachable
    /// through the physical unit at its host address, pinned; after the
    /// strict unmap it is blocked, unpinned, and the fault is recorded in
    /// the guest's unit.
    #[test]
    fn the_nic_reaches_through_the_physical_unit_what_the_guest_mapped() {
        use viommu_eval_driver::{Driver, Params, Policy, bringup, layout, tsc};
        use vtd_regs::PollBudget;
        use vtd_tables::Perm;
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
            with_viommu(&ram, layout::RAM_SIZE, false, |rig| {
                let config = params.mapper_config().expect("an IOMMU policy");
                let clock = tsc::clock(params.tsc_khz);
                let budget = PollBudget::new(1 << 20);
                let mut d = Driver::bring_up(rig.viommu, &ram, &frames, budget, config, clock)
                    .expect("bring-up");
                let buf = PhysAddr::new(layout::BUFFERS + 0x3000);
                let iova = d.mapper.map(buf, 4096, Perm::WRITE).expect("map");
                let hpa = PhysAddr::new(GUEST_RAM_HPA + buf.as_u64());
                assert_eq!(rig.dma(iova, Access::Write), Some(hpa));
                let c = rig.viommu.counters();
                assert_eq!((c.pins, c.unpins), (1, 0));
                assert_eq!(rig.viommu.with_backend(|b| b.pinner().pins(buf)), 1);
                d.mapper.unmap(iova, 4096).expect("unmap");
                assert_eq!(rig.dma(iova, Access::Write), None);
                let c = rig.viommu.counters();
                assert_eq!((c.pins, c.unpins), (1, 1));
                assert_eq!(rig.viommu.with_backend(|b| b.pinner().pinned_pages()), 0);
                assert!(rig.viommu.unit().fault_status().ppf(), "fault recorded in the guest unit");
            })
            .expect("rig");
        };
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(run)
            .expect("thread")
            .join()
            .expect("the test thread");
    }
}
