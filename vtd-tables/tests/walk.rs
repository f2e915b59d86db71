//! The walker over hand-built and arbitrary tables: every fault reason it
//! reports, and no panic or unbounded walk on any memory content.

mod common;

use common::VecMem;
use proptest::prelude::*;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
use vtd_regs::{DomainId, FaultReason, Iova, PageSize, PhysAddr, PhysMem, SourceId};
use vtd_tables::walk::MAX_WALK_READS;
use vtd_tables::{
    Access, ContextEntry, ContextInfo, Perm, RootEntry, SlPte, TranslationType, WalkLimits, walk,
    walk_second_level, walk_second_level_any,
};

const ROOT: PhysAddr = PhysAddr::new(0x1000);
const CTX: PhysAddr = PhysAddr::new(0x2000);
/// Level 3, 2 and 1 tables of a 3-level (39-bit) domain.
const L3: PhysAddr = PhysAddr::new(0x3000);
const L2: PhysAddr = PhysAddr::new(0x4000);
const L1: PhysAddr = PhysAddr::new(0x5000);
const MEM_BYTES: usize = 0x10_0000;

fn limits() -> WalkLimits {
    WalkLimits {
        haw: 39,
        mgaw: 39,
        sagaw: Sagaw::BITS39_L3 | Sagaw::BITS48_L4,
        sllps: SecondLevelPageSizes::SIZE_2MIB,
        pass_through: true,
        device_tlb: false,
        snoop_control: false,
    }
}

fn sid() -> SourceId {
    SourceId::new(3, 1, 0).unwrap()
}

fn write_pte(mem: &VecMem, table: PhysAddr, iova: u64, level: u8, pte: SlPte) {
    let idx = (iova >> (12 + 9 * (level as u32 - 1))) & 511;
    mem.write_u64(PhysAddr::new(table.as_u64() + idx * 8), pte.0).unwrap();
}

/// Device 03:01.0 in domain 7 with a 3-level table mapping IOVA 0x4000 to
/// 0x9_9000 read-only and IOVA 0x20_0000 (2 MiB) to 0x4000_0000 read-write.
fn setup() -> VecMem {
    let mem = VecMem::new(MEM_BYTES);
    RootEntry::new(CTX).write(&mem, ROOT, 3).unwrap();
    ContextEntry::translated(DomainId::new(7), L3, Agaw::Bits39, TranslationType::Untranslated)
        .write(&mem, CTX, sid())
        .unwrap();
    write_pte(&mem, L3, 0, 3, SlPte::table(L2));
    write_pte(&mem, L2, 0, 2, SlPte::table(L1));
    write_pte(
        &mem,
        L1,
        0x4000,
        1,
        SlPte::leaf(PhysAddr::new(0x9_9000), Perm::READ, PageSize::Size4KiB),
    );
    write_pte(
        &mem,
        L2,
        0x20_0000,
        2,
        SlPte::leaf(PhysAddr::new(0x4000_0000), Perm::READ_WRITE, PageSize::Size2MiB),
    );
    mem
}

fn fault(mem: &VecMem, iova: u64, access: Access) -> FaultReason {
    walk(mem, ROOT, sid(), Iova::new(iova), access, &limits()).unwrap_err().reason
}

#[test]
fn translates() {
    let mem = setup();
    let (ctx, t) = walk(&mem, ROOT, sid(), Iova::new(0x4abc), Access::Read, &limits()).unwrap();
    assert_eq!(ctx.domain, DomainId::new(7));
    assert_eq!((t.phys, t.perm, t.size), (PhysAddr::new(0x9_9abc), Perm::READ, PageSize::Size4KiB));
    let (_, t) = walk(&mem, ROOT, sid(), Iova::new(0x3f_0008), Access::Write, &limits()).unwrap();
    assert_eq!(
        (t.phys, t.perm, t.size),
        (PhysAddr::new(0x401f_0008), Perm::READ_WRITE, PageSize::Size2MiB)
    );
    assert_eq!(t.page_phys(), PhysAddr::new(0x4000_0000));
    assert_eq!(t.page_iova(Iova::new(0x3f_0008)), Iova::new(0x20_0000));
}

#[test]
fn permission_faults() {
    let mem = setup();
    assert_eq!(fault(&mem, 0x4000, Access::Write), FaultReason::WriteNotPermitted);
    assert_eq!(fault(&mem, 0x5000, Access::Read), FaultReason::ReadNotPermitted);
    assert_eq!(fault(&mem, 0x5000, Access::Write), FaultReason::WriteNotPermitted);
    // A non-leaf entry without W denies writes below it.
    write_pte(&mem, L3, 0, 3, SlPte(SlPte::table(L2).0 & !2));
    assert_eq!(fault(&mem, 0x20_0000, Access::Write), FaultReason::WriteNotPermitted);
    let (_, t) = walk(&mem, ROOT, sid(), Iova::new(0x20_0000), Access::Read, &limits()).unwrap();
    assert_eq!(t.perm, Perm::READ, "effective permission is the intersection");
}

#[test]
fn root_and_context_faults() {
    let mem = setup();
    let other_bus = SourceId::new(4, 0, 0).unwrap();
    let r = walk(&mem, ROOT, other_bus, Iova::ZERO, Access::Read, &limits()).unwrap_err();
    assert_eq!((r.reason, r.level, r.fpd), (FaultReason::RootEntryNotPresent, None, false));
    let other_dev = SourceId::new(3, 2, 0).unwrap();
    let r = walk(&mem, ROOT, other_dev, Iova::ZERO, Access::Read, &limits()).unwrap_err();
    assert_eq!(r.reason, FaultReason::ContextEntryNotPresent);
    // Root table beyond memory.
    let r =
        walk(&mem, PhysAddr::new(1 << 40), sid(), Iova::ZERO, Access::Read, &limits()).unwrap_err();
    assert_eq!(r.reason, FaultReason::RootEntryAccess);
    // Context table beyond memory (but within HAW).
    RootEntry::new(PhysAddr::new(0x7f_0000_0000)).write(&mem, ROOT, 3).unwrap();
    assert_eq!(fault(&mem, 0, Access::Read), FaultReason::ContextEntryAccess);
    // Root entry with a reserved bit, and beyond HAW.
    RootEntry { lo: CTX.as_u64() | 0x11, hi: 0 }.write(&mem, ROOT, 3).unwrap();
    assert_eq!(fault(&mem, 0, Access::Read), FaultReason::RootEntryReserved);
    RootEntry::new(PhysAddr::new(1 << 45)).write(&mem, ROOT, 3).unwrap();
    assert_eq!(fault(&mem, 0, Access::Read), FaultReason::RootEntryReserved);
    RootEntry::new(CTX).write(&mem, ROOT, 3).unwrap();

    let good =
        ContextEntry::translated(DomainId::new(7), L3, Agaw::Bits39, TranslationType::Untranslated);
    let cases = [
        (ContextEntry { lo: good.lo | 0x100, hi: good.hi }, FaultReason::ContextEntryReserved),
        (ContextEntry { lo: good.lo, hi: good.hi | 1 << 30 }, FaultReason::ContextEntryReserved),
        (ContextEntry { lo: good.lo | 0b1100, hi: good.hi }, FaultReason::InvalidContextEntry),
        (ContextEntry { lo: good.lo | 0b0100, hi: good.hi }, FaultReason::InvalidContextEntry),
        (ContextEntry { lo: good.lo, hi: (good.hi & !7) | 3 }, FaultReason::InvalidContextEntry),
        (ContextEntry { lo: good.lo, hi: good.hi & !7 }, FaultReason::InvalidContextEntry),
    ];
    for (ce, reason) in cases {
        ce.write(&mem, CTX, sid()).unwrap();
        assert_eq!(fault(&mem, 0x4000, Access::Read), reason, "{ce:x?}");
    }
    // FPD is passed on with faults after the context entry.
    good.with_fpd(true).write(&mem, CTX, sid()).unwrap();
    let r = walk(&mem, ROOT, sid(), Iova::new(0x5000), Access::Read, &limits()).unwrap_err();
    assert_eq!((r.reason, r.level, r.fpd), (FaultReason::ReadNotPermitted, Some(1), true));
    // Pass-through: identity.
    ContextEntry::pass_through(DomainId::new(1), Agaw::Bits48).write(&mem, CTX, sid()).unwrap();
    let (ctx, t) =
        walk(&mem, ROOT, sid(), Iova::new(0xdead_beef), Access::Write, &limits()).unwrap();
    assert_eq!(ctx.translation_type, TranslationType::PassThrough);
    assert_eq!((t.phys, t.perm), (PhysAddr::new(0xdead_beef), Perm::READ_WRITE));
}

#[test]
fn second_level_faults() {
    let mem = setup();
    assert_eq!(fault(&mem, 1 << 39, Access::Read), FaultReason::AddressBeyondWidth);
    // A 4-level context whose AGAW is wider than MGAW: the limit is MGAW.
    ContextEntry::translated(DomainId::new(7), L3, Agaw::Bits48, TranslationType::Untranslated)
        .write(&mem, CTX, sid())
        .unwrap();
    assert_eq!(fault(&mem, 1 << 40, Access::Read), FaultReason::AddressBeyondWidth);
    ContextEntry::translated(DomainId::new(7), L3, Agaw::Bits39, TranslationType::Untranslated)
        .write(&mem, CTX, sid())
        .unwrap();
    // Next table beyond memory.
    write_pte(&mem, L2, 0x40_0000, 2, SlPte::table(PhysAddr::new(0x70_0000_0000)));
    let r = walk(&mem, ROOT, sid(), Iova::new(0x40_0000), Access::Read, &limits()).unwrap_err();
    assert_eq!((r.reason, r.level), (FaultReason::PagingEntryAccess, Some(1)));
    // Reserved: address beyond HAW, 2 MiB page with low address bits, 1 GiB
    // page where SLLPS lacks it, SNP without ECAP.SC.
    write_pte(&mem, L2, 0x40_0000, 2, SlPte::table(PhysAddr::new(1 << 40)));
    assert_eq!(fault(&mem, 0x40_0000, Access::Read), FaultReason::PagingEntryReserved);
    write_pte(&mem, L2, 0x40_0000, 2, SlPte(0x4000_1083));
    assert_eq!(fault(&mem, 0x40_0000, Access::Read), FaultReason::PagingEntryReserved);
    write_pte(
        &mem,
        L3,
        0x4000_0000,
        3,
        SlPte::leaf(PhysAddr::new(0x4000_0000), Perm::READ, PageSize::Size1GiB),
    );
    let r = walk(&mem, ROOT, sid(), Iova::new(0x4000_0000), Access::Read, &limits()).unwrap_err();
    assert_eq!((r.reason, r.level), (FaultReason::PagingEntryReserved, Some(3)));
    write_pte(&mem, L1, 0x6000, 1, SlPte(0x9_9801));
    assert_eq!(fault(&mem, 0x6000, Access::Read), FaultReason::PagingEntryReserved);
    // Interrupt range.
    write_pte(
        &mem,
        L1,
        0x7000,
        1,
        SlPte::leaf(PhysAddr::new(0xfee0_0000), Perm::READ, PageSize::Size4KiB),
    );
    assert_eq!(fault(&mem, 0x7000, Access::Read), FaultReason::InterruptAddressRange);
    write_pte(
        &mem,
        L2,
        0x3fe0_0000,
        2,
        SlPte::leaf(PhysAddr::new(0xfee0_0000), Perm::READ, PageSize::Size2MiB),
    );
    assert_eq!(fault(&mem, 0x3fe0_0000, Access::Read), FaultReason::InterruptAddressRange);
}

#[test]
fn self_referencing_tables_terminate() {
    let mem = VecMem::new(MEM_BYTES);
    // The root entry points at the root table itself as a context table,
    // and every entry of frame 0x1000 points back at frame 0x1000.
    for i in 0..512u64 {
        mem.write_u64(PhysAddr::new(0x1000 + i * 8), 0x1003).unwrap();
    }
    let l = WalkLimits { device_tlb: true, ..limits() };
    let r = walk(&mem, ROOT, SourceId::from_raw(0), Iova::new(0x1000), Access::Read, &l);
    assert_eq!(r.unwrap_err().reason, FaultReason::RootEntryReserved, "0x1003 sets root bit 1");
}

proptest! {
    /// Arbitrary memory, biased towards entries that point inside it: the
    /// walker never panics and reads at most MAX_WALK_READS words.
    #[test]
    fn arbitrary_tables_never_panic(
        words in prop::collection::vec(
            prop_oneof![
                any::<u64>(),
                (0u64..8, 0u64..0x20, any::<u16>()).prop_map(|(f, low, hi)| (f << 12) | low | ((hi as u64) << 48)),
                (0u64..8, 0u64..8).prop_map(|(f, low)| (f << 12) | low),
            ],
            0..(8 * 512),
        ),
        root in prop_oneof![(0u64..8).prop_map(|f| f << 12), any::<u64>()],
        sid in any::<u16>(),
        iova in prop_oneof![any::<u64>(), 0u64..0x8000_0000],
        write in any::<bool>(),
        haw in 0u8..=64,
        mgaw in 0u8..=64,
        sagaw in any::<u8>(),
        sllps in any::<u8>(),
        flags in any::<[bool; 3]>(),
    ) {
        let mem = VecMem::from_words(words);
        let limits = WalkLimits {
            haw,
            mgaw,
            sagaw: Sagaw::from_bits_retain(sagaw),
            sllps: SecondLevelPageSizes::from_bits_retain(sllps),
            pass_through: flags[0],
            device_tlb: flags[1],
            snoop_control: flags[2],
        };
        let access = if write { Access::Write } else { Access::Read };
        let r = walk(&mem, PhysAddr::new(root), SourceId::from_raw(sid), Iova::new(iova), access, &limits);
        prop_assert!(mem.reads.get() <= MAX_WALK_READS);
        if let Ok((_, t)) = r {
            prop_assert!(t.perm.contains(access.required()));
            prop_assert_eq!(t.phys.as_u64() & (t.size.bytes() - 1), iova & (t.size.bytes() - 1));
        }
    }
}

proptest! {
    /// `walk_second_level_any` is one walk that answers as a read walk, or
    /// where that faults, a write walk: on arbitrary tables (entries biased
    /// to ones pointing at the tables, with arbitrary R/W and PS bits), the
    /// same translation, and a fault when neither translates.
    #[test]
    fn the_any_walk_is_a_read_else_a_write(
        words in prop::collection::vec(
            prop_oneof![
                any::<u64>(),
                (3u64..6, 0u64..4, any::<bool>()).prop_map(|(f, rw, ps)| (f << 12) | rw | (u64::from(ps) << 7)),
            ],
            0..(6 * 512),
        ),
        iova in prop_oneof![any::<u64>(), 0u64..0x4000_0000],
        agaw in prop_oneof![Just(Agaw::Bits39), Just(Agaw::Bits48)],
    ) {
        let mem = VecMem::from_words(words);
        let ctx = ContextInfo {
            domain: DomainId::new(1),
            translation_type: TranslationType::Untranslated,
            agaw,
            slptptr: L3,
            fpd: false,
        };
        let limits = limits();
        let iova = Iova::new(iova);
        let read = walk_second_level(&mem, &ctx, iova, Access::Read, &limits);
        let write = walk_second_level(&mem, &ctx, iova, Access::Write, &limits);
        let any = walk_second_level_any(&mem, &ctx, iova, &limits);
        match read.or(write) {
            Ok(t) => prop_assert_eq!(any, Ok(t)),
            Err(_) => prop_assert!(any.is_err()),
        }
    }
}
