//! The `invalidation` crate's invalidators against QEMU's VT-d: the queued
//! ring (§6.5.2) and the register fallback (§6.5.1) turn unmap tokens and
//! context changes into completed invalidations that QEMU honours, and the
//! ring keeps working as it wraps around.

mod common;

use common::{DID, EDU_SID, Guest, pattern, start, token_range};
use invalidation::{Invalidation, Invalidator, PageBlocks, QueuedInvalidator, RegisterInvalidator};
use viommu_qtest::{IommuOptions, Qemu, QtestMem, QtestMmio};
use vtd_regs::desc::DescType;
use vtd_regs::regs::{FaultType, QueueSize};
use vtd_regs::{
    ContextScope, Drain, FaultReason, FunctionMask, IotlbScope, Iova, PAGE_SIZE, PhysMem,
    RemappingUnit,
};
use vtd_tables::{Attachment, Perm, Unmapped};

const IOVAS: [Iova; 3] =
    [Iova::new(0x4000_0000), Iova::new(0x4000_1000), Iova::new(0x12_3456_0000)];
const PAGE: usize = PAGE_SIZE as usize;

/// The IOTLB invalidations an unmap token owes.
fn owed(token: &Unmapped, mamv: u8) -> impl Iterator<Item = Invalidation> {
    PageBlocks::new(DID, &token_range(token), mamv, token.leaf_only())
        .map(|scope| Invalidation::Iotlb { scope, drain: Drain::empty() })
}

/// Maps three pages, caches their translations, unmaps them and checks
/// that the stale translations work until `inv` invalidates what the
/// tokens owe; then detaches the device and checks that the context cache
/// serves until `inv` invalidates the context change.
fn stale_until_invalidated(g: &mut Guest<'_>, inv: &mut impl Invalidator) {
    let pages: Vec<_> = IOVAS.iter().map(|_| g.page()).collect();
    for (iova, page) in IOVAS.iter().zip(&pages) {
        g.map(*iova, *page, Perm::READ_WRITE);
    }
    let data = pattern(8, PAGE);
    g.mem.write_bytes(pages[0], &data).unwrap();
    g.edu.read_memory(IOVAS[0], 0, 256).unwrap();
    for iova in IOVAS {
        g.edu.write_memory(0, iova, 256).unwrap();
    }
    let tokens: Vec<_> = IOVAS.iter().map(|iova| g.unmap(*iova)).collect();

    // Stale: every page still takes the write.
    let fresh = pattern(9, PAGE);
    g.mem.write_bytes(pages[0], &fresh).unwrap();
    g.edu.read_memory(IOVAS[0], 0, 256).unwrap();
    for (iova, page) in IOVAS.iter().zip(&pages) {
        g.edu.write_memory(0, Iova::new(iova.as_u64() + 0x800), 256).unwrap();
        let mut out = vec![0; 256];
        g.mem.read_bytes(vtd_regs::PhysAddr::new(page.as_u64() + 0x800), &mut out).unwrap();
        assert_eq!(out, fresh[..256]);
    }
    g.assert_no_fault();

    // One batch for all three tokens.
    let mamv = g.mamv();
    let batch: Vec<_> = tokens.iter().flat_map(|t| owed(t, mamv)).collect();
    inv.invalidate(batch).unwrap();
    for token in tokens {
        g.table.release(token).unwrap();
    }
    for iova in IOVAS {
        g.edu.write_memory(0, iova, 16).unwrap();
        g.assert_fault(FaultType::Write, FaultReason::WriteNotPermitted, iova);
    }

    // Context: remap one page, detach the device; the cached context entry
    // serves until the change is invalidated.
    g.map(IOVAS[0], pages[0], Perm::READ_WRITE);
    let change = g.attach(Attachment::Blocked);
    g.edu.write_memory(0, IOVAS[0], 16).unwrap();
    g.assert_no_fault();
    let function_mask = FunctionMask::None;
    inv.invalidate([
        Invalidation::Context(ContextScope::Device { domain: DID, source: EDU_SID, function_mask }),
        Invalidation::Iotlb { scope: IotlbScope::Domain(DID), drain: Drain::empty() },
    ])
    .unwrap();
    assert_eq!(change.previous, Some(DID));
    g.edu.write_memory(0, IOVAS[0], 16).unwrap();
    g.assert_fault(FaultType::Write, FaultReason::ContextEntryNotPresent, IOVAS[0]);
}

/// A second handle on QEMU's unit, for the invalidator to own.
fn unit(qemu: &Qemu) -> RemappingUnit<QtestMmio<'_>> {
    RemappingUnit::new(QtestMmio::new(qemu)).unwrap()
}

fn queued<'q>(g: &Guest<'q>, qemu: &'q Qemu) -> QueuedInvalidator<QtestMmio<'q>, QtestMem<'q>> {
    let size = QueueSize::from_order(0).unwrap();
    QueuedInvalidator::new(unit(qemu), g.mem, &g.frames, size).map_err(|r| r.error).unwrap()
}

#[test]
fn queued_invalidator_ends_stale_translations_and_contexts() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    g.enable();
    let mut inv = queued(&g, &qemu);
    stale_until_invalidated(&mut g, &mut inv);
    let c = inv.counters();
    assert_eq!((c.batches, c.tail_writes, c.queue_errors), (2, 2, 0), "{c:?}");
    assert_eq!(c.descriptors_of(DescType::Wait), 2);
    assert!(inv.unit().take_queue_error().is_none());
    qemu.check().unwrap();
}

#[test]
fn register_invalidator_ends_stale_translations_and_contexts() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    g.enable();
    let mut inv = RegisterInvalidator::new(unit(&qemu));
    stale_until_invalidated(&mut g, &mut inv);
    assert!(inv.counters().register_commands >= 5, "{:?}", inv.counters());
    qemu.check().unwrap();
}

#[test]
fn queue_wraps_around() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    g.enable();
    let mut inv = queued(&g, &qemu);
    let entries = inv.entries();
    // Each batch is a descriptor and its wait: 3 turns of the ring.
    let batches = 3 * entries / 2 + 1;
    for i in 0..batches {
        let scope = IotlbScope::pages(DID, Iova::new((i as u64) << 12), 0, true).unwrap();
        inv.invalidate([Invalidation::Iotlb { scope, drain: Drain::empty() }]).unwrap();
    }
    assert_eq!(inv.counters().batches, batches as u64);
    assert!(inv.unit().take_queue_error().is_none());
    // The ring still does its job after wrapping.
    stale_until_invalidated(&mut g, &mut inv);
    qemu.check().unwrap();
}
