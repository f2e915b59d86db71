//! Scalable mode end to end on the software VT-d: a driver builds PASID
//! tables and first- and second-stage tables with `vtd-tables`, runs the
//! unit in scalable mode with a 256-bit invalidation queue, and owes (and
//! posts) the PASID-cache, PASID-based IOTLB and IOTLB invalidations the
//! tokens name. The unit's caches keep stale entries exactly until then,
//! and its translations agree with an uncached walk of the same tables.

use invalidation::{Error, Invalidation, Invalidator, QueuedInvalidator};
use proptest::prelude::*;
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::{DescType, Pasid};
use vtd_regs::regs::QueueSize;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{DomainId, FaultReason, Iova, PageSize, PhysAddr, RemappingUnit, SourceId};
use vtd_tables::walk::{Request, ScalableLimits, walk_scalable};
use vtd_tables::{
    Access, PasidAttachment, PasidTable, Perm, ScalableContextManager, SlPageTable, TableConfig,
};

type Mem = &'static HeapMemory;
type Emu = Emulator<Mem>;
type Frames = &'static SimFrameAllocator<Mem>;

const D: DomainId = DomainId::new(3);

fn sid() -> SourceId {
    SourceId::new(0, 4, 0).unwrap()
}

fn pasid(p: u32) -> Pasid {
    Pasid::new(p).unwrap()
}

/// A unit in scalable mode with one device whose PASID table is empty.
struct Rig {
    mem: Mem,
    frames: Frames,
    emu: &'static Emu,
    inv: QueuedInvalidator<&'static Emu, Mem>,
    contexts: ScalableContextManager<Mem, Frames>,
    pasids: PasidTable<Mem, Frames>,
}

impl Rig {
    fn new(cfg: EmuConfig) -> Self {
        let mem: Mem = Box::leak(Box::new(HeapMemory::new(8 << 20)));
        let frames: Frames = Box::leak(Box::new(SimFrameAllocator::new(
            mem,
            PhysAddr::new(0x1000),
            PhysAddr::new(4 << 20),
        )));
        let emu: &'static Emu = Box::leak(Box::new(Emulator::new(mem, cfg).unwrap()));
        let unit = RemappingUnit::new(emu).unwrap();
        let size = QueueSize::from_order(0).unwrap();
        let mut inv = QueuedInvalidator::new(unit, mem, frames, size).map_err(|r| r.error).unwrap();
        let mut contexts = ScalableContextManager::new(mem, frames).unwrap();
        let pasids = PasidTable::new(mem, frames).unwrap();
        let change = contexts.attach(sid(), &pasids, pasid(0), true).unwrap();
        inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).unwrap();
        inv.invalidate(Invalidation::scalable_context_changed(change.sid)).unwrap();
        inv.unit().enable_translation().unwrap();
        Rig { mem, frames, emu, inv, contexts, pasids }
    }

    fn table(&self, first: bool) -> SlPageTable<Mem, Frames> {
        let cfg = if first {
            TableConfig::first_stage(false, true, 39, true).unwrap()
        } else {
            TableConfig::from_cap(self.emu.config().cap, 39).unwrap()
        };
        SlPageTable::new(self.mem, self.frames, cfg).unwrap()
    }

    /// Programs `p`'s entry and posts what the token owes.
    fn set(&mut self, p: u32, to: PasidAttachment) {
        let change = self.pasids.set(pasid(p), to).unwrap();
        if let Some(old) = change.previous.or(change.current) {
            self.inv
                .invalidate(Invalidation::pasid_changed(
                    old.domain,
                    change.pasid,
                    old.tagged_by_pasid(),
                ))
                .unwrap();
        }
    }

    fn dma(&self, p: Option<u32>, iova: u64, access: Access) -> Result<PhysAddr, FaultReason> {
        self.emu
            .translate_pasid(sid(), p.map(pasid), false, Iova::new(iova), access)
            .map_err(|f| f.reason)
    }

    /// The uncached walk of the same tables.
    fn walk(&self, p: Option<u32>, iova: u64, access: Access) -> Result<PhysAddr, FaultReason> {
        let cfg = self.emu.config();
        let limits = ScalableLimits::new(cfg.cap, cfg.ecap, cfg.host_address_width.bits());
        let req = Request { access, pasid: p.map(pasid), supervisor: false };
        walk_scalable(self.mem, self.contexts.root_table(), sid(), Iova::new(iova), &req, &limits)
            .map(|(_, _, t)| t.translation.phys)
            .map_err(|f| f.reason)
    }
}

#[test]
fn every_pgtt_translates_and_stays_cached_until_invalidated() {
    let mut r = Rig::new(EmuConfig::scalable());
    let mut fs = r.table(true);
    let mut ss = r.table(false);
    fs.map(Iova::new(0x1000), PhysAddr::new(0x20_0000), PageSize::Size4KiB, Perm::READ_WRITE)
        .unwrap();
    ss.map_range(Iova::new(0), PhysAddr::new(0), 4 << 20, Perm::READ_WRITE).unwrap();
    r.set(0, PasidAttachment::table(D, &fs));
    r.set(1, PasidAttachment::table(D, &ss));
    r.set(
        2,
        PasidAttachment::Nested {
            domain: D,
            first: fs.root(),
            five_level: false,
            second: ss.root(),
            agaw: ss.config().agaw(),
        },
    );
    r.set(3, PasidAttachment::PassThrough { domain: D, agaw: Agaw::Bits48 });
    assert_eq!(r.dma(None, 0x1010, Access::Write), Ok(PhysAddr::new(0x20_0010)));
    assert_eq!(r.dma(Some(0), 0x1010, Access::Read), Ok(PhysAddr::new(0x20_0010)));
    assert_eq!(r.dma(Some(1), 0x3010, Access::Write), Ok(PhysAddr::new(0x3010)));
    assert_eq!(r.dma(Some(2), 0x1010, Access::Read), Ok(PhysAddr::new(0x20_0010)));
    assert_eq!(r.dma(Some(3), 0xdead_b000, Access::Read), Ok(PhysAddr::new(0xdead_b000)));
    assert_eq!(r.dma(None, 0x2000, Access::Read), Err(FaultReason::FsEntryNotPresent));

    // Unmapping the first-stage page: the translation stays cached for
    // PASID 0 (and nested PASID 2) until a PASID-based IOTLB invalidation
    // of that PASID covers it.
    let token = fs.unmap(Iova::new(0x1000), PageSize::Size4KiB).unwrap();
    assert_eq!(r.dma(None, 0x1010, Access::Read), Ok(PhysAddr::new(0x20_0010)), "stale");
    let range = token.iova()..Iova::new(token.iova().as_u64() + token.len());
    r.inv.invalidate(Invalidation::pasid_pages(D, pasid(0), &range, 9, token.leaf_only())).unwrap();
    fs.release(token).unwrap();
    assert_eq!(r.dma(None, 0x1010, Access::Read), Err(FaultReason::FsEntryNotPresent));
    assert_eq!(r.dma(Some(2), 0x1010, Access::Read), Ok(PhysAddr::new(0x20_0010)), "PASID 2 stale");
    r.inv.invalidate(Invalidation::pasid_pages(D, pasid(2), &range, 9, true)).unwrap();
    assert_eq!(r.dma(Some(2), 0x1010, Access::Read), Err(FaultReason::FsEntryNotPresent));

    // A PASID entry changed without a PASID-cache invalidation is still
    // used; the token's invalidations end it.
    let change = r.pasids.set(pasid(1), PasidAttachment::Blocked).unwrap();
    assert_eq!(r.dma(Some(1), 0x5010, Access::Read), Ok(PhysAddr::new(0x5010)), "stale entry");
    let old = change.previous.unwrap();
    assert!(!old.tagged_by_pasid());
    r.inv.invalidate(Invalidation::pasid_changed(old.domain, change.pasid, false)).unwrap();
    assert_eq!(r.dma(Some(1), 0x5010, Access::Read), Err(FaultReason::PasidEntryNotPresent));

    // The fault was recorded with its PASID.
    let faults: Vec<_> = r.inv.unit().drain_faults().collect();
    let last = faults.last().unwrap();
    assert_eq!((last.pasid, last.reason_code), (Some(1), 0x59));
    let c = r.inv.counters();
    assert!(c.descriptors[DescType::PasidIotlb as usize] >= 2, "{c:?}");
    assert!(c.descriptors[DescType::PasidCache as usize] >= 5, "{c:?}");
}

#[test]
fn pasid_requests_need_a_wide_queue_and_qemus_scalable_mode_has_no_first_stage() {
    // A legacy unit's 128-bit queue cannot carry PASID-based descriptors.
    let mem: Mem = Box::leak(Box::new(HeapMemory::new(2 << 20)));
    let frames = SimFrameAllocator::new(mem, PhysAddr::new(0x1000), PhysAddr::new(2 << 20));
    let emu: &'static Emu = Box::leak(Box::new(Emulator::new(mem, EmuConfig::qemu()).unwrap()));
    let unit = RemappingUnit::new(emu).unwrap();
    let mut inv = QueuedInvalidator::new(unit, mem, &frames, QueueSize::from_order(0).unwrap())
        .map_err(|r| r.error)
        .unwrap();
    let req = Invalidation::pasid_changed(D, pasid(1), true);
    assert_eq!(inv.invalidate(req), Err(Error::Unsupported(req[0])));
    // QEMU 7.2's scalable mode: second-stage and pass-through PASID
    // entries; a first-stage one is invalid programming (5Bh).
    let mut r = Rig::new(EmuConfig::qemu_scalable());
    let ss = r.table(false);
    let fs = r.table(true);
    r.set(0, PasidAttachment::table(D, &ss));
    assert_eq!(r.dma(None, 0x1000, Access::Read), Err(FaultReason::SmReadNotPermitted));
    r.set(0, PasidAttachment::table(D, &fs));
    assert_eq!(r.dma(None, 0x1000, Access::Read), Err(FaultReason::InvalidPasidEntry));
    // Without ECAP.PASID, a request with a PASID faults (45h).
    assert_eq!(r.dma(Some(0), 0x1000, Access::Read), Err(FaultReason::SmPasidDisabled));
}

#[derive(Clone, Debug)]
enum Op {
    Map { page: u64, write: bool },
    Unmap { page: u64 },
    Switch { pasid: u32, kind: u8 },
    Dma { pasid: Option<u32>, page: u64, write: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..32, any::<bool>()).prop_map(|(page, write)| Op::Map { page, write }),
        (0u64..32).prop_map(|page| Op::Unmap { page }),
        (0u32..3, 0u8..5).prop_map(|(pasid, kind)| Op::Switch { pasid, kind }),
        (prop::option::of(0u32..3), 0u64..32, any::<bool>())
            .prop_map(|(pasid, page, write)| Op::Dma { pasid, page, write }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// A driver that posts every invalidation its tokens owe sees the unit
    /// translate exactly as an uncached walk of its tables does, whatever
    /// it maps, unmaps and reassigns, with the unit's caches in between.
    #[test]
    fn with_owed_invalidations_the_unit_is_never_stale(ops in prop::collection::vec(op(), 1..60)) {
        let mut r = Rig::new(EmuConfig::scalable().with_iotlb(16, 4).with_context_cache(8, 2));
        let mut fs = r.table(true);
        let mut ss = r.table(false);
        ss.map_range(Iova::new(0), PhysAddr::new(0), 4 << 20, Perm::READ_WRITE).unwrap();
        let mut kinds = [4u8; 3];
        for op in ops {
            match op {
                Op::Map { page, write } => {
                    let perm = if write { Perm::READ_WRITE } else { Perm::READ };
                    let _ = fs.map(Iova::new(page << 12), PhysAddr::new(0x30_0000 + (page << 12)), PageSize::Size4KiB, perm);
                }
                Op::Unmap { page } => {
                    if let Ok(token) = fs.unmap(Iova::new(page << 12), PageSize::Size4KiB) {
                        let range = token.iova()..Iova::new(token.iova().as_u64() + token.len());
                        for (p, k) in kinds.iter().enumerate() {
                            if matches!(k, 0 | 2) {
                                r.inv.invalidate(Invalidation::pasid_pages(D, pasid(p as u32), &range, 9, token.leaf_only())).unwrap();
                            }
                        }
                        fs.release(token).unwrap();
                    }
                }
                Op::Switch { pasid: p, kind } => {
                    let to = match kind {
                        0 => PasidAttachment::table(D, &fs),
                        1 => PasidAttachment::table(D, &ss),
                        2 => PasidAttachment::Nested { domain: D, first: fs.root(), five_level: false, second: ss.root(), agaw: ss.config().agaw() },
                        3 => PasidAttachment::PassThrough { domain: D, agaw: Agaw::Bits48 },
                        _ => PasidAttachment::Blocked,
                    };
                    r.set(p, to);
                    kinds[p as usize] = kind;
                }
                Op::Dma { pasid: p, page, write } => {
                    let access = if write { Access::Write } else { Access::Read };
                    let iova = (page << 12) | 0x18;
                    prop_assert_eq!(r.dma(p, iova, access), r.walk(p, iova, access));
                }
            }
        }
    }
}
