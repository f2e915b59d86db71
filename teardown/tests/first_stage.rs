//! A mapper over first-stage tables on a scalable-mode unit (VT-d §3.6,
//! §6.2.3): its teardowns are flushed by PASID-based IOTLB invalidations
//! (§6.5.2.4), since an IOTLB invalidation (§6.5.2.3) leaves first-stage
//! translations cached; after the flush completes, the device's access to
//! an unmapped IOVA faults.

use invalidation::{FlushConfig, Invalidation, Invalidator, NoClock, QueuedInvalidator};
use iova_alloc::{IovaTree, Window};
use teardown::{Mapper, MapperConfig, Reuse};
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
type Emu = Emulator<Mem>;
type Frames = &'static SimFrameAllocator<Mem>;

type FsMapper = Mapper<
    (Mem, Frames, NoClock),
    IovaTree<Vec<iova_alloc::Node>>,
    QueuedInvalidator<&'static Emu, Mem>,
>;

const D: DomainId = DomainId::new(3);

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

fn sid() -> SourceId {
    SourceId::new(0, 4, 0).unwrap()
}

/// A unit in scalable mode, the device's requests at `pasid` translated by
/// a first-stage table a strict mapper owns (requests without a PASID use
/// RID_PASID 0).
fn rig(pasid: u32) -> (&'static Emu, FsMapper) {
    let mem: Mem = leak(HeapMemory::new(8 << 20));
    let frames: Frames =
        leak(SimFrameAllocator::new(mem, PhysAddr::new(4 << 20), PhysAddr::new(8 << 20)));
    let emu: &'static Emu = leak(Emulator::new(mem, EmuConfig::scalable()).unwrap());
    let unit = RemappingUnit::new(emu).unwrap();
    let size = QueueSize::from_order(0).unwrap();
    let mut inv = QueuedInvalidator::new(unit, mem, frames, size).map_err(|r| r.error).unwrap();
    let mut contexts = ScalableContextManager::new(mem, frames).unwrap();
    let mut pasids = PasidTable::new(mem, frames).unwrap();
    let table_cfg = TableConfig::first_stage(false, true, 39, true).unwrap();
    let table = SlPageTable::new(mem, frames, table_cfg).unwrap();
    let p = Pasid::new(pasid).unwrap();
    let _new = pasids.set(p, PasidAttachment::table(D, &table)).unwrap();
    let change = contexts.attach(sid(), &pasids, Pasid::default(), true).unwrap();
    inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).unwrap();
    inv.invalidate(Invalidation::scalable_context_changed(change.sid)).unwrap();
    inv.unit().enable_translation().unwrap();
    // The tables outlive the mapper's test: the unit walks them.
    let _ = leak((contexts, pasids));
    let space = IovaTree::new(Window::from_pages(1, (1 << 27) - 1).unwrap(), Vec::new());
    let config = MapperConfig {
        reuse: Reuse::SingleUse,
        flush: FlushConfig::strict(),
        domain: D,
        dma_limit: Iova::new(1 << 32),
    };
    let mut mapper =
        Mapper::new((mem, frames, NoClock), table, space, inv, teardown::NoPinning, config)
            .unwrap();
    mapper.set_pasid(p);
    (emu, mapper)
}

fn dma(emu: &Emu, pasid: Option<u32>, iova: Iova) -> Result<PhysAddr, FaultReason> {
    let pasid = pasid.map(|p| Pasid::new(p).unwrap());
    emu.translate_pasid(sid(), pasid, false, iova, Access::Read).map_err(|f| f.reason)
}

#[test]
fn an_unmapped_first_stage_iova_stops_translating_once_the_flush_completed() {
    for (pasid, request) in [(0, None), (5, Some(5))] {
        let (emu, mut mapper) = rig(pasid);
        let buf = PhysAddr::new(0x12_3456);
        let iova = mapper.map(buf, 0x3000, Perm::READ_WRITE).unwrap();
        // The device's access caches the first-stage translation.
        assert_eq!(dma(emu, request, iova), Ok(buf));
        mapper.unmap(iova, 0x3000).unwrap();
        mapper.flush().unwrap();
        for page in 0..3 {
            let at = Iova::new(iova.as_u64() + page * 0x1000);
            assert_eq!(dma(emu, request, at), Err(FaultReason::FsEntryNotPresent), "{at:?}");
        }
        // What went to the unit: PASID-based, not IOTLB, invalidations.
        assert!(emu.counters().descriptors_of(6) > 0);
    }
}
