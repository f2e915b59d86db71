//! Scatter-gather lists mapped into one contiguous IOVA range (as Linux's
//! `iommu_dma_map_sg`): what the device reaches, asked of the unit.

mod common;

use std::time::Duration;

use common::*;
use invalidation::FlushConfig;
use teardown::{Error, MapperConfig, NoPinning, Reuse, sg_iova};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PAGE_SIZE, PhysAddr};
use vtd_tables::{Access, Perm};

fn rig(reuse: Reuse, flush: FlushConfig) -> Rig<NoPinning> {
    let config = MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) };
    Rig::new(config, NoPinning, EmuConfig::qemu())
}

#[test]
fn segments_land_back_to_back_and_go_at_unmap() {
    let lazy = Duration::from_millis(10);
    // Optimistic: a scatter-gather mapping is never kept stale.
    let mut r = rig(Reuse::Optimistic { quota: 64, time_limit: lazy }, FlushConfig::strict());
    let sg = [
        (PhysAddr::new(0x10_0800), 0x800),  // the tail of one page
        (PhysAddr::new(0x34_0000), 0x2000), // two whole pages elsewhere
        (PhysAddr::new(0x20_0000), 0x10),   // the head of another
    ];
    let first = r.mapper.map_sg(&sg, Perm::READ).unwrap();
    assert_eq!(first.page_offset(), 0x800);
    // Inner boundaries are page-aligned: one contiguous buffer of 0x2810 bytes.
    for (i, &(phys, len)) in sg.iter().enumerate() {
        let at = sg_iova(first, &sg, i).unwrap();
        assert_eq!(at.as_u64(), first.as_u64() + [0, 0x800, 0x2800][i]);
        for off in [0, len - 1] {
            let want = PhysAddr::new(phys.as_u64() + off);
            assert_eq!(r.dma(Iova::new(at.as_u64() + off), Access::Read), Some(want));
        }
        assert_eq!(r.dma(at, Access::Write), None, "read-only");
    }
    assert_eq!(sg_iova(first, &sg, 3), None);
    assert_eq!(r.mapper.mappings(), 1);
    r.mapper.unmap_sg(first, &sg).unwrap();
    assert_eq!((r.mapper.mappings(), r.mapper.stale()), (0, 0));
    assert_eq!(r.dma(first, Access::Read), None, "strict: gone when unmap_sg returns");
    assert_eq!(r.mapper.map_sg(&[], Perm::READ), Err(Error::Empty));
    assert_eq!(r.mapper.map_sg(&[(PhysAddr::new(PAGE_SIZE), 0)], Perm::READ), Err(Error::Empty));
}
