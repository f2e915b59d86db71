//! The nested vIOMMU end to end: a host software VT-d in scalable mode with
//! nesting, guests whose drivers are this workspace's own (a teardown
//! `Mapper` over first-stage tables, a `ScalableContextManager` and
//! `PasidTable` in guest RAM, a `QueuedInvalidator` on the trapped
//! register page), and device DMA checked on the host unit.

use std::sync::Arc;

use invalidation::{FlushConfig, Invalidation, Invalidator, NoClock, QueuedInvalidator};
use iova_alloc::{IovaTree, Node, Window};
use teardown::{Fixed, Mapper, MapperConfig, NoPinning, Reuse};
use viommu::nested::{NativeNested, NestedConfig, NestedHost, NestedIommu, NestedViommu};
use viommu::{Assignment, GuestLayout, GuestMemory, GuestPinner};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::Pasid;
use vtd_regs::regs::QueueSize;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{DomainId, FaultReason, Iova, PhysAddr, RemappingUnit, SourceId};
use vtd_tables::{
    Access, PasidAttachment, PasidTable, Perm, ScalableContextManager, SlPageTable, TableConfig,
};

type Mem = &'static HeapMemory;
type Frames = &'static SimFrameAllocator<Mem>;
type Emu = Emulator<Mem>;
type HostInv = QueuedInvalidator<&'static Emu, Mem>;
type Host = NestedHost<Mem, Frames, HostInv>;
type GMem = GuestMemory<Mem>;
type GFrames = &'static SimFrameAllocator<GMem>;
type Backend = NativeNested<Mem, Frames, HostInv, GuestPinner>;
type Vmmu = NestedViommu<GMem, Backend>;
type GInv = QueuedInvalidator<&'static Vmmu, GMem>;
type GMapper = Mapper<(GMem, GFrames, NoClock), IovaTree<Vec<Node>>, GInv, Fixed<1024, 64>>;

const HOST_RAM: u64 = 32 << 20;
const HOST_FRAMES: u64 = 16 << 20;
/// Each guest: 4 MiB of RAM (data below 2 MiB, its tables above).
const GUEST_RAM: u64 = 4 << 20;
const GUEST_FRAMES: u64 = 2 << 20;
const GUEST_DEVICE: SourceId = SourceId::from_raw(0x0008);
const GUEST_DOMAIN: DomainId = DomainId::new(1);

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

struct HostRig {
    mem: Mem,
    emu: &'static Emu,
    host: Arc<Host>,
}

impl HostRig {
    fn new() -> Self {
        let mem: Mem = leak(HeapMemory::new(HOST_RAM as usize));
        let frames: Frames =
            leak(SimFrameAllocator::new(mem, PhysAddr::new(HOST_FRAMES), PhysAddr::new(HOST_RAM)));
        let emu: &'static Emu = leak(Emulator::new(mem, EmuConfig::scalable()).unwrap());
        let unit = RemappingUnit::new(emu).unwrap();
        let tables = TableConfig::from_cap(unit.cap(), 39).unwrap();
        let size = QueueSize::from_order(0).unwrap();
        let mut inv = QueuedInvalidator::new(unit, mem, frames, size).map_err(|r| r.error).unwrap();
        let contexts = ScalableContextManager::new(mem, frames).unwrap();
        inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).unwrap();
        inv.unit().enable_translation().unwrap();
        let host = Arc::new(NestedHost::new(mem, frames, contexts, inv, tables, DomainId::new(1)));
        HostRig { mem, emu, host }
    }

    /// A guest of `GUEST_RAM` bytes at host `base`, its device `host_dev`.
    fn guest(&self, base: u64, host_dev: SourceId) -> Guest {
        let layout = GuestLayout::new(PhysAddr::new(base), GUEST_RAM);
        let gmem = GuestMemory::new(self.mem, layout);
        let ram = [PhysAddr::new(0)..PhysAddr::new(GUEST_RAM)];
        let backend = NativeNested::new(self.host.clone(), GuestPinner::new(layout), ram).unwrap();
        let devices = [Assignment { guest: GUEST_DEVICE, host: host_dev }];
        let vmmu: &'static Vmmu =
            leak(NestedViommu::new(gmem, backend, &devices, NestedConfig::new()).unwrap());
        let frames: GFrames = leak(SimFrameAllocator::new(
            gmem,
            PhysAddr::new(GUEST_FRAMES),
            PhysAddr::new(GUEST_RAM),
        ));
        Guest::boot(self, vmmu, gmem, frames, base, host_dev)
    }
}

struct Guest {
    vmmu: &'static Vmmu,
    gmem: GMem,
    frames: GFrames,
    mapper: GMapper,
    /// The guest's scalable-mode context table (the unit walks it).
    _contexts: ScalableContextManager<GMem, GFrames>,
    pasids: PasidTable<GMem, GFrames>,
    emu: &'static Emu,
    base: u64,
    host_dev: SourceId,
}

impl Guest {
    /// The guest's driver brings its unit up in scalable mode: one PASID
    /// table, RID_PASID's entry first-stage over the mapper's table.
    fn boot(
        rig: &HostRig,
        vmmu: &'static Vmmu,
        gmem: GMem,
        frames: GFrames,
        base: u64,
        host_dev: SourceId,
    ) -> Self {
        let unit = RemappingUnit::new(vmmu).unwrap();
        assert!(!unit.cap().caching_mode());
        assert!(unit.ecap().smts() && unit.ecap().flts() && !unit.ecap().slts());
        let size = QueueSize::from_order(0).unwrap();
        let mut inv =
            QueuedInvalidator::new(unit, gmem, frames, size).map_err(|r| r.error).unwrap();
        let cfg = TableConfig::first_stage(false, true, 39, true).unwrap();
        let table = SlPageTable::new(gmem, frames, cfg).unwrap();
        let mut contexts = ScalableContextManager::new(gmem, frames).unwrap();
        let mut pasids = PasidTable::new(gmem, frames).unwrap();
        let _new =
            pasids.set(Pasid::default(), PasidAttachment::table(GUEST_DOMAIN, &table)).unwrap();
        let change = contexts.attach(GUEST_DEVICE, &pasids, Pasid::default(), true).unwrap();
        inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).unwrap();
        inv.invalidate(Invalidation::scalable_context_changed(change.sid)).unwrap();
        inv.unit().enable_translation().unwrap();
        let space = IovaTree::new(Window::from_pages(1, (1 << 27) - 1).unwrap(), Vec::new());
        let config = MapperConfig {
            reuse: Reuse::SingleUse,
            flush: FlushConfig::strict(),
            domain: GUEST_DOMAIN,
            dma_limit: Iova::new(1 << 32),
        };
        let mapper = Mapper::with_capacity(
            (gmem, frames, NoClock),
            table,
            space,
            inv,
            NoPinning,
            config,
            Fixed,
        )
        .unwrap();
        Guest {
            vmmu,
            gmem,
            frames,
            mapper,
            _contexts: contexts,
            pasids,
            emu: rig.emu,
            base,
            host_dev,
        }
    }

    /// The assigned device's DMA to `iova` (no PASID), on the host unit.
    fn dma(&self, iova: Iova, access: Access) -> Result<PhysAddr, FaultReason> {
        self.emu.translate_pasid(self.host_dev, None, false, iova, access).map_err(|f| f.reason)
    }

    fn dma_pasid(&self, pasid: u32, iova: Iova) -> Result<PhysAddr, FaultReason> {
        let pasid = Pasid::new(pasid).unwrap();
        self.emu
            .translate_pasid(self.host_dev, Some(pasid), false, iova, Access::Read)
            .map_err(|f| f.reason)
    }

    fn hpa(&self, gpa: u64) -> PhysAddr {
        PhysAddr::new(self.base + gpa)
    }

    /// Sets the guest's PASID entry `p` and posts what it owes.
    fn set_pasid(&mut self, p: u32, to: PasidAttachment) {
        let change = self.pasids.set(Pasid::new(p).unwrap(), to).unwrap();
        let domain = change.previous.or(change.current).map_or(GUEST_DOMAIN, |u| u.domain);
        let owed = Invalidation::pasid_changed(domain, change.pasid, true);
        self.mapper.invalidator().invalidate(owed).unwrap();
    }
}

#[test]
fn the_guest_maps_without_exits_and_its_device_reaches_the_mapped_pages() {
    let rig = HostRig::new();
    let mut g = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    // All guest RAM is pinned from the start, nothing more after maps.
    assert_eq!(g.vmmu.with_backend(|b| b.pinned_pages()), GUEST_RAM / 4096);
    let exits = g.vmmu.counters().register_accesses;
    let buf = PhysAddr::new(0x12_3400);
    let iova = g.mapper.map(buf, 0x2000, Perm::READ_WRITE).unwrap();
    assert_eq!(g.vmmu.counters().register_accesses, exits, "a map exits");
    assert_eq!(g.dma(iova, Access::Write), Ok(g.hpa(0x12_3400)));
    let last = Iova::new(iova.as_u64() + 0x1c00);
    assert_eq!(g.dma(last, Access::Read), Ok(g.hpa(0x12_5000)));
    assert_eq!(g.vmmu.with_backend(|b| b.pinned_pages()), GUEST_RAM / 4096);
    assert_eq!(g.vmmu.counters().refused, 0);
}

#[test]
fn after_the_guests_invalidation_an_unmapped_page_faults() {
    let rig = HostRig::new();
    let mut g = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    let buf = PhysAddr::new(0x4_0000);
    let iova = g.mapper.map(buf, 0x1000, Perm::READ).unwrap();
    assert_eq!(g.dma(iova, Access::Read), Ok(g.hpa(0x4_0000)));
    let forwarded = g.vmmu.counters().forwarded;
    g.mapper.unmap(iova, 0x1000).unwrap();
    g.mapper.flush().unwrap();
    assert!(g.vmmu.counters().forwarded > forwarded, "the guest's invalidation was forwarded");
    assert_eq!(g.dma(iova, Access::Read), Err(FaultReason::FsEntryNotPresent));
    // Write to a read-only mapping faults too.
    let ro = g.mapper.map(buf, 0x1000, Perm::READ).unwrap();
    assert!(g.dma(ro, Access::Write).is_err());
}

impl Guest {
    /// A first-stage table of the guest's, at PASID `p`.
    fn table_at(&mut self, p: u32) -> SlPageTable<GMem, GFrames> {
        let cfg = TableConfig::first_stage(false, true, 39, true).unwrap();
        let table = SlPageTable::new(self.gmem, self.frames, cfg).unwrap();
        self.set_pasid(p, PasidAttachment::table(GUEST_DOMAIN, &table));
        table
    }
}

#[test]
fn the_host_keeps_an_unmapped_page_until_the_guest_invalidates_it() {
    let rig = HostRig::new();
    let mut g = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    let mut t = g.table_at(1);
    let iova = Iova::new(0x7000);
    t.map(iova, PhysAddr::new(0x9000), vtd_regs::PageSize::Size4KiB, Perm::READ).unwrap();
    assert_eq!(g.dma_pasid(1, iova), Ok(g.hpa(0x9000)));
    let token = t.unmap(iova, vtd_regs::PageSize::Size4KiB).unwrap();
    // Not invalidated yet: the host's IOTLB still has it (as hardware).
    assert_eq!(g.dma_pasid(1, iova), Ok(g.hpa(0x9000)), "stale until invalidated");
    let range = iova..Iova::new(iova.as_u64() + 0x1000);
    let pasid = Pasid::new(1).unwrap();
    let owed: Vec<_> = Invalidation::pasid_pages(GUEST_DOMAIN, pasid, &range, 0, true).collect();
    g.mapper.invalidator().invalidate(owed).unwrap();
    t.release(token).unwrap();
    assert_eq!(g.dma_pasid(1, iova), Err(FaultReason::FsEntryNotPresent));
}

#[test]
fn a_guests_device_never_reaches_another_guests_ram() {
    let rig = HostRig::new();
    let mut a = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    let mut b = rig.guest(8 << 20, SourceId::new(0, 2, 0).unwrap());
    let ia = a.mapper.map(PhysAddr::new(0x1000), 0x1000, Perm::READ_WRITE).unwrap();
    let ib = b.mapper.map(PhysAddr::new(0x1000), 0x1000, Perm::READ_WRITE).unwrap();
    assert_eq!(ia, ib, "the same IOVA in both guests");
    assert_eq!(a.dma(ia, Access::Read), Ok(PhysAddr::new((4 << 20) + 0x1000)));
    assert_eq!(b.dma(ib, Access::Read), Ok(PhysAddr::new((8 << 20) + 0x1000)));
    // Every guest-physical address B can name lands in B's RAM or faults.
    let mut t = b.table_at(2);
    for (n, gpa) in [0u64, GUEST_RAM - 0x1000, GUEST_RAM, 8 << 20, 1 << 30].into_iter().enumerate()
    {
        let iova = Iova::new(0x10_0000 + ((n as u64) << 12));
        t.map(iova, PhysAddr::new(gpa), vtd_regs::PageSize::Size4KiB, Perm::READ).unwrap();
        match b.dma_pasid(2, iova) {
            Ok(hpa) => assert_eq!(hpa.as_u64(), (8 << 20) + gpa, "{gpa:#x}"),
            Err(reason) => assert!(gpa >= GUEST_RAM, "{gpa:#x}: {reason:?}"),
        }
        assert_eq!(b.dma_pasid(2, iova).is_ok(), gpa < GUEST_RAM, "{gpa:#x}");
    }
    // A's device at B's PASID 2 has nothing.
    assert!(a.dma_pasid(2, Iova::new(0x10_0000)).is_err());
}

#[test]
fn a_first_stage_page_outside_guest_ram_faults_in_the_second_stage() {
    let rig = HostRig::new();
    let mut g = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    let mut t = g.table_at(1);
    let iova = Iova::new(0x3000);
    t.map(iova, PhysAddr::new(GUEST_RAM + 0x5000), vtd_regs::PageSize::Size4KiB, Perm::READ)
        .unwrap();
    // The second stage has no entry for the page (Appendix A: 86h, a
    // second-stage read not permitted, as a not-present entry grants none).
    assert_eq!(g.dma_pasid(1, iova), Err(FaultReason::SmReadNotPermitted));
}

#[test]
fn a_first_stage_table_outside_guest_ram_faults_in_the_second_stage() {
    let rig = HostRig::new();
    let mut g = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    // The root pointer outside RAM (the host's own tables are there).
    let root = PhysAddr::new(HOST_FRAMES - (4 << 20));
    g.set_pasid(
        3,
        PasidAttachment::FirstStage {
            domain: GUEST_DOMAIN,
            table: root,
            five_level: false,
            supervisor: false,
        },
    );
    // 75h: the second stage denies reading the first-stage root.
    assert_eq!(g.dma_pasid(3, Iova::new(0x1000)), Err(FaultReason::NestedRootReadDenied));
    assert_eq!(g.vmmu.counters().refused, 0, "taken as given: the host's walk confines it");
}

#[test]
fn a_pasid_table_outside_guest_ram_blocks_the_device() {
    let rig = HostRig::new();
    let mut g = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    let iova = g.mapper.map(PhysAddr::new(0x1000), 0x1000, Perm::READ).unwrap();
    assert!(g.dma(iova, Access::Read).is_ok());
    // The guest points its PASID directory entry of PASIDs 64..127 at a
    // PASID table beyond its RAM: the vIOMMU's read of it fails and the
    // device is blocked at that PASID.
    let dir = g.pasids.directory();
    let entry = vtd_tables::scalable::PasidDirEntry::new(PhysAddr::new(GUEST_RAM + (1 << 20)));
    let at = vtd_tables::scalable::PasidDirEntry::address(dir, 64);
    vtd_regs::PhysMem::write_u64(&g.gmem, at, entry.0).unwrap();
    let pasid = Pasid::new(64).unwrap();
    let owed = Invalidation::pasid_changed(GUEST_DOMAIN, pasid, true);
    g.mapper.invalidator().invalidate(owed).unwrap();
    assert!(g.dma_pasid(64, iova).is_err());
    assert!(g.vmmu.counters().refused > 0);
    // RID_PASID's entry is untouched.
    assert!(g.dma(iova, Access::Read).is_ok());
}

#[test]
fn pass_through_or_second_stage_entries_are_refused() {
    let rig = HostRig::new();
    let mut g = rig.guest(4 << 20, SourceId::new(0, 1, 0).unwrap());
    let refused = g.vmmu.counters().refused;
    g.set_pasid(
        4,
        PasidAttachment::PassThrough {
            domain: GUEST_DOMAIN,
            agaw: vtd_regs::regs::cap::Agaw::Bits48,
        },
    );
    assert!(g.dma_pasid(4, Iova::new(0x1000)).is_err(), "no pass-through to host memory");
    let ss = SlPageTable::new(
        g.gmem,
        g.frames,
        TableConfig::from_cap(g.vmmu.unit().config().cap, 39).unwrap(),
    )
    .unwrap();
    g.set_pasid(5, PasidAttachment::table(GUEST_DOMAIN, &ss));
    assert!(g.dma_pasid(5, Iova::new(0x1000)).is_err());
    assert_eq!(g.vmmu.counters().refused, refused + 2);
}
