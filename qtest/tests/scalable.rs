//! Scalable mode end to end on QEMU 7.2's `intel-iommu,x-scalable-mode=on`
//! (ECAP.SMTS, SLTS, SRS): a driver built from the library (`vtd-tables`'
//! `ScalableContextManager`, `PasidTable` and `SlPageTable`, `invalidation`'s
//! `QueuedInvalidator`, which uses 256-bit descriptors on this unit) moves
//! edu DMA through a second-stage PASID entry and a pass-through one,
//! posting the PASID-cache and IOTLB invalidations its tokens owe. The
//! differential suite (`differential.rs`, `scalable_*`) compares QEMU with
//! `vtd-emu`'s `EmuConfig::qemu_scalable()` step by step.

mod common;

use common::{DID, EDU_SID, pattern, start, token_range};
use invalidation::{Invalidation, Invalidator, PageBlocks, QueuedInvalidator};
use viommu_qtest::{EDU_BUFFER_SIZE, Edu, GuestFrames, IommuOptions, QtestMem, QtestMmio};
use vtd_regs::desc::Pasid;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{DescriptorWidth, Iqa, QueueSize};
use vtd_regs::{Drain, FrameAllocator, Iova, Mmio, PAGE_SIZE, PageSize, PhysMem, RemappingUnit};
use vtd_tables::{
    PasidAttachment, PasidTable, Perm, ScalableContextManager, SlPageTable, TableConfig,
};

const IOVA: Iova = Iova::new(0x4000_0000);
const PAGE: usize = PAGE_SIZE as usize;

fn options() -> IommuOptions {
    IommuOptions { scalable_mode: true, ..IommuOptions::default() }
}

#[test]
fn qemu_reports_scalable_mode_as_vtd_emu_models_it() {
    let qemu = start(&options());
    let unit = RemappingUnit::new(QtestMmio::new(&qemu)).unwrap();
    let emu = vtd_emu::EmuConfig::qemu_scalable();
    assert_eq!((unit.cap(), unit.ecap()), (emu.cap, emu.ecap));
    qemu.check().unwrap();
}

#[test]
fn second_stage_and_pass_through_pasid_entries_carry_dma() {
    let qemu = start(&options());
    let mem = QtestMem::new(&qemu);
    let frames = GuestFrames::default();
    let edu = Edu::probe(&qemu).unwrap();
    let unit = RemappingUnit::new(QtestMmio::new(&qemu)).unwrap();
    let cap = unit.cap();
    let size = QueueSize::from_order(0).unwrap();
    let mut inv = QueuedInvalidator::new(unit, mem, &frames, size).map_err(|r| r.error).unwrap();
    // QEMU 7.2 takes IQA.DW from the write but reads it back as 0.
    let iqa: Iqa = inv.unit().mmio().read_reg();
    assert_eq!(iqa.width(), DescriptorWidth::Bits128);

    let mut contexts = ScalableContextManager::new(mem, frames.clone()).unwrap();
    let mut pasids = PasidTable::new(mem, frames.clone()).unwrap();
    let mut table = SlPageTable::new(
        mem,
        frames.clone(),
        TableConfig::from_cap(cap, cap.mgaw().bits()).unwrap(),
    )
    .unwrap();
    let rid_pasid = Pasid::new(0).unwrap();
    let change = pasids.set(rid_pasid, PasidAttachment::table(DID, &table)).unwrap();
    assert!(change.current.is_some_and(|c| !c.tagged_by_pasid()));
    let attached = contexts.attach(EDU_SID, &pasids, rid_pasid, false).unwrap();
    inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).unwrap();
    inv.invalidate(Invalidation::scalable_context_changed(attached.sid)).unwrap();
    inv.unit().enable_translation().unwrap();

    // Second stage: DMA reads the page mapped at IOVA.
    let src = frames.allocate(0).unwrap();
    let data = pattern(3, PAGE);
    mem.write_bytes(src, &data).unwrap();
    table.map(IOVA, src, PageSize::Size4KiB, Perm::READ_WRITE).unwrap();
    edu.read_memory(IOVA, 0, EDU_BUFFER_SIZE).unwrap();
    edu.write_memory(0, Iova::new(IOVA.as_u64() + 0x800), 16).unwrap();
    let mut out = vec![0; PAGE];
    mem.read_bytes(src, &mut out).unwrap();
    assert_eq!(out[0x800..0x810], data[..16], "written back through the same page");
    assert_eq!(inv.unit().drain_faults().count(), 0);

    // Unmapped and invalidated as the token owes: the read faults. QEMU
    // 7.2 reports the legacy reason (6h) in scalable mode too, vtd-emu the
    // scalable-mode one (86h): docs/qemu-vs-vtd-emu.md, LegacyCodesInScalableMode.
    let token = table.unmap(IOVA, PageSize::Size4KiB).unwrap();
    let mamv = cap.mamv().max_order();
    let blocks = PageBlocks::new(DID, &token_range(&token), mamv, token.leaf_only());
    inv.invalidate(blocks.map(|scope| Invalidation::Iotlb { scope, drain: Drain::empty() }))
        .unwrap();
    table.release(token).unwrap();
    edu.read_memory(IOVA, 0, 16).unwrap();
    let faults: Vec<_> = inv.unit().drain_faults().collect();
    let [f] = faults.as_slice() else { panic!("one fault expected: {faults:?}") };
    assert_eq!((f.source, f.reason_code, f.fault_info), (EDU_SID, 0x06, IOVA.as_u64()));

    // Pass-through for RID_PASID: the token owes a PASID-selective
    // PASID-cache invalidation (a 256-bit type-7 descriptor) and the old
    // domain's IOTLB.
    let change = pasids
        .set(rid_pasid, PasidAttachment::PassThrough { domain: DID, agaw: Agaw::Bits39 })
        .unwrap();
    let old = change.previous.unwrap();
    inv.invalidate(Invalidation::pasid_changed(old.domain, change.pasid, old.tagged_by_pasid()))
        .unwrap();
    let dst = frames.allocate(0).unwrap();
    mem.zero_frame(dst).unwrap();
    edu.read_memory(Iova::new(src.as_u64()), 0, 16).unwrap();
    edu.write_memory(0, Iova::new(dst.as_u64()), 16).unwrap();
    mem.read_bytes(dst, &mut out).unwrap();
    let faults: Vec<_> = inv.unit().drain_faults().collect();
    assert_eq!(
        out[..16],
        data[..16],
        "pass-through reaches pages at their own address: {faults:x?}"
    );
    assert_eq!(inv.unit().drain_faults().count(), 0);
    let c = inv.counters();
    assert!(c.descriptors[vtd_regs::desc::DescType::PasidCache as usize] >= 2, "{c:?}");
    qemu.check().unwrap();
}
