//! Translation walks in scalable mode beside legacy mode's (one 4 KiB page,
//! the PASID entry already cached, as after a PASID-cache hit): the legacy
//! second-level walker, the same table as a PASID's second stage, a
//! first-stage table built by the same mapper, and that first stage nested
//! over an identity second stage (each of its four table reads translated
//! by a 4-level second-stage walk, then its output); and the software
//! unit's translation of a page its IOTLB holds, legacy beside scalable.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::Pasid;
use vtd_regs::regs::Sagaw;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{DomainId, Iova, PageSize, PhysAddr, RemappingUnit, SourceId};
use vtd_tables::scalable::PasidTranslationType;
use vtd_tables::walk::{PasidInfo, Request, ScalableLimits, walk_pasid};
use vtd_tables::{
    Access, ContextInfo, ContextManager, PasidAttachment, PasidTable, Perm, ScalableContextManager,
    SlPageTable, TableConfig, TranslationType, walk_second_level,
};

const PAGES: u64 = 4096;

fn translate_4k_scalable(c: &mut Criterion) {
    let mem: &'static HeapMemory = Box::leak(Box::new(HeapMemory::new(64 << 20)));
    let frames: &'static SimFrameAllocator<&'static HeapMemory> = Box::leak(Box::new(
        SimFrameAllocator::new(mem, PhysAddr::new(1 << 20), PhysAddr::new(64 << 20)),
    ));
    let cfg = EmuConfig::scalable();
    let limits = ScalableLimits::new(cfg.cap, cfg.ecap, cfg.host_address_width.bits());
    let ss_cfg = TableConfig::new(Sagaw::BITS48_L4, cfg.cap.sllps(), 48).unwrap();
    let mut ss = SlPageTable::new(mem, frames, ss_cfg).unwrap();
    let mut identity = SlPageTable::new(mem, frames, ss_cfg).unwrap();
    identity.map_range(Iova::new(0), PhysAddr::new(0), 1 << 32, Perm::READ_WRITE).unwrap();
    let mut fs =
        SlPageTable::new(mem, frames, TableConfig::first_stage(false, true, 47, true).unwrap())
            .unwrap();
    for p in 0..PAGES {
        let (iova, phys) = (Iova::new(p << 12), PhysAddr::new((p << 12) + (128 << 20)));
        ss.map(iova, phys, PageSize::Size4KiB, Perm::READ_WRITE).unwrap();
        fs.map(iova, phys, PageSize::Size4KiB, Perm::READ_WRITE).unwrap();
    }
    let info = |pgtt, first, second| PasidInfo {
        pasid: Pasid::new(1).unwrap(),
        domain: DomainId::new(1),
        pgtt,
        second,
        first,
        supervisor: false,
        fpd: false,
    };
    let agaw = ss_cfg.agaw();
    let second = info(PasidTranslationType::SecondStage, None, Some((ss.root(), agaw)));
    let first = info(PasidTranslationType::FirstStage, Some((fs.root(), false)), None);
    let nested =
        info(PasidTranslationType::Nested, Some((fs.root(), false)), Some((identity.root(), agaw)));
    let legacy = ContextInfo {
        domain: DomainId::new(1),
        translation_type: TranslationType::Untranslated,
        agaw,
        slptptr: ss.root(),
        fpd: false,
    };
    let req = Request::untagged(Access::Read);
    let mut g = c.benchmark_group("translate_4k_scalable");
    let mut i = 0u64;
    let mut next = || {
        i = (i + 1) % PAGES;
        Iova::new((i.wrapping_mul(2654435761) % PAGES) << 12 | 0x123)
    };
    g.bench_function("legacy_second_level", |b| {
        b.iter(|| {
            black_box(walk_second_level(mem, &legacy, next(), Access::Read, &limits.base)).ok()
        })
    });
    for (name, info) in [("second_stage", second), ("first_stage", first), ("nested", nested)] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(walk_pasid(mem, &info, next(), &req, &limits)).ok())
        });
    }
    g.finish();
}

/// The software unit's translation of a page its IOTLB holds (32 pages,
/// round robin), legacy mode beside scalable mode with the same
/// second-stage table under RID_PASID, and scalable mode's first stage.
fn emu_translate_hit(c: &mut Criterion) {
    type Mem = &'static HeapMemory;
    let mem: Mem = Box::leak(Box::new(HeapMemory::new(64 << 20)));
    let frames: &'static SimFrameAllocator<Mem> = Box::leak(Box::new(SimFrameAllocator::new(
        mem,
        PhysAddr::new(1 << 20),
        PhysAddr::new(64 << 20),
    )));
    let cfg = EmuConfig::scalable();
    let sid = SourceId::new(0, 2, 0).unwrap();
    let ss_cfg = TableConfig::from_cap(cfg.cap, 39).unwrap();
    let fs_cfg = TableConfig::first_stage(false, true, 39, true).unwrap();
    let mut ss = SlPageTable::new(mem, frames, ss_cfg).unwrap();
    let mut fs = SlPageTable::new(mem, frames, fs_cfg).unwrap();
    // Within the smallest IOTLB (the scalable one holds 64 translations).
    const HOT: u64 = 32;
    for p in 0..HOT {
        let (iova, phys) = (Iova::new(p << 12), PhysAddr::new((p << 12) + (128 << 20)));
        ss.map(iova, phys, PageSize::Size4KiB, Perm::READ_WRITE).unwrap();
        fs.map(iova, phys, PageSize::Size4KiB, Perm::READ_WRITE).unwrap();
    }
    let legacy: &'static Emulator<Mem> = Box::leak(Box::new(Emulator::new(mem, cfg).unwrap()));
    let mut contexts = ContextManager::new(mem, frames).unwrap();
    let _ = contexts.attach(sid, DomainId::new(1), &ss).unwrap();
    let mut unit = RemappingUnit::new(legacy).unwrap();
    unit.set_root_table(contexts.root_table(), TranslationTableMode::Legacy).unwrap();
    unit.enable_translation().unwrap();

    let scalable: &'static Emulator<Mem> = Box::leak(Box::new(Emulator::new(mem, cfg).unwrap()));
    let mut sm = ScalableContextManager::new(mem, frames).unwrap();
    let mut pasids = PasidTable::new(mem, frames).unwrap();
    let (p0, p1) = (Pasid::new(0).unwrap(), Pasid::new(1).unwrap());
    let _ = pasids.set(p0, PasidAttachment::table(DomainId::new(1), &ss)).unwrap();
    let _ = pasids.set(p1, PasidAttachment::table(DomainId::new(2), &fs)).unwrap();
    let _ = sm.attach(sid, &pasids, p0, true).unwrap();
    let mut unit = RemappingUnit::new(scalable).unwrap();
    unit.set_root_table(sm.root_table(), TranslationTableMode::Scalable).unwrap();
    unit.enable_translation().unwrap();

    let mut g = c.benchmark_group("emu_translate_hit");
    let mut i = 0u64;
    let mut next = || {
        i = (i + 1) % HOT;
        Iova::new(i << 12 | 0x40)
    };
    g.bench_function("legacy", |b| {
        b.iter(|| black_box(legacy.translate(sid, next(), Access::Read)).ok())
    });
    g.bench_function("scalable_second_stage", |b| {
        b.iter(|| black_box(scalable.translate(sid, next(), Access::Read)).ok())
    });
    g.bench_function("scalable_first_stage_pasid", |b| {
        b.iter(|| {
            black_box(scalable.translate_pasid(sid, Some(p1), false, next(), Access::Read)).ok()
        })
    });
    g.finish();
}

criterion_group!(benches, translate_4k_scalable, emu_translate_hit);
criterion_main!(benches);
