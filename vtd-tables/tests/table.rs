//! The mapper and the context manager on hand-picked cases: depths, page
//! sizes, splitting, tokens, running out of frames, and frame counts.

mod common;

use common::{CountingAlloc, VecMem};
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::{Cap, Sagaw, SecondLevelPageSizes};
use vtd_regs::{DomainId, Iova, PageSize, PhysAddr, SourceId};
use vtd_tables::{
    Access, Attachment, ContextEntry, ContextInfo, ContextManager, Error, Perm, SlPageTable,
    TableConfig, Translation, TranslationType, WalkLimits, lookup_context, walk, walk_second_level,
};

const MIB2: u64 = 1 << 21;
const GIB: u64 = 1 << 30;

fn setup(width: u8, sllps: SecondLevelPageSizes) -> (VecMem, CountingAlloc, TableConfig) {
    let cfg = TableConfig::new(Sagaw::all(), sllps, width).unwrap();
    (VecMem::filled(8 << 20, u64::MAX), CountingAlloc::new(1 << 20, 1024), cfg)
}

fn t(phys: u64, perm: Perm, size: PageSize) -> Option<Translation> {
    Some(Translation { phys: PhysAddr::new(phys), perm, size })
}

#[test]
fn depth_follows_sagaw_and_width() {
    let qemu = Cap(0x00d2_008c_2226_0206);
    assert_eq!(TableConfig::from_cap(qemu, 39).unwrap().agaw(), Agaw::Bits39);
    assert_eq!(TableConfig::from_cap(qemu, 48), Err(Error::UnsupportedWidth { bits: 48 }));
    let cfg =
        TableConfig::new(Sagaw::BITS48_L4 | Sagaw::BITS57_L5, SecondLevelPageSizes::all(), 32)
            .unwrap();
    assert_eq!((cfg.agaw(), cfg.width()), (Agaw::Bits48, 32));
    assert_eq!(
        TableConfig::new(Sagaw::all(), SecondLevelPageSizes::all(), 57).unwrap().agaw(),
        Agaw::Bits57
    );
}

#[test]
fn every_depth_and_size_maps_and_frees() {
    for width in [39, 48, 57] {
        let (mem, alloc, cfg) = setup(width, SecondLevelPageSizes::all());
        let levels = cfg.agaw().levels() as usize;
        let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
        let top = (1u64 << width) - GIB;
        for (iova, size) in [
            (0x7000, PageSize::Size4KiB),
            (top + 3 * MIB2, PageSize::Size2MiB),
            (top, PageSize::Size1GiB),
        ] {
            let frames = alloc.live.get();
            table
                .map(Iova::new(iova), PhysAddr::new(0x1_0000_0000 + iova % GIB), size, Perm::READ)
                .unwrap();
            assert_eq!(
                table.translate(Iova::new(iova + 8)),
                t(0x1_0000_0000 + iova % GIB + 8, Perm::READ, size)
            );
            let token = table.unmap(Iova::new(iova), size).unwrap();
            assert_eq!((token.iova(), token.len()), (Iova::new(iova), size.bytes()));
            assert_eq!(
                token.leaf_only(),
                token.detached_frames() == 0,
                "tables it needed are detached"
            );
            assert_eq!(token.detached_frames() as usize, levels - size.level() as usize);
            assert_eq!(table.translate(Iova::new(iova)), None);
            assert_eq!(alloc.live.get(), frames + token.detached_frames() as usize);
            table.release(token).unwrap();
            assert_eq!(alloc.live.get(), 1, "width {width}: only the root is left");
        }
        assert_eq!(
            table.map(Iova::new(1 << width), PhysAddr::new(0), PageSize::Size4KiB, Perm::READ),
            Err(Error::BeyondWidth { iova: Iova::new(1 << width) })
        );
        assert!(levels >= 3);
        let _ = table.destroy();
        assert_eq!(alloc.live.get(), 0);
    }
}

#[test]
fn errors_are_typed_and_change_nothing() {
    let (mem, alloc, cfg) = setup(39, SecondLevelPageSizes::SIZE_2MIB);
    let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    let (i, p) = (Iova::new(0x20_0000), PhysAddr::new(0x4000_0000));
    assert_eq!(
        table.map(i, p, PageSize::Size1GiB, Perm::READ),
        Err(Error::UnsupportedPageSize(PageSize::Size1GiB))
    );
    assert_eq!(
        table.map(Iova::new(0x1000), p, PageSize::Size2MiB, Perm::READ),
        Err(Error::Misaligned { iova: Iova::new(0x1000), phys: p, size: PageSize::Size2MiB })
    );
    assert_eq!(table.map(i, p, PageSize::Size4KiB, Perm::empty()), Err(Error::NoPermission));
    assert_eq!(
        table.map(i, PhysAddr::new(1 << 52), PageSize::Size4KiB, Perm::READ),
        Err(Error::PhysBeyondWidth { phys: PhysAddr::new(1 << 52) })
    );
    assert_eq!(table.unmap(i, PageSize::Size4KiB).unwrap_err(), Error::NotMapped { iova: i });
    table.map(i, p, PageSize::Size4KiB, Perm::READ).unwrap();
    assert_eq!(
        table.map(i, p, PageSize::Size4KiB, Perm::READ),
        Err(Error::AlreadyMapped { iova: i })
    );
    assert_eq!(
        table.map(i, p, PageSize::Size2MiB, Perm::READ),
        Err(Error::AlreadyMapped { iova: i })
    );
    assert_eq!(
        table.unmap(i, PageSize::Size2MiB).unwrap_err(),
        Error::MappedWithSmallerPages { iova: i }
    );
    // Out of frames: nothing changes, nothing leaks.
    alloc.limit.set(alloc.live.get());
    let far = Iova::new(0x40_0000_0000 >> 1);
    assert_eq!(table.map(far, p, PageSize::Size4KiB, Perm::READ), Err(Error::OutOfFrames));
    assert_eq!(table.translate(far), None);
    assert_eq!(alloc.live.get(), 3);
    // A range stops at the first mapped page and says how far it got.
    alloc.limit.set(usize::MAX);
    let e = table.map_range(Iova::new(0x1f_e000), p, 0x3000, Perm::READ).unwrap_err();
    assert_eq!((e.mapped, e.error), (0x2000, Error::AlreadyMapped { iova: i }));
    assert_eq!(
        table.translate(Iova::new(0x1f_f000)),
        t(0x4000_1000, Perm::READ, PageSize::Size4KiB)
    );
    let _ = table.destroy();
    assert_eq!(alloc.live.get(), 0);
}

#[test]
fn split_superpages() {
    let (mem, alloc, cfg) = setup(48, SecondLevelPageSizes::all());
    let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    let base = 3 * GIB;
    table
        .map(Iova::new(base), PhysAddr::new(7 * GIB), PageSize::Size1GiB, Perm::READ_WRITE)
        .unwrap();
    assert_eq!(alloc.live.get(), 2);
    // Unmapping one 4 KiB page splits the 1 GiB page into 2 MiB pages and
    // one of those into 4 KiB pages.
    let hole = Iova::new(base + 5 * MIB2 + 0x3000);
    let tok = table.unmap(hole, PageSize::Size4KiB).unwrap();
    assert!(!tok.leaf_only());
    assert_eq!(tok.detached_frames(), 0);
    table.release(tok).unwrap();
    assert_eq!(alloc.live.get(), 4);
    assert_eq!(table.translate(hole), None);
    assert_eq!(
        table.translate(Iova::new(hole.as_u64() + 0x1000)),
        t(7 * GIB + 5 * MIB2 + 0x4000, Perm::READ_WRITE, PageSize::Size4KiB)
    );
    assert_eq!(
        table.translate(Iova::new(base + 6 * MIB2 + 9)),
        t(7 * GIB + 6 * MIB2 + 9, Perm::READ_WRITE, PageSize::Size2MiB)
    );
    assert_eq!(
        table.translate(Iova::new(base + GIB - 1)),
        t(8 * GIB - 1, Perm::READ_WRITE, PageSize::Size2MiB)
    );
    // The split tables hold counts: unmapping the rest frees them all.
    let tok = table.unmap_range(Iova::new(base), hole.as_u64() - base).unwrap();
    table.release(tok).unwrap();
    let rest = hole.as_u64() + 0x1000;
    let tok = table.unmap_range(Iova::new(rest), base + GIB - rest).unwrap();
    assert!(tok.detached_frames() >= 2);
    table.release(tok).unwrap();
    assert_eq!(alloc.live.get(), 1);
    // A split with no frame left changes nothing.
    table.map(Iova::new(base), PhysAddr::new(7 * GIB), PageSize::Size1GiB, Perm::READ).unwrap();
    alloc.limit.set(alloc.live.get());
    assert_eq!(table.unmap(hole, PageSize::Size4KiB).unwrap_err(), Error::OutOfFrames);
    assert_eq!(
        table.translate(hole),
        t(7 * GIB + (hole.as_u64() - base), Perm::READ, PageSize::Size1GiB)
    );
}

#[test]
fn range_map_uses_largest_pages() {
    let (mem, alloc, cfg) = setup(48, SecondLevelPageSizes::all());
    let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    // [1 GiB - 4 KiB, 2 GiB + 2 MiB + 4 KiB): 4K, 1G, 2M, 4K.
    let start = GIB - 0x1000;
    let len = 0x1000 + GIB + MIB2 + 0x1000;
    table.map_range(Iova::new(start), PhysAddr::new(4 * GIB + start), len, Perm::WRITE).unwrap();
    let sizes: Vec<_> = [start, GIB, 2 * GIB, 2 * GIB + MIB2]
        .iter()
        .map(|i| table.translate(Iova::new(*i)).unwrap().size)
        .collect();
    assert_eq!(
        sizes,
        [PageSize::Size4KiB, PageSize::Size1GiB, PageSize::Size2MiB, PageSize::Size4KiB]
    );
    // A 2 MiB piece is refused where a table of smaller pages is in the way.
    let e = table.map_range(Iova::new(GIB - MIB2), PhysAddr::new(0), MIB2, Perm::READ).unwrap_err();
    assert_eq!(
        (e.mapped, e.error),
        (MIB2 - 0x1000, Error::AlreadyMapped { iova: Iova::new(start) })
    );
    let tok = table.unmap_range(Iova::new(GIB - MIB2), MIB2).unwrap();
    table.release(tok).unwrap();
    let tok = table.unmap_range(Iova::new(GIB), len - 0x1000).unwrap();
    assert_eq!(tok.len(), len - 0x1000);
    table.release(tok).unwrap();
    assert_eq!(alloc.live.get(), 1);
}

#[test]
fn narrow_domains_refuse_pages_beyond_width() {
    // A 1 MiB domain: half of one last-level table's region is beyond it.
    let (mem, alloc, cfg) = setup(20, SecondLevelPageSizes::all());
    let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    let (a, b, beyond) = (Iova::new(0), Iova::new(0x1000), Iova::new(1 << 20));
    for iova in [a, b] {
        table.map(iova, PhysAddr::new(GIB), PageSize::Size4KiB, Perm::READ).unwrap();
    }
    let err = Err(Error::BeyondWidth { iova: beyond });
    assert_eq!(table.map(beyond, PhysAddr::new(GIB), PageSize::Size4KiB, Perm::READ), err);
    assert_eq!(table.unmap(beyond, PageSize::Size4KiB).map(|t| t.len()), err.map(|()| 0));
    assert_eq!(table.translate(beyond), None);
    // A page that starts inside but reaches beyond the width is refused too.
    let tok = table.unmap(a, PageSize::Size4KiB).unwrap();
    table.release(tok).unwrap();
    let tok = table.unmap(b, PageSize::Size4KiB).unwrap();
    table.release(tok).unwrap();
    assert_eq!(
        table.map(a, PhysAddr::new(GIB), PageSize::Size2MiB, Perm::READ),
        Err(Error::BeyondWidth { iova: a })
    );
    assert_eq!(alloc.live.get(), 1);
}

#[test]
fn walk_cache_follows_detached_tables() {
    let (mem, alloc, cfg) = setup(48, SecondLevelPageSizes::all());
    let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    let (a, b) = (Iova::new(0x20_0000), Iova::new(0x20_1000));
    table.map(a, PhysAddr::new(0x1000), PageSize::Size4KiB, Perm::READ).unwrap();
    // The only page: its table is detached (and freed, then reused).
    let tok = table.unmap(a, PageSize::Size4KiB).unwrap();
    assert_eq!(tok.detached_frames(), 3);
    table.release(tok).unwrap();
    table.map(b, PhysAddr::new(0x2000), PageSize::Size4KiB, Perm::READ).unwrap();
    assert_eq!(table.translate(b), t(0x2000, Perm::READ, PageSize::Size4KiB));
    table.map(a, PhysAddr::new(0x1000), PageSize::Size4KiB, Perm::READ).unwrap();
    let tok = table.unmap(b, PageSize::Size4KiB).unwrap();
    assert!(tok.leaf_only() && tok.detached_frames() == 0);
    table.release(tok).unwrap();
    assert_eq!(table.unmap(b, PageSize::Size4KiB).unwrap_err(), Error::NotMapped { iova: b });
    assert_eq!(table.translate(a), t(0x1000, Perm::READ, PageSize::Size4KiB));
    assert_eq!(alloc.live.get(), 4);
}

#[test]
fn walk_cache_follows_detached_level2_tables() {
    let (mem, alloc, cfg) = setup(48, SecondLevelPageSizes::all());
    let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    let (a, a2, c) = (Iova::new(0), Iova::new(0x1000), Iova::new(0x2000));
    table.map(a, PhysAddr::new(0x1000), PageSize::Size4KiB, Perm::READ).unwrap();
    // The fast path caches GiB 0's level-2 table...
    table.map(a2, PhysAddr::new(0x2000), PageSize::Size4KiB, Perm::READ).unwrap();
    let tok = table.unmap(a2, PageSize::Size4KiB).unwrap();
    table.release(tok).unwrap();
    // ...which the last unmap detaches with the tables above and below it.
    let tok = table.unmap(a, PageSize::Size4KiB).unwrap();
    assert_eq!(tok.detached_frames(), 3);
    table.release(tok).unwrap();
    // GiB 1's new tables reuse the frames: its level-2 table is GiB 0's old one.
    let b = Iova::new(GIB);
    table.map(b, PhysAddr::new(0x3000), PageSize::Size4KiB, Perm::READ).unwrap();
    table.map(c, PhysAddr::new(0x4000), PageSize::Size4KiB, Perm::WRITE).unwrap();
    assert_eq!(table.translate(c), t(0x4000, Perm::WRITE, PageSize::Size4KiB));
    assert_eq!(table.translate(Iova::new(GIB + 0x2000)), None);
    assert_eq!(table.translate(b), t(0x3000, Perm::READ, PageSize::Size4KiB));
    assert_eq!(alloc.live.get(), 1 + 3 + 2);
}

#[test]
fn tokens_release_in_any_order_and_only_home() {
    let (mem, alloc, cfg) = setup(39, SecondLevelPageSizes::all());
    let mut t1 = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    let mut t2 = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    for k in 0..4u64 {
        t1.map(Iova::new(k * GIB), PhysAddr::new(k << 12), PageSize::Size4KiB, Perm::READ).unwrap();
    }
    let toks: Vec<_> =
        (0..4u64).map(|k| t1.unmap(Iova::new(k * GIB), PageSize::Size4KiB).unwrap()).collect();
    assert_eq!(alloc.live.get(), 2 + 4 * 2, "detached frames wait for release");
    let mut toks = toks.into_iter().rev();
    let first = toks.next().unwrap();
    let first = t2.release(first).unwrap_err();
    t1.release(first).unwrap();
    for tok in toks {
        t1.release(tok).unwrap();
    }
    assert_eq!(alloc.live.get(), 2);
}

#[test]
fn snoop_sets_snp_in_every_leaf() {
    for snoop in [false, true] {
        let (mem, alloc, cfg) = setup(48, SecondLevelPageSizes::all());
        let mut table = SlPageTable::new(&mem, &alloc, cfg.with_snoop(snoop)).unwrap();
        let pages =
            [(0, PageSize::Size4KiB), (0x1000, PageSize::Size4KiB), (MIB2, PageSize::Size2MiB)];
        for (iova, size) in pages {
            // The first 4 KiB page takes the general path, the second the fast path.
            table.map(Iova::new(iova), PhysAddr::new(GIB + iova), size, Perm::READ).unwrap();
        }
        let ctx = ContextInfo {
            domain: DomainId::new(1),
            translation_type: TranslationType::Untranslated,
            agaw: table.config().agaw(),
            slptptr: table.root(),
            fpd: false,
        };
        for snoop_control in [false, true] {
            let limits = WalkLimits {
                haw: 48,
                mgaw: 48,
                sagaw: Sagaw::all(),
                sllps: SecondLevelPageSizes::all(),
                pass_through: false,
                device_tlb: false,
                snoop_control,
            };
            for (iova, _) in pages {
                let r = walk_second_level(&mem, &ctx, Iova::new(iova), Access::Read, &limits);
                // SNP is reserved unless the unit has snoop control (§9.8).
                assert_eq!(r.is_ok(), !snoop || snoop_control, "{iova:#x} snoop {snoop}");
            }
        }
    }
}

#[test]
fn manager_attaches_and_blocks() {
    let (mem, alloc, cfg) = setup(48, SecondLevelPageSizes::all());
    let ctx_alloc = CountingAlloc::new(0, 64);
    let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
    table
        .map(Iova::new(0x5000), PhysAddr::new(0x9000), PageSize::Size4KiB, Perm::READ_WRITE)
        .unwrap();
    let mut mgr = ContextManager::new(&mem, &ctx_alloc).unwrap();
    let sid = SourceId::new(2, 4, 1).unwrap();
    let limits = WalkLimits {
        haw: 48,
        mgaw: 48,
        sagaw: Sagaw::all(),
        sllps: SecondLevelPageSizes::all(),
        pass_through: true,
        device_tlb: false,
        snoop_control: false,
    };
    let rt = mgr.root_table();
    let fault =
        |m: &VecMem| walk(m, rt, sid, Iova::new(0x5000), Access::Read, &limits).unwrap_err().reason;
    assert_eq!(fault(&mem) as u8, 1, "nothing attached: root entry not present");

    let change = mgr.attach(sid, DomainId::new(9), &table).unwrap();
    assert_eq!((change.previous, change.current), (None, Some(DomainId::new(9))));
    assert_eq!(
        mgr.context(sid).unwrap(),
        ContextEntry::translated(
            DomainId::new(9),
            table.root(),
            Agaw::Bits48,
            TranslationType::Untranslated
        )
    );
    let ctx = lookup_context(&mem, rt, sid, &limits).unwrap();
    assert_eq!((ctx.domain, ctx.slptptr, ctx.agaw), (DomainId::new(9), table.root(), Agaw::Bits48));
    let (_, tr) = walk(&mem, rt, sid, Iova::new(0x5004), Access::Write, &limits).unwrap();
    assert_eq!(tr.phys, PhysAddr::new(0x9004));

    let change = mgr
        .set(sid, Attachment::PassThrough { domain: DomainId::new(1), agaw: Agaw::Bits57 })
        .unwrap();
    assert_eq!((change.previous, change.current), (Some(DomainId::new(9)), Some(DomainId::new(1))));
    let (_, tr) = walk(&mem, rt, sid, Iova::new(0xabc_d000), Access::Write, &limits).unwrap();
    assert_eq!(tr.phys, PhysAddr::new(0xabc_d000));

    let change = mgr.detach(sid).unwrap();
    assert_eq!((change.previous, change.current), (Some(DomainId::new(1)), None));
    assert_eq!(fault(&mem) as u8, 2, "blocked: context entry not present");
    let other = SourceId::new(9, 0, 0).unwrap();
    let change = mgr.detach(other).unwrap();
    assert_eq!((change.previous, change.current), (None, None));
    assert_eq!(ctx_alloc.live.get(), 2, "root table and bus 2's context table");
    let _ = mgr.destroy();
    assert_eq!(ctx_alloc.live.get(), 0);
}
