//! Context entries on QEMU's VT-d: a missing entry faults with reason 2, a
//! changed entry is served from the context cache until a device-selective
//! context-cache invalidation, and FPD suppresses fault recording (§9.3,
//! §6.5.3.3, §7.1.2).

mod common;

use common::{DID, Guest, pattern, start};
use viommu_qtest::IommuOptions;
use vtd_regs::regs::FaultType;
use vtd_regs::{FaultReason, Iova, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::{Attachment, ContextChange, Perm};

const IOVA: Iova = Iova::new(0x4000_0000);
const PAGE: usize = PAGE_SIZE as usize;

/// Has the device copy 64 bytes from `IOVA + 0x10` to `IOVA + 0x800`, and
/// returns what then sits at offset 0x800 of `page`.
fn copy_within(g: &Guest<'_>, page: PhysAddr) -> Vec<u8> {
    g.edu.read_memory(at(0x10), 0, 64).unwrap();
    g.edu.write_memory(0, at(0x800), 64).unwrap();
    let mut out = vec![0; 64];
    g.mem.read_bytes(PhysAddr::new(page.as_u64() + 0x800), &mut out).unwrap();
    out
}

fn at(offset: u64) -> Iova {
    Iova::new(IOVA.as_u64() + offset)
}

#[test]
fn missing_and_stale_context_entries() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    let page = g.page();
    let data = pattern(5, PAGE);
    g.mem.write_bytes(page, &data).unwrap();
    g.map(IOVA, page, Perm::READ_WRITE);
    let _: ContextChange = g.attach(Attachment::Blocked);
    g.enable();

    // No context entry: the read faults with reason 2.
    g.edu.read_memory(IOVA, 0, 64).unwrap();
    g.assert_fault(FaultType::Read, FaultReason::ContextEntryNotPresent, IOVA);

    // QEMU caches no absent entry: the new entry works without invalidation.
    let change = g.attach(g.translated());
    assert_eq!(change.previous, None);
    assert_eq!(copy_within(&g, page), data[0x10..0x50]);
    g.assert_no_fault();

    // Removed without invalidation: the cached context entry still serves.
    let change = g.attach(Attachment::Blocked);
    assert_eq!(change.previous, Some(DID));
    let newer = pattern(6, PAGE);
    g.mem.write_bytes(page, &newer).unwrap();
    assert_eq!(copy_within(&g, page), newer[0x10..0x50]);
    g.assert_no_fault();

    // After the device's context-cache (and the domain's IOTLB) invalidation
    // the entry is gone.
    g.invalidate_context(change);
    g.edu.write_memory(0, IOVA, 64).unwrap();
    g.assert_fault(FaultType::Write, FaultReason::ContextEntryNotPresent, IOVA);
    qemu.check().unwrap();
}

#[test]
fn fault_processing_disable_blocks_without_recording() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    let page = g.page();
    g.map(IOVA, page, Perm::READ);
    let entry = g.translated().entry().with_fpd(true);
    g.write_context(entry);
    g.enable();
    g.mem.write_bytes(page, &[0x33; PAGE]).unwrap();

    // A write to the read-only page (on a cold IOTLB, so the table is
    // walked) and one to an unmapped page are blocked, silently.
    g.edu.write_memory(0, at(0x100), 64).unwrap();
    g.edu.write_memory(0, Iova::new(0x7000_0000), 64).unwrap();
    let mut out = vec![0; PAGE];
    g.mem.read_bytes(page, &mut out).unwrap();
    assert_eq!(out, vec![0x33; PAGE]);
    // The read works: once the page is writable, what it brought into the
    // buffer lands in the (meanwhile changed) page.
    g.edu.read_memory(IOVA, 0, 64).unwrap();
    g.mem.write_bytes(page, &[0x44; PAGE]).unwrap();
    let owed = g.unmap(IOVA);
    g.flush(owed);
    g.map(IOVA, page, Perm::READ_WRITE);
    g.edu.write_memory(0, at(0x100), 64).unwrap();
    g.mem.read_bytes(page, &mut out).unwrap();
    assert_eq!(out[0x100..0x140], [0x33; 64]);
    assert_eq!(out[0x140..], [0x44; PAGE - 0x140]);
    g.assert_no_fault();
    qemu.check().unwrap();
}
