//! 2 MiB and 1 GiB second-level pages (PS = 1, §9.8) on QEMU's VT-d, whose
//! CAP.SLLPS reports both.

mod common;

use common::{Guest, pattern, start};
use viommu_qtest::IommuOptions;
use vtd_regs::{FrameAllocator, Iova, PAGE_SIZE, PageSize, PhysAddr, PhysMem};
use vtd_tables::Perm;

const PAGE: usize = PAGE_SIZE as usize;

/// Has the device copy 256 bytes from `from` to `to` through the IOMMU.
fn copy(g: &Guest<'_>, from: Iova, to: Iova) {
    g.edu.read_memory(from, 0, 256).unwrap();
    g.edu.write_memory(0, to, 256).unwrap();
}

#[test]
fn superpages_translate_every_offset_inside_them() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    assert!(g.unit.cap().sllps().supports(PageSize::Size1GiB));

    // A 2 MiB page (frame block of order 9) at a 2 MiB-aligned IOVA.
    let block = g.frames.allocate(9).unwrap();
    let iova_2m = Iova::new(0x4020_0000);
    g.table.map(iova_2m, block, PageSize::Size2MiB, Perm::READ_WRITE).unwrap();
    // A 1 GiB page over guest physical 0..1 GiB, so RAM is reachable at
    // IOVA 0x40_0000_0000 + its physical address.
    let iova_1g = Iova::new(0x40_0000_0000);
    g.table.map(iova_1g, PhysAddr::ZERO, PageSize::Size1GiB, Perm::READ_WRITE).unwrap();
    g.enable();

    // Through the 2 MiB page: from its first page to its last one.
    let data = pattern(9, PAGE);
    g.mem.write_bytes(block, &data).unwrap();
    let last = 0x1F_F000 + 0x300;
    copy(&g, iova_2m, Iova::new(iova_2m.as_u64() + last));
    let mut out = vec![0; 256];
    g.mem.read_bytes(PhysAddr::new(block.as_u64() + last), &mut out).unwrap();
    assert_eq!(out, data[..256]);

    // Through the 1 GiB page: to a frame the page tables know nothing of.
    let page = g.page();
    copy(&g, iova_2m, Iova::new(iova_1g.as_u64() + page.as_u64() + 0x40));
    g.mem.read_bytes(PhysAddr::new(page.as_u64() + 0x40), &mut out).unwrap();
    assert_eq!(out, data[..256]);

    g.assert_no_fault();
    qemu.check().unwrap();
}
