//! `SharedSlTable`: the same translations as a model under any sequence of
//! range maps and unmaps, tables detached only when covered whole, and
//! threads mapping disjoint ranges under shared tables at once.

mod common;

use std::collections::BTreeMap;

use common::{AtomicMem, SyncAlloc};
use proptest::prelude::*;
use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
use vtd_regs::{Iova, PAGE_SIZE, PageSize, PhysAddr};
use vtd_tables::{Error, Perm, SharedSlTable, TableConfig};

const MEM: usize = 24 << 20;
const FRAMES_AT: u64 = 8 << 20;

fn table(sllps: SecondLevelPageSizes) -> SharedSlTable<&'static AtomicMem, &'static SyncAlloc> {
    let mem: &'static AtomicMem = Box::leak(Box::new(AtomicMem::new(MEM)));
    let frames: &'static SyncAlloc = Box::leak(Box::new(SyncAlloc::new(FRAMES_AT, 4096)));
    let cfg = TableConfig::new(Sagaw::BITS39_L3 | Sagaw::BITS48_L4, sllps, 39).unwrap();
    SharedSlTable::new(mem, frames, cfg).unwrap()
}

#[test]
fn a_range_maps_with_the_largest_pages_and_a_covered_table_is_detached() {
    let t = table(SecondLevelPageSizes::SIZE_2MIB);
    // 2 MiB + 8 KiB at a 2 MiB-aligned IOVA and frame: one superpage, two leaves.
    let (iova, phys, len) = (Iova::new(0x4000_0000), PhysAddr::new(0x20_0000), (2 << 20) + 0x2000);
    t.map_range(iova, phys, len, Perm::READ).unwrap();
    assert_eq!(t.translate(iova).unwrap().size, PageSize::Size2MiB);
    let last = t.translate(Iova::new(iova.as_u64() + (2 << 20) + 0x1000)).unwrap();
    assert_eq!((last.size, last.phys), (PageSize::Size4KiB, PhysAddr::new(0x40_1000)));
    assert_eq!(
        t.map_range(Iova::new(0x4020_1000), PhysAddr::new(0), 0x2000, Perm::READ)
            .unwrap_err()
            .error,
        Error::AlreadyMapped { iova: Iova::new(0x4020_1000) }
    );
    // Part of the superpage: refused (this table does not split).
    let part = t.unmap_range(iova, 0x1000).unwrap_err();
    assert!(matches!(part.error, Error::Misaligned { size: PageSize::Size2MiB, .. }));
    assert!(part.done.is_empty());
    let _ = t.release(part.done);
    // The whole range: only leaves changed (the last-level table keeps its
    // other 510 entries' span).
    let token = t.unmap_range(iova, len).unwrap();
    assert_eq!((token.len(), token.leaf_only(), token.detached_frames()), (len, true, 0));
    t.release(token).unwrap();
    // A whole 2 MiB of 4 KiB pages: its last-level table is covered, detached.
    let frames = t.frames().live();
    t.map_range(iova, PhysAddr::new(0x1000), 2 << 20, Perm::WRITE).unwrap();
    assert_eq!(t.frames().live(), frames + 1);
    let token = t.unmap_range(iova, 2 << 20).unwrap();
    assert_eq!((token.leaf_only(), token.detached_frames()), (false, 1));
    assert!(t.translate(iova).is_none());
    t.release(token).unwrap();
    assert_eq!(t.frames().live(), frames);
    let frames: &SyncAlloc = t.frames();
    let _ = t.destroy();
    assert_eq!(frames.live(), 0);
}

#[test]
fn unmapping_a_hole_reports_the_part_done() {
    let t = table(SecondLevelPageSizes::empty());
    t.map_range(Iova::new(0x10_0000), PhysAddr::new(0x1000), 3 * PAGE_SIZE, Perm::READ).unwrap();
    let e = t.unmap_range(Iova::new(0x10_0000), 4 * PAGE_SIZE).unwrap_err();
    assert_eq!(e.error, Error::NotMapped { iova: Iova::new(0x10_3000) });
    assert_eq!(e.done.len(), 3 * PAGE_SIZE);
    t.release(e.done).unwrap();
    assert!(t.translate(Iova::new(0x10_2000)).is_none());
}

#[test]
fn threads_map_disjoint_ranges_under_shared_tables() {
    let t = table(SecondLevelPageSizes::SIZE_2MIB);
    let threads = 4u64;
    std::thread::scope(|s| {
        for k in 0..threads {
            let t = &t;
            s.spawn(move || {
                for round in 0..200u64 {
                    // Thread k owns pages k, k + 4, ...: every thread's pages
                    // share the same last-level and upper tables, all missing
                    // at first, so threads race to install them.
                    let page = (round % 50) * threads + k;
                    let iova = Iova::new(((round / 50) << 30) | (page * PAGE_SIZE));
                    let phys = PhysAddr::new(((k + 1) << 20) | (page * PAGE_SIZE));
                    t.map_range(iova, phys, PAGE_SIZE, Perm::READ).unwrap();
                    assert_eq!(t.translate(iova).unwrap().phys, phys);
                    if round % 2 == 1 {
                        let token = t.unmap_range(iova, PAGE_SIZE).unwrap();
                        t.release(token).unwrap();
                        assert!(t.translate(iova).is_none());
                    }
                }
            });
        }
    });
    // Four 1 GiB regions: each a level-2 and a level-1 table, plus the root;
    // every frame a losing racer allocated went back.
    assert_eq!(t.frames().live(), 1 + 4 * 2);
    let frames: &SyncAlloc = t.frames();
    let _ = t.destroy();
    assert_eq!(frames.live(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Disjoint ranges mapped and unmapped in any order translate as a
    /// model says; after everything is unmapped and released, destroying
    /// the table frees every frame.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec((0u64..24, 1u64..700, any::<bool>()), 1..40)) {
        let t = table(SecondLevelPageSizes::SIZE_2MIB);
        let mut model: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new(); // slot -> (iova, pages, phys)
        for (slot, pages, phys_aligned) in ops {
            // Slot n owns IOVA [n * 4 MiB, (n + 1) * 4 MiB).
            let iova = slot << 22;
            if let Some((at, n, _)) = model.remove(&slot) {
                let token = t.unmap_range(Iova::new(at), n * PAGE_SIZE).unwrap();
                prop_assert_eq!(token.len(), n * PAGE_SIZE);
                t.release(token).unwrap();
                prop_assert!(t.translate(Iova::new(at)).is_none());
            } else {
                let phys = if phys_aligned { 2 << 20 } else { 0x1000 };
                t.map_range(Iova::new(iova), PhysAddr::new(phys), pages * PAGE_SIZE, Perm::WRITE).unwrap();
                model.insert(slot, (iova, pages, phys));
            }
            for &(at, n, phys) in model.values() {
                for p in [0, n / 2, n - 1] {
                    let tr = t.translate(Iova::new(at + p * PAGE_SIZE)).unwrap();
                    prop_assert_eq!(tr.phys.as_u64(), phys + p * PAGE_SIZE);
                }
                prop_assert!(t.translate(Iova::new(at + n * PAGE_SIZE)).is_none());
            }
        }
        for (at, n, _) in model.into_values() {
            let token = t.unmap_range(Iova::new(at), n * PAGE_SIZE).unwrap();
            t.release(token).unwrap();
        }
        let frames: &SyncAlloc = t.frames();
        let _ = t.destroy();
        prop_assert_eq!(frames.live(), 0);
    }
}
