//! Scalable mode end to end: PASID tables and scalable contexts built by
//! the managers, first-stage tables built by the same mapper as
//! second-stage ones, and the walker over them (first stage, second stage,
//! nested, pass-through): known answers for every fault reason it reports,
//! a model property for first-stage and nested translation, and bounded
//! reads over arbitrary memory.

mod common;

use std::collections::BTreeMap;

use common::{CountingAlloc, VecMem};
use proptest::prelude::*;
use vtd_regs::desc::Pasid;
use vtd_regs::regs::cap::{Agaw, Cap};
use vtd_regs::regs::{AddressWidth, Ecap, Sagaw, SecondLevelPageSizes};
use vtd_regs::{DomainId, FaultReason, Iova, PageSize, PhysAddr, PhysMem, SourceId};
use vtd_tables::walk::{MAX_SCALABLE_WALK_READS, Request, ScalableLimits, walk_scalable};
use vtd_tables::{
    Access, Error, FlPte, PasidAttachment, PasidTable, Perm, ScalableContextManager, SlPageTable,
    TableConfig,
};

const MEM_BYTES: usize = 16 << 20;
/// Frames for tables: [8 MiB, 16 MiB).
const FRAMES: u64 = 8 << 20;
const D: DomainId = DomainId::new(5);

fn caps() -> (Cap, Ecap) {
    let cap = Cap(0)
        .with_sagaw(Sagaw::BITS39_L3 | Sagaw::BITS48_L4)
        .with_mgaw(AddressWidth(48))
        .with_sllps(SecondLevelPageSizes::all())
        .with_fl1gp(true);
    let ecap = Ecap(0)
        .with_pass_through(true)
        .with_smts(true)
        .with_flts(true)
        .with_slts(true)
        .with_nest(true)
        .with_pasid(true)
        .with_pss(19)
        .with_srs(true);
    (cap, ecap)
}

fn limits() -> ScalableLimits {
    let (cap, ecap) = caps();
    ScalableLimits::new(cap, ecap, 39)
}

fn sid() -> SourceId {
    SourceId::new(2, 3, 1).unwrap()
}

fn pasid(p: u32) -> Pasid {
    Pasid::new(p).unwrap()
}

/// The unit's tables: scalable contexts, the device's PASID table, a
/// first-stage table, and a second-stage table mapping guest-physical
/// [0, 64 GiB) onto itself (for nested walks), all in one memory.
struct Unit<'a> {
    mem: &'a VecMem,
    contexts: ScalableContextManager<&'a VecMem, &'a CountingAlloc>,
    pasids: PasidTable<&'a VecMem, &'a CountingAlloc>,
    first: SlPageTable<&'a VecMem, &'a CountingAlloc>,
    second: SlPageTable<&'a VecMem, &'a CountingAlloc>,
}

impl<'a> Unit<'a> {
    fn new(mem: &'a VecMem, frames: &'a CountingAlloc) -> Self {
        let mut contexts = ScalableContextManager::new(mem, frames).unwrap();
        let pasids = PasidTable::new(mem, frames).unwrap();
        let fs = TableConfig::first_stage(false, true, 47, true).unwrap();
        let first = SlPageTable::new(mem, frames, fs).unwrap();
        let ss = TableConfig::new(Sagaw::BITS48_L4, SecondLevelPageSizes::all(), 48).unwrap();
        let mut second = SlPageTable::new(mem, frames, ss).unwrap();
        second.map_range(Iova::new(0), PhysAddr::new(0), 64 << 30, Perm::READ_WRITE).unwrap();
        let _ = contexts.attach(sid(), &pasids, pasid(0), true).unwrap();
        Self { mem, contexts, pasids, first, second }
    }

    fn nested(&self) -> PasidAttachment {
        PasidAttachment::Nested {
            domain: D,
            first: self.first.root(),
            five_level: false,
            second: self.second.root(),
            agaw: Agaw::Bits48,
        }
    }

    fn walk(
        &self,
        p: Option<u32>,
        iova: u64,
        access: Access,
    ) -> Result<(PhysAddr, Perm), FaultReason> {
        let req = Request { access, pasid: p.map(pasid), supervisor: false };
        walk_scalable(self.mem, self.contexts.root_table(), sid(), Iova::new(iova), &req, &limits())
            .map(|(_, _, t)| (t.translation.phys, t.translation.perm))
            .map_err(|f| f.reason)
    }
}

#[test]
fn first_stage_and_pass_through_translate_through_pasid_entries() {
    let (mem, frames) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
    let mut u = Unit::new(&mem, &frames);
    u.first
        .map(Iova::new(0x1000), PhysAddr::new(0x40_0000), PageSize::Size4KiB, Perm::READ)
        .unwrap();
    u.first
        .map(Iova::new(0x20_0000), PhysAddr::new(0x60_0000), PageSize::Size2MiB, Perm::READ_WRITE)
        .unwrap();
    assert_eq!(
        u.first.map(Iova::new(0x40_0000), PhysAddr::new(0), PageSize::Size4KiB, Perm::WRITE),
        Err(Error::WriteOnly)
    );
    // RID_PASID 0: first stage.
    let change = u.pasids.set(pasid(0), PasidAttachment::table(D, &u.first)).unwrap();
    assert!(change.previous.is_none() && change.current.is_some_and(|c| c.tagged_by_pasid()));
    assert_eq!(u.walk(None, 0x1234, Access::Read), Ok((PhysAddr::new(0x40_0234), Perm::READ)));
    assert_eq!(u.walk(None, 0x1234, Access::Write), Err(FaultReason::SmWriteNotPermitted));
    assert_eq!(
        u.walk(None, 0x21_2345, Access::Write),
        Ok((PhysAddr::new(0x61_2345), Perm::READ_WRITE))
    );
    assert_eq!(u.walk(None, 0x5000, Access::Read), Err(FaultReason::FsEntryNotPresent));
    assert_eq!(u.walk(None, 1 << 47, Access::Read), Err(FaultReason::NonCanonical));
    // A canonical upper-half address is walked (and is not mapped here).
    assert_eq!(u.walk(None, !0xfff, Access::Read), Err(FaultReason::FsEntryNotPresent));
    // PASID 9: pass-through; PASID 10 not set up; PASID beyond the directory.
    let _ = u
        .pasids
        .set(pasid(9), PasidAttachment::PassThrough { domain: D, agaw: Agaw::Bits48 })
        .unwrap();
    assert_eq!(
        u.walk(Some(9), 0xabc_d123, Access::Write),
        Ok((PhysAddr::new(0xabc_d123), Perm::READ_WRITE))
    );
    assert_eq!(u.walk(Some(10), 0, Access::Read), Err(FaultReason::PasidEntryNotPresent));
    assert_eq!(u.walk(Some(64), 0, Access::Read), Err(FaultReason::PasidDirEntryNotPresent));
    assert_eq!(u.walk(Some(0xf_ffff), 0, Access::Read), Err(FaultReason::SmPasidBeyondDirectory));
    // A supervisor request needs SRE.
    let req = Request { access: Access::Read, pasid: Some(pasid(0)), supervisor: true };
    let got =
        walk_scalable(&mem, u.contexts.root_table(), sid(), Iova::new(0x1000), &req, &limits());
    assert_eq!(got.unwrap_err().reason, FaultReason::SupervisorRequestsDisabled);
    // Requests with a PASID need PASIDE.
    let _ = u.contexts.attach(sid(), &u.pasids, pasid(0), false).unwrap();
    assert_eq!(u.walk(Some(9), 0, Access::Read), Err(FaultReason::SmPasidDisabled));
    assert_eq!(u.walk(None, 0x1000, Access::Read).map(|t| t.0), Ok(PhysAddr::new(0x40_0000)));
    // Blocking the PASID owes invalidations tagged by it.
    let change = u.pasids.set(pasid(0), PasidAttachment::Blocked).unwrap();
    assert!(change.previous.is_some_and(|p| p.tagged_by_pasid() && p.domain == D));
    assert_eq!(change.current, None);
    assert_eq!(u.walk(None, 0x1000, Access::Read), Err(FaultReason::PasidEntryNotPresent));
    // Detaching the device.
    assert!(u.contexts.detach(sid()).unwrap().was_present);
    assert_eq!(u.walk(None, 0x1000, Access::Read), Err(FaultReason::SmContextEntryNotPresent));
    let other = SourceId::new(9, 0, 0).unwrap();
    let req = Request::untagged(Access::Read);
    let got = walk_scalable(&mem, u.contexts.root_table(), other, Iova::new(0), &req, &limits());
    assert_eq!(got.unwrap_err().reason, FaultReason::SmRootEntryNotPresent);
}

#[test]
fn second_stage_and_nested_fault_reasons() {
    let (mem, frames) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
    let mut u = Unit::new(&mem, &frames);
    u.first
        .map(Iova::new(0x1000), PhysAddr::new(0x40_0000), PageSize::Size4KiB, Perm::READ_WRITE)
        .unwrap();
    // Second stage only, in scalable-mode codes.
    let _ = u.pasids.set(pasid(0), PasidAttachment::table(D, &u.second)).unwrap();
    assert_eq!(u.walk(None, 0x1234, Access::Write).map(|t| t.0), Ok(PhysAddr::new(0x1234)));
    assert_eq!(u.walk(None, 0x20_0000_0000, Access::Read), Err(FaultReason::SmReadNotPermitted));
    assert_eq!(u.walk(None, 1 << 48, Access::Read), Err(FaultReason::SmAddressBeyondWidth));
    // Nested over the identity second stage: as first stage alone.
    let _ = u.pasids.set(pasid(0), u.nested()).unwrap();
    assert_eq!(
        u.walk(None, 0x1234, Access::Write),
        Ok((PhysAddr::new(0x40_0234), Perm::READ_WRITE))
    );
    // The first stage's output is translated: GPA 0x40_0000 now goes to
    // 0x50_0000 (a 4 KiB second-stage page; the page size is the smaller).
    let _ = u.second.unmap_range(Iova::new(0x40_0000), 0x20_0000).unwrap();
    u.second
        .map(Iova::new(0x40_0000), PhysAddr::new(0x50_0000), PageSize::Size4KiB, Perm::READ)
        .unwrap();
    assert_eq!(u.walk(None, 0x1234, Access::Read), Ok((PhysAddr::new(0x50_0234), Perm::READ)));
    assert_eq!(u.walk(None, 0x1234, Access::Write), Err(FaultReason::SmWriteNotPermitted));
    // A first-stage table outside what the second stage maps: the root
    // table (75h), a lower table (76h).
    let root = u.first.root();
    let _ = u.second.unmap_range(Iova::new(root.as_u64() & !0x1f_ffff), 0x20_0000).unwrap();
    assert_eq!(u.walk(None, 0x1234, Access::Read), Err(FaultReason::NestedRootReadDenied));
    u.second.map_range(Iova::new(root.as_u64()), root, 0x1000, Perm::READ_WRITE).unwrap();
    assert_eq!(u.walk(None, 0x1234, Access::Read), Err(FaultReason::NestedTableReadDenied));
    // An A/D update needs the second stage's write permission (77h): a
    // guest's first-stage entry without A, its table mapped read-only.
    let (mem2, frames2) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
    let mut v = Unit::new(&mem2, &frames2);
    let table = v.first.root();
    mem2.write_u64(table, FlPte(0x7000 | 0b111).0).unwrap(); // P, R/W, U/S, no A
    let _ = v.second.unmap_range(Iova::new(table.as_u64() & !0x1f_ffff), 0x20_0000).unwrap();
    v.second.map_range(Iova::new(table.as_u64()), table, 0x1000, Perm::READ).unwrap();
    let _ = v.pasids.set(pasid(0), v.nested()).unwrap();
    assert_eq!(v.walk(None, 0, Access::Read), Err(FaultReason::NestedTableWriteDenied));
    // A first-stage table beyond the second stage's width (74h).
    let _ = v
        .pasids
        .set(
            pasid(0),
            PasidAttachment::Nested {
                domain: D,
                first: PhysAddr::new(1 << 50),
                five_level: false,
                second: v.second.root(),
                agaw: Agaw::Bits48,
            },
        )
        .unwrap();
    assert_eq!(v.walk(None, 0, Access::Read), Err(FaultReason::NestedAddressBeyondWidth));
}

#[test]
fn first_stage_sets_accessed_and_dirty() {
    let (mem, frames) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
    let mut u = Unit::new(&mem, &frames);
    // A guest-built 4-level first stage without A/D: PML4 -> PDPT -> PD -> PT.
    let [l4, l3, l2, l1] = [0x1000u64, 0x2000, 0x3000, 0x4000];
    let entry = |t: u64, next: u64| mem.write_u64(PhysAddr::new(t), next | 0b111).unwrap();
    entry(l4, l3);
    entry(l3, l2);
    entry(l2, l1);
    entry(l1, 0x9000);
    let _ = u
        .pasids
        .set(
            pasid(0),
            PasidAttachment::FirstStage {
                domain: D,
                table: PhysAddr::new(l4),
                five_level: false,
                supervisor: false,
            },
        )
        .unwrap();
    assert_eq!(u.walk(None, 0x10, Access::Read).map(|t| t.0), Ok(PhysAddr::new(0x9010)));
    assert_eq!(mem.read_u64(PhysAddr::new(l1)).unwrap(), 0x9000 | 0b10_0111, "A, not D");
    assert_eq!(u.walk(None, 0x10, Access::Write).map(|t| t.0), Ok(PhysAddr::new(0x9010)));
    assert_eq!(mem.read_u64(PhysAddr::new(l1)).unwrap(), 0x9000 | 0b110_0111, "A and D");
    assert_eq!(mem.read_u64(PhysAddr::new(l4)).unwrap(), l3 | 0b10_0111);
    // Reserved: PS in a PML4 entry, address bits above HAW (39).
    mem.write_u64(PhysAddr::new(l4), l3 | 0xa7).unwrap();
    assert_eq!(u.walk(None, 0x10, Access::Read), Err(FaultReason::FsEntryReserved));
    mem.write_u64(PhysAddr::new(l4), l3 | (1 << 40) | 0x27).unwrap();
    assert_eq!(u.walk(None, 0x10, Access::Read), Err(FaultReason::FsEntryReserved));
    // U/S clear: user requests fault (81h).
    mem.write_u64(PhysAddr::new(l4), l3 | 0x23).unwrap();
    assert_eq!(u.walk(None, 0x10, Access::Read), Err(FaultReason::UserNotPermitted));
}

#[test]
fn invalid_pasid_entries() {
    let (mem, frames) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
    let mut u = Unit::new(&mem, &frames);
    let _ = u.pasids.set(pasid(0), u.nested()).unwrap();
    // Nested without ECAP.NEST is invalid programming (5Bh).
    let (cap, ecap) = caps();
    let no_nest = ScalableLimits::new(cap, ecap.with_nest(false), 39);
    let req = Request::untagged(Access::Read);
    let got = walk_scalable(&mem, u.contexts.root_table(), sid(), Iova::new(0), &req, &no_nest);
    assert_eq!(got.unwrap_err().reason, FaultReason::InvalidPasidEntry);
    // 5-level first stage without CAP.FL5LP.
    let _ = u
        .pasids
        .set(
            pasid(0),
            PasidAttachment::FirstStage {
                domain: D,
                table: u.first.root(),
                five_level: true,
                supervisor: false,
            },
        )
        .unwrap();
    assert_eq!(u.walk(None, 0, Access::Read), Err(FaultReason::InvalidPasidEntry));
    // A pass-through entry's AW must be supported (SAGAW has no 5-level).
    let pt = PasidAttachment::PassThrough { domain: D, agaw: Agaw::Bits57 };
    let _ = u.pasids.set(pasid(0), pt).unwrap();
    assert_eq!(u.walk(None, 0, Access::Read), Err(FaultReason::InvalidPasidEntry));
    // Reserved bits of the PASID entry (quadword 3).
    let e = u.pasids.entry(pasid(0)).unwrap();
    let dir = mem.read_u64(u.pasids.directory()).unwrap() & !0xfff;
    mem.write_u64(PhysAddr::new(dir + 24), 1).unwrap();
    assert!(e.present());
    assert_eq!(u.walk(None, 0, Access::Read), Err(FaultReason::PasidEntryReserved));
    // Reserved bits of the context entry (bit 5).
    let root = u.contexts.root_table();
    let ctx_table = mem.read_u64(PhysAddr::new(root.as_u64() + 2 * 16)).unwrap() & !0xfff;
    let at = PhysAddr::new(ctx_table + u64::from(sid().devfn()) * 32);
    let qw0 = mem.read_u64(at).unwrap();
    mem.write_u64(at, qw0 | 0x20).unwrap();
    assert_eq!(u.walk(None, 0, Access::Read), Err(FaultReason::SmContextEntryReserved));
}

/// The first-stage table against a model of its leaves, read through the
/// walker both as a first-stage-only and as a nested PASID entry (over an
/// identity second stage).
#[derive(Clone, Debug)]
enum Op {
    Map { iova: u64, size: PageSize, phys: u64, write: bool },
    Unmap { iova: u64, len: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let size =
        prop::sample::select(vec![PageSize::Size4KiB, PageSize::Size2MiB, PageSize::Size1GiB]);
    prop_oneof![
        (0u64..1 << 20, size, 0u64..1 << 14, any::<bool>()).prop_map(
            |(page, size, frame, write)| {
                let iova = (page << 12) & !(size.bytes() - 1) & ((1 << 32) - 1);
                let phys = (frame << 21) & !(size.bytes() - 1);
                // Clear of the interrupt range's GiB (faults 87h).
                let phys = if phys >> 30 == 3 { phys + (4 << 30) } else { phys };
                Op::Map { iova, size, phys, write }
            }
        ),
        (0u64..1 << 20, 1u64..600).prop_map(|(page, pages)| Op::Unmap {
            iova: (page << 12) & ((1 << 32) - 1),
            len: pages << 12,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn first_stage_walks_agree_with_the_model(ops in prop::collection::vec(op(), 1..24), probes in prop::collection::vec(0u64..1 << 32, 16)) {
        let (mem, frames) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
        let mut u = Unit::new(&mem, &frames);
        let mut model: BTreeMap<u64, (u64, u64, bool)> = BTreeMap::new();
        let find = |m: &BTreeMap<u64, (u64, u64, bool)>, a: u64| {
            m.range(..=a).next_back().filter(|(k, v)| a - **k < v.1).map(|(k, v)| (*k, *v))
        };
        for op in ops {
            match op {
                Op::Map { iova, size, phys, write } => {
                    let perm = if write { Perm::READ_WRITE } else { Perm::READ };
                    let free = (iova..iova + size.bytes()).step_by(4096).all(|a| find(&model, a).is_none());
                    let got = u.first.map(Iova::new(iova), PhysAddr::new(phys), size, perm);
                    prop_assert_eq!(got.is_ok(), free);
                    if free { model.insert(iova, (phys, size.bytes(), write)); }
                }
                Op::Unmap { iova, len } => {
                    let mapped = (iova..iova + len).step_by(4096).all(|a| find(&model, a).is_some());
                    match u.first.unmap_range(Iova::new(iova), len) {
                        Ok(t) => { prop_assert!(mapped); u.first.release(t).unwrap(); }
                        Err(p) => { prop_assert!(!mapped); u.first.release(p.done).unwrap(); }
                    }
                    if mapped {
                        // Split leaves that straddle the range, keep the rest.
                        let mut next = BTreeMap::new();
                        for (k, (p, s, w)) in std::mem::take(&mut model) {
                            for a in (k..k + s).step_by(4096) {
                                if !(iova..iova + len).contains(&a) {
                                    next.insert(a, (p + (a - k), 4096, w));
                                }
                            }
                        }
                        model = next;
                    } else {
                        // The prefix before the first unmapped page is gone.
                        let stop = (iova..iova + len).step_by(4096).find(|a| find(&model, *a).is_none()).unwrap();
                        let mut next = BTreeMap::new();
                        for (k, (p, s, w)) in std::mem::take(&mut model) {
                            for a in (k..k + s).step_by(4096) {
                                if !(iova..stop).contains(&a) {
                                    next.insert(a, (p + (a - k), 4096, w));
                                }
                            }
                        }
                        model = next;
                    }
                }
            }
        }
        for attach in [PasidAttachment::table(D, &u.first), u.nested()] {
            let _ = u.pasids.set(pasid(0), attach).unwrap();
            for &a in &probes {
                let expect = find(&model, a).map(|(k, (p, _, w))| (PhysAddr::new(p + (a - k)), w));
                for access in [Access::Read, Access::Write] {
                    let got = u.walk(None, a, access);
                    match expect {
                        None => prop_assert_eq!(got, Err(FaultReason::FsEntryNotPresent)),
                        Some((_, false)) if access == Access::Write => {
                            prop_assert_eq!(got, Err(FaultReason::SmWriteNotPermitted));
                        }
                        Some((p, w)) => {
                            let perm = if w { Perm::READ_WRITE } else { Perm::READ };
                            prop_assert_eq!(got, Ok((p, perm)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn arbitrary_memory_walks_are_bounded(
        words in prop::collection::vec(any::<u64>(), 4096),
        iova in any::<u64>(),
        p in prop::option::of(0u32..1 << 20),
        supervisor in any::<bool>(),
    ) {
        // Pointers land in the 32 KiB of arbitrary words (mostly: the rest
        // is out of range, an access fault).
        let words: Vec<u64> = words.into_iter().map(|w| w & 0x8000_0000_0000_7fff | (w & 0x7000)).collect();
        let mem = VecMem::from_words(words);
        let req = Request { access: Access::Write, pasid: p.map(pasid), supervisor };
        let _ = walk_scalable(&mem, PhysAddr::new(0), sid(), Iova::new(iova), &req, &limits());
        prop_assert!(mem.reads.get() <= MAX_SCALABLE_WALK_READS);
    }
}

/// A PASID attachment of kind `k` (0 first stage, 1 second, 2 nested, 3
/// pass-through, else blocked) in domain `d`.
fn attachment(k: u8, d: u16) -> PasidAttachment {
    let domain = DomainId::new(d);
    let (t, agaw) = (PhysAddr::new(0x1234_5000), Agaw::Bits48);
    match k {
        0 => PasidAttachment::FirstStage { domain, table: t, five_level: false, supervisor: false },
        1 => PasidAttachment::SecondStage { domain, table: t, agaw },
        2 => PasidAttachment::Nested { domain, first: t, five_level: true, second: t, agaw },
        3 => PasidAttachment::PassThrough { domain, agaw },
        _ => PasidAttachment::Blocked,
    }
}

proptest! {
    /// `PasidTable` against a map of PASID to attachment: each entry reads
    /// back as set, each token names the entry it replaced (and so the
    /// invalidation owed), PASIDs beyond the table are refused, and
    /// destroying it frees every frame it took (one per 64 PASIDs used).
    #[test]
    fn pasid_table_against_a_model(ops in prop::collection::vec((0u32..1 << 16, 0u8..6, 1u16..4), 1..64)) {
        let (mem, frames) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
        let mut t = PasidTable::new(&mem, &frames).unwrap();
        let mut model: BTreeMap<u32, PasidAttachment> = BTreeMap::new();
        for (p, k, d) in ops {
            let to = attachment(k, d);
            let got = t.set(pasid(p), to);
            if p >= t.capacity() {
                prop_assert_eq!(got.unwrap_err(), Error::PasidBeyondTable { pasid: p });
                continue;
            }
            let change = got.unwrap();
            let was = model.get(&p).copied().unwrap_or(PasidAttachment::Blocked);
            let used = |a: PasidAttachment| {
                let e = a.entry();
                e.translation_type().filter(|_| e.present()).map(|pgtt| (e.domain_id(), pgtt))
            };
            prop_assert_eq!(change.previous.map(|u| (u.domain, u.pgtt)), used(was));
            prop_assert_eq!(change.current.map(|u| (u.domain, u.pgtt)), used(to));
            model.insert(p, to);
            prop_assert_eq!(t.entry(pasid(p)).unwrap(), to.entry());
        }
        for (&p, &a) in &model {
            prop_assert_eq!(t.entry(pasid(p)).unwrap(), a.entry());
        }
        // The directory and every PASID table go back.
        let _ = t.destroy();
        prop_assert_eq!(frames.live.get(), 0);
    }
}

#[test]
fn five_level_first_stage() {
    let (mem, frames) = (VecMem::new(MEM_BYTES), CountingAlloc::new(FRAMES, 2048));
    let mut u = Unit::new(&mem, &frames);
    let cfg = TableConfig::first_stage(true, false, 56, true).unwrap();
    assert_eq!(cfg.agaw(), Agaw::Bits57);
    assert_eq!(
        TableConfig::first_stage(true, false, 57, true),
        Err(Error::UnsupportedWidth { bits: 57 })
    );
    assert_eq!(
        TableConfig::first_stage(false, false, 48, true),
        Err(Error::UnsupportedWidth { bits: 48 })
    );
    let mut t = SlPageTable::new(&mem, &frames, cfg).unwrap();
    let high = 0x00ab_cdef_1234_5000; // above 2^47, below 2^56
    t.map(Iova::new(high), PhysAddr::new(0x7000), PageSize::Size4KiB, Perm::READ_WRITE).unwrap();
    // Without CAP.FL1GP a first-stage 1 GiB page is not mapped.
    let g = t.map(Iova::new(1 << 30), PhysAddr::new(1 << 30), PageSize::Size1GiB, Perm::READ);
    assert_eq!(g, Err(Error::UnsupportedPageSize(PageSize::Size1GiB)));
    let _ = u.pasids.set(pasid(0), PasidAttachment::table(D, &t)).unwrap();
    // The unit needs CAP.FL5LP for a 5-level entry.
    assert_eq!(u.walk(None, high, Access::Read), Err(FaultReason::InvalidPasidEntry));
    let (cap, ecap) = caps();
    let l5 = ScalableLimits::new(cap.with_fl5lp(true), ecap, 39);
    let req = Request::untagged(Access::Write);
    let got =
        walk_scalable(&mem, u.contexts.root_table(), sid(), Iova::new(high + 0x18), &req, &l5);
    assert_eq!(got.map(|(_, _, t)| t.translation.phys), Ok(PhysAddr::new(0x7018)));
    // 57-bit canonical: bit 56 set with the upper bits clear is not.
    let got = walk_scalable(&mem, u.contexts.root_table(), sid(), Iova::new(1 << 56), &req, &l5);
    assert_eq!(got.unwrap_err().reason, FaultReason::NonCanonical);
}
