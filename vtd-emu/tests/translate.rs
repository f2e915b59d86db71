//! Translation through the emulator: caches that behave like hardware
//! (stale entries survive until an invalidation of matching scope), every
//! reachable fault reason, and fault recording.

mod common;

use common::{Rig, sid};
use vtd_emu::{Access, EmuConfig};
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::offset;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{EventControl, FaultType, Fsts, Gcmd, GlobalBits, Rtaddr};
use vtd_regs::{
    ContextScope, DomainId, Drain, FaultReason, FunctionMask, Granularity, IotlbScope, Iova, Mmio,
    PageSize, PhysAddr, PhysMem,
};
use vtd_tables::{ContextEntry, Perm, SlPte, TranslationType};

const A39: Agaw = Agaw::Bits39;

fn read(rig: &Rig, s: vtd_regs::SourceId, iova: u64) -> Result<u64, FaultReason> {
    rig.emu.translate(s, Iova::new(iova), Access::Read).map(|p| p.as_u64()).map_err(|f| f.reason)
}

fn write(rig: &Rig, s: vtd_regs::SourceId, iova: u64) -> Result<u64, FaultReason> {
    rig.emu.translate(s, Iova::new(iova), Access::Write).map(|p| p.as_u64()).map_err(|f| f.reason)
}

#[test]
fn translates_4k_and_superpages_and_passes_through_when_disabled() {
    let rig = Rig::qemu();
    let dev = sid(0, 3, 0);
    let slpt = rig.attach(dev, 1, A39);
    rig.map(slpt, A39, 0x1000, 0x20_0000, Perm::READ_WRITE, PageSize::Size4KiB);
    rig.map(slpt, A39, 0x4000_0000, 0x60_0000, Perm::READ, PageSize::Size2MiB);
    // Translation disabled: untranslated.
    assert_eq!(read(&rig, dev, 0x1234), Ok(0x1234));
    rig.enable();
    assert_eq!(read(&rig, dev, 0x1234), Ok(0x20_0234));
    assert_eq!(write(&rig, dev, 0x1ff8), Ok(0x20_0ff8));
    assert_eq!(read(&rig, dev, 0x4012_3456), Ok(0x72_3456));
    assert_eq!(write(&rig, dev, 0x4012_3456), Err(FaultReason::WriteNotPermitted));
    let c = rig.emu.counters();
    assert_eq!(c.translations, 5);
    assert_eq!(c.iotlb.hits, 2);
    // A pass-through device.
    let pt = sid(0, 4, 0);
    rig.set_context(pt, ContextEntry::pass_through(DomainId::new(2), A39));
    assert_eq!(write(&rig, pt, 0x7654_3000), Ok(0x7654_3000));
}

#[test]
fn cleared_pte_keeps_translating_until_an_invalidation_covers_it() {
    let rig = Rig::qemu();
    let dev = sid(0, 3, 0);
    let slpt = rig.attach(dev, 5, A39);
    for i in 0..8u64 {
        rig.map(slpt, A39, i << 12, 0x10_0000 + (i << 12), Perm::READ_WRITE, PageSize::Size4KiB);
    }
    rig.enable();
    for i in 0..8u64 {
        assert!(read(&rig, dev, i << 12).is_ok());
    }
    for i in 0..8u64 {
        rig.unmap(slpt, A39, i << 12, PageSize::Size4KiB);
    }
    // Every page still translates through the IOTLB.
    for i in 0..8u64 {
        assert_eq!(read(&rig, dev, i << 12), Ok(0x10_0000 + (i << 12)));
    }
    let mut u = rig.unit();
    let d = DomainId::new(5);
    // Another domain, and a page-selective range elsewhere: nothing dropped.
    assert_eq!(
        u.invalidate_iotlb(IotlbScope::Domain(DomainId::new(6)), Drain::empty()),
        Ok(Granularity::Domain)
    );
    let other = IotlbScope::pages(d, Iova::new(0x10_0000), 2, false).unwrap();
    assert_eq!(u.invalidate_iotlb(other, Drain::empty()), Ok(Granularity::Selective));
    assert!(read(&rig, dev, 0).is_ok());
    // Pages 4..8 (AM = 2) with IH: dropped, since only leaves are cached.
    let four = IotlbScope::pages(d, Iova::new(0x4000), 2, true).unwrap();
    assert_eq!(u.invalidate_iotlb(four, Drain::all()), Ok(Granularity::Selective));
    for i in 4..8u64 {
        assert_eq!(read(&rig, dev, i << 12), Err(FaultReason::ReadNotPermitted));
    }
    assert!(read(&rig, dev, 0x3000).is_ok());
    // Domain-selective drops the rest.
    assert_eq!(u.invalidate_iotlb(IotlbScope::Domain(d), Drain::empty()), Ok(Granularity::Domain));
    assert_eq!(read(&rig, dev, 0), Err(FaultReason::ReadNotPermitted));
    // Global, after re-caching one.
    rig.map(slpt, A39, 0, 0x30_0000, Perm::READ, PageSize::Size4KiB);
    assert_eq!(read(&rig, dev, 0), Ok(0x30_0000));
    rig.unmap(slpt, A39, 0, PageSize::Size4KiB);
    assert!(read(&rig, dev, 0).is_ok());
    assert_eq!(u.invalidate_iotlb(IotlbScope::Global, Drain::empty()), Ok(Granularity::Global));
    assert_eq!(read(&rig, dev, 0), Err(FaultReason::ReadNotPermitted));
}

#[test]
fn stale_context_entry_until_context_invalidation() {
    let rig = Rig::qemu();
    let dev = sid(2, 1, 3);
    let slpt = rig.attach(dev, 7, A39);
    rig.map(slpt, A39, 0, 0x10_0000, Perm::READ, PageSize::Size4KiB);
    rig.enable();
    assert!(read(&rig, dev, 0).is_ok());
    rig.set_context(dev, ContextEntry::NOT_PRESENT);
    let mut u = rig.unit();
    u.invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
    // The context is still cached: the walk goes through the old table.
    assert!(read(&rig, dev, 0).is_ok());
    // Another function of the device, with a mask that leaves ours out.
    let other = ContextScope::Device {
        domain: DomainId::new(7),
        source: sid(2, 1, 2),
        function_mask: FunctionMask::None,
    };
    assert_eq!(u.invalidate_context(other), Ok(Granularity::Selective));
    assert!(read(&rig, dev, 0).is_ok());
    // Function mask 2:0 covers every function of the device.
    let all = ContextScope::Device {
        domain: DomainId::new(7),
        source: sid(2, 1, 0),
        function_mask: FunctionMask::Bits2To0,
    };
    assert_eq!(u.invalidate_context(all), Ok(Granularity::Selective));
    assert_eq!(read(&rig, dev, 0), Err(FaultReason::ContextEntryNotPresent));
    assert_eq!(rig.emu.context_cache_entries(), 0);
}

#[test]
fn rtaddr_is_latched_only_by_srtp() {
    let rig = Rig::qemu();
    let dev = sid(0, 1, 0);
    let slpt = rig.attach(dev, 1, A39);
    rig.map(slpt, A39, 0, 0x10_0000, Perm::READ, PageSize::Size4KiB);
    rig.enable();
    // Point RTADDR at an empty table without SRTP: the old root stays in use.
    let empty = rig.frame();
    let mut e = &rig.emu;
    e.write_reg(Rtaddr::new(empty, TranslationTableMode::Legacy));
    rig.unit().invalidate_context(ContextScope::Global).unwrap();
    rig.unit().invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
    assert!(read(&rig, dev, 0).is_ok());
    rig.unit().set_root_table(empty, TranslationTableMode::Legacy).unwrap();
    // SRTP does not flush the caches (CAP.ESRTPS = 0).
    assert!(read(&rig, dev, 0).is_ok());
    rig.unit().invalidate_context(ContextScope::Global).unwrap();
    assert_eq!(read(&rig, dev, 0), Err(FaultReason::RootEntryNotPresent));
}

#[test]
fn every_reachable_fault_reason() {
    let rig = Rig::qemu();
    let beyond = 0x100_0000u64; // 16 MiB: beyond the 4 MiB of RAM, below HAW
    let ok = sid(0, 1, 0);
    let slpt = rig.attach(ok, 1, A39);
    rig.map(slpt, A39, 0x1000, 0x10_0000, Perm::READ, PageSize::Size4KiB);
    rig.map(slpt, A39, 0x2000, 0xfee0_0000, Perm::READ_WRITE, PageSize::Size4KiB);
    let at = rig.slot(slpt, A39, Iova::new(0x3000), 1);
    let bad_leaf = SlPte::leaf(PhysAddr::new(1 << 45), Perm::READ, PageSize::Size4KiB);
    rig.mem.write_u64(at, bad_leaf.0).unwrap();
    rig.enable();
    assert_eq!(read(&rig, sid(9, 0, 0), 0), Err(FaultReason::RootEntryNotPresent));
    rig.context_table(3);
    assert_eq!(read(&rig, sid(3, 0, 0), 0), Err(FaultReason::ContextEntryNotPresent));
    let wide = sid(0, 2, 0);
    rig.attach(wide, 2, Agaw::Bits48); // QEMU's SAGAW has only 39 bits
    assert_eq!(read(&rig, wide, 0), Err(FaultReason::InvalidContextEntry));
    assert_eq!(read(&rig, ok, 1 << 39), Err(FaultReason::AddressBeyondWidth));
    assert_eq!(write(&rig, ok, 0x1000), Err(FaultReason::WriteNotPermitted));
    assert_eq!(read(&rig, ok, 0x5000), Err(FaultReason::ReadNotPermitted));
    let lost = sid(0, 3, 0);
    rig.set_context(
        lost,
        ContextEntry::translated(
            DomainId::new(3),
            PhysAddr::new(beyond),
            A39,
            TranslationType::Untranslated,
        ),
    );
    assert_eq!(read(&rig, lost, 0), Err(FaultReason::PagingEntryAccess));
    // A root entry pointing outside memory, and a reserved bit in one.
    rig.mem.write_u64(PhysAddr::new(rig.root.as_u64() + 4 * 16), beyond | 1).unwrap();
    assert_eq!(read(&rig, sid(4, 0, 0), 0), Err(FaultReason::ContextEntryAccess));
    rig.mem.write_u64(PhysAddr::new(rig.root.as_u64() + 5 * 16), rig.frame().as_u64() | 1).unwrap();
    rig.mem.write_u64(PhysAddr::new(rig.root.as_u64() + 5 * 16 + 8), 1).unwrap();
    assert_eq!(read(&rig, sid(5, 0, 0), 0), Err(FaultReason::RootEntryReserved));
    // A reserved bit (71) in a context entry.
    let rsv = sid(0, 5, 0);
    rig.attach(rsv, 5, A39);
    let ct = rig.context_table(0);
    let hi = ct.as_u64() + u64::from(rsv.devfn()) * 16 + 8;
    let v = rig.mem.read_u64(PhysAddr::new(hi)).unwrap();
    rig.mem.write_u64(PhysAddr::new(hi), v | 1 << 7).unwrap();
    assert_eq!(read(&rig, rsv, 0), Err(FaultReason::ContextEntryReserved));
    assert_eq!(read(&rig, ok, 0x3000), Err(FaultReason::PagingEntryReserved));
    assert_eq!(read(&rig, ok, 0x2000), Err(FaultReason::InterruptAddressRange));
    // Root table beyond memory, then a reserved table mode (TTM = 10b).
    let mut u = rig.unit();
    u.set_root_table(PhysAddr::new(beyond), TranslationTableMode::Legacy).unwrap();
    u.invalidate_context(ContextScope::Global).unwrap();
    assert_eq!(read(&rig, ok, 0), Err(FaultReason::RootEntryAccess));
    let mut e = &rig.emu;
    e.write_reg(Rtaddr(rig.root.as_u64() | 0x800));
    e.write_reg(Gcmd::from_bits(GlobalBits::TE | GlobalBits::SRTP));
    assert_eq!(e.read_reg::<Rtaddr>().ttm(), 2);
    u.invalidate_context(ContextScope::Global).unwrap();
    assert_eq!(read(&rig, ok, 0), Err(FaultReason::InvalidTableMode));
    // Fault Dh (translation type blocked) needs translated or translation
    // requests (ATS), which the model's `translate` does not issue.
}

#[test]
fn faults_are_recorded_with_overflow_and_events() {
    // QEMU: one fault recording register.
    let rig = Rig::qemu();
    let dev = sid(0, 3, 1);
    rig.attach(dev, 1, A39);
    rig.enable();
    let mut e = &rig.emu;
    e.write32(offset::FEDATA, 0x49);
    e.write32(offset::FEADDR, 0xfee0_0003);
    assert_eq!(e.read32(offset::FEADDR), 0xfee0_0000);
    // Masked (IM = 1 at reset): the event pends.
    assert_eq!(write(&rig, dev, 0x7123), Err(FaultReason::WriteNotPermitted));
    let fsts: Fsts = e.read_reg();
    assert!(fsts.ppf() && !fsts.pfo());
    assert_eq!(fsts.fri(), 0);
    assert_eq!(EventControl(e.read32(offset::FECTL)), EventControl(0).with_im(true).with_ip(true));
    assert_eq!(rig.emu.take_fault_event(), None);
    // The register is full: the next fault overflows, then faults are dropped.
    assert!(read(&rig, dev, 0x8000).is_err());
    assert!(read(&rig, dev, 0x9000).is_err());
    assert!(e.read_reg::<Fsts>().pfo());
    // PPF is read-only: writing it changes nothing.
    e.write_reg(Fsts(0).with_ppf(true));
    assert!(e.read_reg::<Fsts>().ppf());
    e.write32(offset::FECTL, 0);
    let msg = rig.emu.take_fault_event().unwrap();
    assert_eq!((msg.data, msg.address), (0x49, 0xfee0_0000));
    let mut u = rig.unit();
    let mut drain = u.drain_faults();
    let rec = drain.next().unwrap();
    assert!(drain.overflowed());
    assert_eq!(drain.next(), None);
    assert_eq!(rec.source, dev);
    assert_eq!(rec.kind, FaultType::Write);
    assert_eq!(rec.fault_info, 0x7000);
    assert_eq!(rec.reason(), Some(FaultReason::WriteNotPermitted));
    let fsts: Fsts = e.read_reg();
    assert!(!fsts.ppf() && !fsts.pfo());
    let c = rig.emu.counters();
    assert_eq!((c.faults_recorded, c.faults_dropped), (1, 2));
    // Unmasked now: the next fault is signalled at once.
    assert!(read(&rig, dev, 0xa000).is_err());
    assert!(rig.emu.take_fault_event().is_some());
}

#[test]
fn fault_recording_wraps_over_nfr_registers_and_fpd_suppresses() {
    let rig = Rig::new(EmuConfig::modern()); // 8 registers
    let dev = sid(1, 0, 0);
    rig.attach(dev, 1, A39);
    rig.enable();
    for i in 0..3u64 {
        assert!(read(&rig, dev, i << 12).is_err());
    }
    let mut u = rig.unit();
    assert_eq!(u.drain_faults().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
    for i in 0..3u64 {
        assert!(read(&rig, dev, i << 12).is_err());
    }
    // FRI points at the first pending one, register 3.
    let e = &rig.emu;
    assert_eq!(e.read_reg::<Fsts>().fri(), 3);
    assert_eq!(u.drain_faults().map(|r| r.index).collect::<Vec<_>>(), [3, 4, 5]);
    // FPD: faults of the context are not recorded.
    let quiet = sid(1, 0, 1);
    let slpt = rig.frame();
    rig.set_context(
        quiet,
        ContextEntry::translated(DomainId::new(2), slpt, A39, TranslationType::Untranslated)
            .with_fpd(true),
    );
    assert_eq!(read(&rig, quiet, 0), Err(FaultReason::ReadNotPermitted));
    assert!(!e.read_reg::<Fsts>().ppf());
}

#[test]
fn bounded_iotlb_evicts_and_counts() {
    let rig = Rig::new(EmuConfig::qemu().with_iotlb(4, 4));
    let dev = sid(0, 1, 0);
    let slpt = rig.attach(dev, 1, A39);
    for i in 0..6u64 {
        rig.map(slpt, A39, i << 12, 0x10_0000 + (i << 12), Perm::READ, PageSize::Size4KiB);
    }
    rig.enable();
    for i in 0..6u64 {
        read(&rig, dev, i << 12).unwrap();
    }
    assert_eq!(rig.emu.iotlb_entries(), 4);
    let c = rig.emu.counters();
    assert_eq!((c.iotlb.misses, c.iotlb.evictions), (6, 2));
    // Page 0 was evicted: clearing its PTE now shows at once.
    rig.unmap(slpt, A39, 0, PageSize::Size4KiB);
    assert_eq!(read(&rig, dev, 0), Err(FaultReason::ReadNotPermitted));
    let c = rig.emu.counters();
    assert_eq!(c.walks, 1 + 7);
    rig.emu.reset_counters();
    assert_eq!(rig.emu.counters(), vtd_emu::Counters::default());
    assert_eq!(rig.emu.iotlb_entries(), 4);
}

#[test]
fn device_thread_translates_while_driver_invalidates() {
    let rig = Rig::qemu();
    let dev = sid(0, 1, 0);
    let slpt = rig.attach(dev, 1, A39);
    rig.map(slpt, A39, 0, 0x10_0000, Perm::READ_WRITE, PageSize::Size4KiB);
    rig.enable();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..2000 {
                let _ = rig.emu.translate(dev, Iova::new(0x10), Access::Write);
            }
        });
        let mut u = rig.unit();
        for _ in 0..200 {
            u.invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
        }
    });
    assert_eq!(read(&rig, dev, 0x10), Ok(0x10_0010));
}

#[test]
fn caching_mode_caches_not_present_entries() {
    for cm in [false, true] {
        let rig = Rig::new(EmuConfig::qemu().with_caching_mode(cm));
        let dev = sid(0, 1, 0);
        let slpt = rig.attach(dev, 1, A39);
        rig.map(slpt, A39, 0x1000, 0x20_0000, Perm::READ, PageSize::Size4KiB);
        rig.enable();
        assert_eq!(read(&rig, dev, 0x5000), Err(FaultReason::ReadNotPermitted));
        // A permission fault on a present entry is not a not-present entry.
        assert_eq!(write(&rig, dev, 0x1000), Err(FaultReason::WriteNotPermitted));
        rig.map(slpt, A39, 0x5000, 0x30_0000, Perm::READ_WRITE, PageSize::Size4KiB);
        let expect = if cm { Err(FaultReason::WriteNotPermitted) } else { Ok(0x30_0000) };
        assert_eq!(write(&rig, dev, 0x5000), expect, "caching mode {cm}");
        // The invalidation caching mode asks for on map makes it visible.
        let scope = IotlbScope::pages(DomainId::new(1), Iova::new(0x5000), 0, false).unwrap();
        rig.unit().invalidate_iotlb(scope, Drain::empty()).unwrap();
        assert_eq!(write(&rig, dev, 0x5000), Ok(0x30_0000));
        assert_eq!(read(&rig, dev, 0x1000), Ok(0x20_0000));
    }
}
