//! Property tests of `SlPageTable` against a `BTreeMap` model of its
//! leaves, on every depth and page size: results, translations, the
//! walker's view of the same tables, and the exact number of frames (with
//! and without spare frames and empty last-level tables kept).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{CountingAlloc, VecMem};
use proptest::prelude::*;
use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
use vtd_regs::{DomainId, FaultReason, Iova, PageSize, PhysAddr, SourceId};
use vtd_tables::pte::level_shift;
use vtd_tables::{
    Access, ContextManager, Error, MAX_KEPT_TABLES, MAX_SPARE_FRAMES, PartialMap, Perm,
    SlPageTable, TableConfig, Translation, WalkLimits, walk,
};

const GIB: u64 = 1 << 30;
const MIB2: u64 = 1 << 21;
const KIB4: u64 = 1 << 12;
/// Table frames live in [16 MiB, 16 MiB + 8 MiB); the manager's below.
const MEM_BYTES: usize = 24 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Leaf {
    phys: u64,
    size: PageSize,
    perm: Perm,
}

/// The model: the leaves of the table, by IOVA.
struct Model {
    leaves: BTreeMap<u64, Leaf>,
    sllps: SecondLevelPageSizes,
    width: u8,
    levels: u8,
    /// The regions of the empty last-level tables the table keeps (read
    /// from it after each operation).
    kept: BTreeSet<u64>,
}

fn smaller(size: PageSize) -> PageSize {
    match size {
        PageSize::Size1GiB => PageSize::Size2MiB,
        _ => PageSize::Size4KiB,
    }
}

const LARGEST_FIRST: [PageSize; 3] = [PageSize::Size1GiB, PageSize::Size2MiB, PageSize::Size4KiB];

impl Model {
    fn find(&self, iova: u64) -> Option<(u64, Leaf)> {
        let (&k, &l) = self.leaves.range(..=iova).next_back()?;
        (iova - k < l.size.bytes()).then_some((k, l))
    }

    fn any_within(&self, iova: u64, len: u64) -> bool {
        self.leaves.range(iova..iova + len).next().is_some()
    }

    /// A kept empty table is where a page of `size` at `iova` would go.
    fn kept_within(&self, iova: u64, size: PageSize) -> bool {
        size > PageSize::Size4KiB && self.kept.range(iova..iova + size.bytes()).next().is_some()
    }

    fn translate(&self, iova: u64) -> Option<Translation> {
        if iova >> self.width != 0 {
            return None;
        }
        let (k, l) = self.find(iova)?;
        Some(Translation { phys: PhysAddr::new(l.phys + (iova - k)), perm: l.perm, size: l.size })
    }

    fn check(&self, iova: u64, phys: u64, size: PageSize) -> Result<(), Error> {
        if !self.sllps.supports(size) {
            return Err(Error::UnsupportedPageSize(size));
        }
        if !iova.is_multiple_of(size.bytes()) || !phys.is_multiple_of(size.bytes()) {
            return Err(Error::Misaligned {
                iova: Iova::new(iova),
                phys: PhysAddr::new(phys),
                size,
            });
        }
        if (iova | (size.bytes() - 1)) >> self.width != 0 {
            return Err(Error::BeyondWidth { iova: Iova::new(iova) });
        }
        Ok(())
    }

    /// `Ok(false)`: smaller pages are in the way.
    fn map_one(&mut self, iova: u64, phys: u64, size: PageSize, perm: Perm) -> Result<bool, Error> {
        self.check(iova, phys, size)?;
        if perm.is_empty() {
            return Err(Error::NoPermission);
        }
        if let Some((_, l)) = self.find(iova)
            && l.size >= size
        {
            return Err(Error::AlreadyMapped { iova: Iova::new(iova) });
        }
        if self.find(iova).is_some()
            || self.any_within(iova, size.bytes())
            || self.kept_within(iova, size)
        {
            return Ok(false);
        }
        self.leaves.insert(iova, Leaf { phys, size, perm });
        Ok(true)
    }

    fn map(&mut self, iova: u64, phys: u64, size: PageSize, perm: Perm) -> Result<(), Error> {
        match self.map_one(iova, phys, size, perm)? {
            true => Ok(()),
            false => Err(Error::AlreadyMapped { iova: Iova::new(iova) }),
        }
    }

    fn sizes_at(&self, bits: u64, remaining: u64) -> Vec<PageSize> {
        LARGEST_FIRST
            .into_iter()
            .filter(|s| {
                self.sllps.supports(*s) && bits.is_multiple_of(s.bytes()) && s.bytes() <= remaining
            })
            .collect()
    }

    fn map_range(&mut self, iova: u64, phys: u64, len: u64, perm: Perm) -> Result<(), PartialMap> {
        let fail = |mapped, error| Err(PartialMap { mapped, error });
        if !iova.is_multiple_of(KIB4) || !phys.is_multiple_of(KIB4) || !len.is_multiple_of(KIB4) {
            return fail(
                0,
                Error::Misaligned {
                    iova: Iova::new(iova),
                    phys: PhysAddr::new(phys),
                    size: PageSize::Size4KiB,
                },
            );
        }
        if iova.checked_add(len).is_none_or(|e| e > 1 << self.width) {
            return fail(0, Error::BeyondWidth { iova: Iova::new(iova) });
        }
        let mut done = 0;
        'outer: while done < len {
            let (i, p) = (iova + done, phys + done);
            for size in self.sizes_at(i | p, len - done) {
                match self.map_one(i, p, size, perm) {
                    Ok(true) => {
                        done += size.bytes();
                        continue 'outer;
                    }
                    Ok(false) => {}
                    Err(e) => return fail(done, e),
                }
            }
            return fail(done, Error::AlreadyMapped { iova: Iova::new(i) });
        }
        Ok(())
    }

    /// Returns whether the unmap was leaf-only (no split).
    fn unmap(&mut self, iova: u64, size: PageSize) -> Result<bool, Error> {
        self.check(iova, 0, size)?;
        let Some((k, l)) = self.find(iova) else {
            return Err(if self.any_within(iova, size.bytes()) || self.kept_within(iova, size) {
                Error::MappedWithSmallerPages { iova: Iova::new(iova) }
            } else {
                Error::NotMapped { iova: Iova::new(iova) }
            });
        };
        if l.size < size {
            return Err(Error::MappedWithSmallerPages { iova: Iova::new(iova) });
        }
        if l.size == size {
            self.leaves.remove(&k);
            return Ok(true);
        }
        let mut s = smaller(l.size);
        while s > size {
            if !self.sllps.supports(s) {
                return Err(Error::UnsupportedPageSize(s));
            }
            s = smaller(s);
        }
        // Split down to `size`, then remove the page.
        let (mut k, mut l) = (k, l);
        while l.size > size {
            self.leaves.remove(&k);
            let s = smaller(l.size);
            for i in 0..512 {
                let sub = Leaf { phys: l.phys + i * s.bytes(), size: s, perm: l.perm };
                self.leaves.insert(k + i * s.bytes(), sub);
            }
            (k, l) = self.find(iova).unwrap();
        }
        self.leaves.remove(&k);
        Ok(false)
    }

    /// (bytes unmapped, error)
    fn unmap_range(&mut self, iova: u64, len: u64) -> (u64, Option<Error>) {
        if !iova.is_multiple_of(KIB4) || !len.is_multiple_of(KIB4) {
            let e = Error::Misaligned {
                iova: Iova::new(iova),
                phys: PhysAddr::ZERO,
                size: PageSize::Size4KiB,
            };
            return (0, Some(e));
        }
        if iova.checked_add(len).is_none_or(|e| e > 1 << self.width) {
            return (0, Some(Error::BeyondWidth { iova: Iova::new(iova) }));
        }
        let mut done = 0;
        while done < len {
            let pos = iova + done;
            let mut r = Err(Error::NotMapped { iova: Iova::new(pos) });
            let mut step = 0;
            for size in self.sizes_at(pos, len - done) {
                r = self.unmap(pos, size);
                step = size.bytes();
                if !matches!(r, Err(Error::MappedWithSmallerPages { .. })) {
                    break;
                }
            }
            match r {
                Ok(_) => done += step,
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    /// Table frames the real table must hold: the root, and one per
    /// (level, region) that holds a leaf at or below that level.
    fn frames(&self) -> usize {
        let mut tables = BTreeSet::new();
        let kept = self.kept.iter().map(|&r| (r, PageSize::Size4KiB));
        for (k, size) in self.leaves.iter().map(|(k, l)| (*k, l.size)).chain(kept) {
            for lvl in size.level()..self.levels {
                tables.insert((lvl, k >> level_shift(lvl + 1)));
            }
        }
        tables.len() + 1
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map(u64, u64, PageSize, Perm),
    Unmap(u64, PageSize),
    MapRange(u64, u64, u64, Perm),
    UnmapRange(u64, u64),
    DetachEmpty(u64, u64),
}

fn size() -> impl Strategy<Value = PageSize> {
    prop_oneof![4 => Just(PageSize::Size4KiB), 2 => Just(PageSize::Size2MiB), 1 => Just(PageSize::Size1GiB)]
}

fn perm() -> impl Strategy<Value = Perm> {
    prop_oneof![
        4 => Just(Perm::READ_WRITE),
        2 => Just(Perm::READ),
        2 => Just(Perm::WRITE),
        1 => Just(Perm::empty())
    ]
}

/// IOVAs clustered in a few GiB so that operations collide, plus the top
/// of the domain.
fn iova(width: u8) -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (0u64..3, 0u64..4, 0u64..6, 0u64..3).prop_map(|(g, m, k, top)| {
            let a = g * GIB + m * MIB2 + k * KIB4;
            if top == 0 { a } else { a + (510 * MIB2) }
        }),
        1 => (0u64..4).prop_map(move |k| (1u64 << width).saturating_sub(GIB) + k * MIB2),
        1 => (0u64..3).prop_map(move |k| (1u64 << width) + k * KIB4),
    ]
}

fn phys() -> impl Strategy<Value = u64> {
    (4u64..64, 0u64..3, 0u64..3).prop_map(|(g, m, k)| g * GIB + m * MIB2 + k * KIB4)
}

fn len() -> impl Strategy<Value = u64> {
    prop_oneof![8 => (0u64..3, 0u64..5).prop_map(|(m, k)| m * MIB2 + k * KIB4), 1 => Just(3)]
}

fn op(width: u8, sllps: SecondLevelPageSizes) -> impl Strategy<Value = Op> {
    // 1 GiB ranges only where they take few pages to map.
    let gib = if sllps.contains(SecondLevelPageSizes::SIZE_2MIB) { 1 } else { 0 };
    prop_oneof![
        gib => (0u64..3, 4u64..64, perm()).prop_map(|(i, p, r)| Op::MapRange(i * GIB, p * GIB, GIB, r)),
        gib => (0u64..3).prop_map(|i| Op::UnmapRange(i * GIB, GIB)),
        4 => (iova(width), phys(), size(), perm()).prop_map(|(i, p, s, r)| Op::Map(i & !(s.bytes() - 1), p & !(s.bytes() - 1), s, r)),
        1 => (iova(width), phys(), size(), perm()).prop_map(|(i, p, s, r)| Op::Map(i, p, s, r)),
        3 => (iova(width), size()).prop_map(|(i, s)| Op::Unmap(i & !(s.bytes() - 1), s)),
        1 => (iova(width), size()).prop_map(|(i, s)| Op::Unmap(i, s)),
        2 => (iova(width), phys(), len(), perm()).prop_map(|(i, p, l, r)| Op::MapRange(i, p, l, r)),
        2 => (iova(width), len()).prop_map(|(i, l)| Op::UnmapRange(i, l)),
        1 => (iova(width), len()).prop_map(|(i, l)| Op::DetachEmpty(i & !(MIB2 - 1), l)),
    ]
}

fn sllps() -> impl Strategy<Value = SecondLevelPageSizes> {
    prop_oneof![
        Just(SecondLevelPageSizes::empty()),
        Just(SecondLevelPageSizes::SIZE_2MIB),
        Just(SecondLevelPageSizes::all()),
    ]
}

fn case() -> impl Strategy<Value = (u8, SecondLevelPageSizes, Vec<Op>)> {
    (prop_oneof![Just(20u8), Just(39), Just(40), Just(48), Just(57)], sllps())
        .prop_flat_map(|(w, s)| (Just(w), Just(s), prop::collection::vec(op(w, s), 1..40)))
}

fn probes(op: &Op) -> Vec<u64> {
    let (a, n) = match *op {
        Op::Map(i, _, s, _) | Op::Unmap(i, s) => (i, s.bytes()),
        Op::MapRange(i, _, l, _) | Op::UnmapRange(i, l) | Op::DetachEmpty(i, l) => (i, l),
    };
    let mut v = vec![a, a.wrapping_sub(KIB4), a + 0x123, a + n / 2, a + n.saturating_sub(1), a + n];
    v.retain(|x| *x >> 58 == 0);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_model(
        (width, sllps, ops) in case(),
        spare in 0u8..=MAX_SPARE_FRAMES + 1,
        keep in prop_oneof![Just(0), 1..=MAX_KEPT_TABLES + 1],
    ) {
        let mem = VecMem::filled(MEM_BYTES, 0xdead_beef_dead_beef);
        let alloc = CountingAlloc::new(16 << 20, 2048);
        let ctx_alloc = CountingAlloc::new(0, 16);
        let cfg = TableConfig::new(Sagaw::all(), sllps, width).unwrap();
        let levels = cfg.agaw().levels();
        let mut table = SlPageTable::new(&mem, &alloc, cfg).unwrap();
        // Frames come from the allocator full of garbage: a spare frame
        // reused with anything but zeroes shows in the walks below.
        table.keep_spare_frames(spare);
        table.keep_empty_tables(keep);
        let mut mgr = ContextManager::new(&mem, &ctx_alloc).unwrap();
        let sid = SourceId::new(0, 3, 0).unwrap();
        let _ = mgr.attach(sid, DomainId::new(5), &table).unwrap();
        let limits = WalkLimits {
            haw: 52,
            mgaw: 57,
            sagaw: Sagaw::all(),
            sllps,
            pass_through: false,
            device_tlb: false,
            snoop_control: false,
        };
        let mut model = Model { leaves: BTreeMap::new(), sllps, width, levels, kept: BTreeSet::new() };

        for op in &ops {
            match *op {
                Op::Map(i, p, s, r) => {
                    prop_assert_eq!(table.map(Iova::new(i), PhysAddr::new(p), s, r), model.map(i, p, s, r), "{:?}", op);
                }
                Op::Unmap(i, s) => {
                    let real = table.unmap(Iova::new(i), s);
                    let want = model.unmap(i, s);
                    match (real, want) {
                        (Ok(t), Ok(leaf_only)) => {
                            prop_assert_eq!((t.iova(), t.len()), (Iova::new(i), s.bytes()));
                            if !leaf_only {
                                prop_assert!(!t.leaf_only(), "a split changes a non-leaf entry");
                            }
                            prop_assert_eq!(t.leaf_only(), t.detached_frames() == 0 && leaf_only);
                            table.release(t).unwrap();
                        }
                        (Err(a), Err(b)) => prop_assert_eq!(a, b, "{:?}", op),
                        (a, b) => prop_assert!(false, "{:?}: real {:?}, model {:?}", op, a.map(|t| t.len()), b),
                    }
                }
                Op::MapRange(i, p, l, r) => {
                    prop_assert_eq!(table.map_range(Iova::new(i), PhysAddr::new(p), l, r), model.map_range(i, p, l, r), "{:?}", op);
                }
                Op::UnmapRange(i, l) => {
                    let (done, err) = model.unmap_range(i, l);
                    let (token, real_err) = match table.unmap_range(Iova::new(i), l) {
                        Ok(t) => (t, None),
                        Err(p) => (p.done, Some(p.error)),
                    };
                    prop_assert_eq!((token.len(), real_err), (done, err), "{:?}", op);
                    table.release(token).unwrap();
                }
                Op::DetachEmpty(i, l) => {
                    let token = table.detach_empty_tables(Iova::new(i), l).unwrap();
                    prop_assert_eq!(token.len(), l);
                    prop_assert_eq!(token.leaf_only(), token.detached_frames() == 0);
                    prop_assert!(table.empty_tables().all(|r| r.as_u64() < i || r.as_u64() + MIB2 > i + l));
                    table.release(token).unwrap();
                }
            }
            // Kept tables are empty, in regions with no page, no more than asked.
            model.kept = table.empty_tables().map(Iova::as_u64).collect();
            prop_assert!(model.kept.len() <= keep.min(MAX_KEPT_TABLES));
            for &r in &model.kept {
                prop_assert!(r % MIB2 == 0 && !model.any_within(r, MIB2) && model.find(r).is_none());
            }
            prop_assert!(table.spare_frames() <= spare.min(MAX_SPARE_FRAMES));
            let live = model.frames() + usize::from(table.spare_frames());
            prop_assert_eq!(alloc.live.get(), live, "frames after {:?}", op);
            for probe in probes(op) {
                let want = model.translate(probe);
                prop_assert_eq!(table.translate(Iova::new(probe)), want, "translate {:#x} after {:?}", probe, op);
                for access in [Access::Read, Access::Write] {
                    let got = walk(&mem, mgr.root_table(), sid, Iova::new(probe), access, &limits);
                    match want {
                        Some(t) if t.perm.contains(access.required()) => prop_assert_eq!(got.map(|(_, t)| t), Ok(t)),
                        Some(_) => prop_assert_eq!(got.unwrap_err().reason, access.denied()),
                        None => {
                            let r = got.unwrap_err().reason;
                            prop_assert!(r == access.denied() || r == FaultReason::AddressBeyondWidth, "{:?}", r);
                        }
                    }
                }
            }
        }
        // Everything comes back: unmap each leaf, then destroy.
        let leaves: Vec<_> = model.leaves.iter().map(|(k, l)| (*k, l.size)).collect();
        for (k, s) in leaves {
            let t = table.unmap(Iova::new(k), s).unwrap();
            table.release(t).unwrap();
        }
        let t = table.detach_empty_tables(Iova::new(0), (1u64 << width).max(MIB2)).unwrap();
        table.release(t).unwrap();
        prop_assert_eq!(table.empty_tables().count(), 0);
        prop_assert_eq!(alloc.live.get(), 1 + usize::from(table.spare_frames()));
        let _ = mgr.detach(sid).unwrap();
        let _ = table.destroy();
        let _ = mgr.destroy();
        prop_assert_eq!(alloc.live.get(), 0);
        prop_assert_eq!(ctx_alloc.live.get(), 0);
    }
}
