//! Register semantics against the specification (§10.4): reset values,
//! read-only and reserved bits, write-1-to-clear, the GCMD/GSTS protocol and
//! register-based invalidation with the granularity performed.

mod common;

use common::{Rig, sid};
use vtd_emu::{Access, EmuConfig, RegisterName};
use vtd_regs::regs::DomainBits;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::offset;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{
    Cap, Ccmd, Ecap, Fsts, Gcmd, GlobalBits, Gsts, Ics, IotlbInv, Iqa, Iqh, Iqt, Irta, Iva, Rtaddr,
    Ver,
};
use vtd_regs::unit::UnitError;
use vtd_regs::{
    ContextScope, DomainId, Drain, Granularity, IotlbScope, Iova, Mmio, PageSize, PhysAddr,
};
use vtd_tables::Perm;

#[test]
fn reset_values_and_read_only_registers() {
    let rig = Rig::qemu();
    let mut e = &rig.emu;
    assert_eq!(e.read_reg::<Ver>(), Ver(0x10));
    assert_eq!(e.read_reg::<Cap>(), Cap(0xd2008c22260206));
    assert_eq!(e.read_reg::<Ecap>(), Ecap(0xf00f4a));
    assert_eq!(e.read_reg::<Gsts>(), Gsts(0));
    // FECTL and IECTL come out of reset masked.
    assert_eq!(e.read32(offset::FECTL), 1 << 31);
    assert_eq!(e.read32(offset::IECTL), 1 << 31);
    // Writes to read-only registers change nothing.
    e.write64(offset::CAP, 0);
    e.write64(offset::ECAP, 0);
    e.write32(offset::VER, 0xff);
    e.write32(offset::GSTS, u32::MAX);
    e.write64(offset::IQH, u64::MAX);
    e.write64(offset::IQERCD, u64::MAX);
    assert_eq!(e.read_reg::<Cap>(), Cap(0xd2008c22260206));
    assert_eq!(e.read_reg::<Ver>(), Ver(0x10));
    assert_eq!(e.read_reg::<Gsts>(), Gsts(0));
    assert_eq!(e.read_reg::<Iqh>(), Iqh(0));
    assert_eq!(e.read64(offset::IQERCD), 0);
    // GCMD is write-only; reserved offsets and misaligned accesses read 0.
    assert_eq!(e.read32(offset::GCMD), 0);
    for off in [0x04, 0x30, 0x48, 0x98, 0x100, 0x1ffc, 0x1002] {
        e.write32(off, u32::MAX);
        assert_eq!(e.read32(off), 0, "offset {off:#x}");
    }
    let c = rig.emu.counters();
    assert_eq!(c.writes_of(RegisterName::Cap), 2);
    assert!(c.reads_of(RegisterName::Other) >= 7);
}

#[test]
fn reserved_bits_read_as_zero() {
    let rig = Rig::qemu();
    let mut e = &rig.emu;
    e.write64(offset::RTADDR, u64::MAX);
    assert_eq!(e.read64(offset::RTADDR), !0x3ff);
    // DW is reserved without ECAP.SMTS (§10.4.23).
    e.write64(offset::IQA, u64::MAX);
    let iqa: Iqa = e.read_reg();
    assert_eq!(
        iqa,
        Iqa::new(
            PhysAddr::new(!0xfff),
            QueueSize::from_order(7).unwrap(),
            DescriptorWidth::Bits128
        )
    );
    e.write64(offset::IQT, u64::MAX);
    assert_eq!(e.read_reg::<Iqt>(), Iqt(0x7fff0));
    e.write32(offset::FEADDR, u32::MAX);
    assert_eq!(e.read32(offset::FEADDR), !3);
    // FEDATA: EID (31:16) only with ECAP.EIM, which QEMU's preset lacks.
    e.write32(offset::FEDATA, u32::MAX);
    assert_eq!(e.read32(offset::FEDATA), 0xffff);
    e.write32(offset::FEUADDR, u32::MAX);
    assert_eq!(e.read32(offset::FEUADDR), 0);
    let iva = rig.emu.config().ecap.iro().iva();
    // IVA_REG is write-only (§10.4.8.2), as in QEMU.
    e.write64(iva, u64::MAX);
    assert_eq!(e.read64(iva), 0);
    // IRTA exists with ECAP.IR; EIME needs ECAP.EIM.
    e.write64(offset::IRTA, u64::MAX);
    assert_eq!(e.read_reg::<Irta>(), Irta(0).with_table(PhysAddr::new(u64::MAX)).with_size(0xf));
    // Without IR the register is reserved.
    let mut cfg = EmuConfig::qemu();
    cfg.ecap = cfg.ecap.with_ir(false);
    let rig = Rig::new(cfg);
    let mut e = &rig.emu;
    e.write64(offset::IRTA, u64::MAX);
    assert_eq!(e.read64(offset::IRTA), 0);
}

#[test]
fn gcmd_enables_and_one_shot_commands_update_gsts() {
    let rig = Rig::qemu();
    let mut u = rig.unit();
    u.set_root_table(rig.root, TranslationTableMode::Legacy).unwrap();
    assert_eq!(u.status().bits(), GlobalBits::SRTP);
    u.enable_translation().unwrap();
    assert_eq!(u.status().bits(), GlobalBits::SRTP | GlobalBits::TE);
    u.write_buffer_flush().unwrap();
    let q = rig.queue(0, DescriptorWidth::Bits128);
    u.enable_queued_invalidation(q).unwrap();
    u.set_interrupt_remap_table(Irta::new(PhysAddr::new(0x8000), 7, false)).unwrap();
    u.set_interrupt_remapping(true).unwrap();
    u.set_compatibility_format(true).unwrap();
    let all = GlobalBits::TE
        | GlobalBits::SRTP
        | GlobalBits::QIE
        | GlobalBits::IRE
        | GlobalBits::SIRTP
        | GlobalBits::CFI;
    assert_eq!(u.status().bits(), all);
    // IQA cannot move while the queue is enabled.
    let mut e = &rig.emu;
    e.write_reg(Iqa(0x10_0000));
    assert_eq!(e.read_reg::<Iqa>(), q);
    u.disable_queued_invalidation().unwrap();
    u.disable_translation().unwrap();
    assert_eq!(u.status().bits(), all - GlobalBits::TE - GlobalBits::QIE);
    // A GCMD write with only one-shot bits leaves the enables as they are
    // only if software keeps them set: writing 0 clears every enable.
    e.write_reg(Gcmd(0));
    assert_eq!(e.read_reg::<Gsts>().bits(), GlobalBits::SRTP | GlobalBits::SIRTP);
    // Features a unit lacks are not enabled.
    let mut cfg = EmuConfig::qemu();
    cfg.ecap = cfg.ecap.with_qi(false).with_ir(false);
    let rig = Rig::new(cfg);
    let mut e = &rig.emu;
    e.write_reg(Gcmd::from_bits(GlobalBits::all()));
    assert_eq!(e.read_reg::<Gsts>().bits(), GlobalBits::TE | GlobalBits::SRTP);
}

#[test]
fn fsts_and_ics_are_write_1_to_clear() {
    let rig = Rig::qemu();
    let mut u = rig.unit();
    let q = rig.queue(0, DescriptorWidth::Bits128);
    u.enable_queued_invalidation(q).unwrap();
    // Garbage in slot 0: IQE.
    rig.put_raw(q, 0, &[0xff; 16]);
    u.write_queue_tail(1).unwrap();
    let mut e = &rig.emu;
    assert!(e.read_reg::<Fsts>().iqe());
    // Writing 0 clears nothing; writing the bit clears it.
    e.write_reg(Fsts(0));
    assert!(e.read_reg::<Fsts>().iqe());
    // Clearing IQE resumes the queue, which stops again at the same slot.
    e.write_reg(Fsts(u32::MAX));
    assert!(e.read_reg::<Fsts>().iqe());
    assert_eq!(u.queue_head(), Ok(0));
    // Fix the slot (a wait with IF) and clear IQE once more.
    let wait = vtd_regs::desc::WaitDesc { interrupt: true, ..vtd_regs::desc::WaitDesc::NONE };
    rig.put(q, 0, wait.into());
    e.write_reg(Fsts(0).with_iqe(true));
    assert!(!e.read_reg::<Fsts>().iqe());
    assert_eq!(u.queue_head(), Ok(1));
    // ICS.IWC is write-1-to-clear too.
    assert!(e.read_reg::<Ics>().iwc());
    e.write_reg(Ics(0));
    assert!(e.read_reg::<Ics>().iwc());
    e.write_reg(Ics(0).with_iwc(true));
    assert!(!e.read_reg::<Ics>().iwc());
}

#[test]
fn register_based_invalidation_reports_granularity() {
    let rig = Rig::qemu();
    let mut u = rig.unit();
    assert_eq!(u.invalidate_context(ContextScope::Global), Ok(Granularity::Global));
    assert_eq!(
        u.invalidate_context(ContextScope::Domain(DomainId::new(3))),
        Ok(Granularity::Domain)
    );
    let page = IotlbScope::pages(DomainId::new(3), Iova::new(0x4000), 2, false).unwrap();
    assert_eq!(u.invalidate_iotlb(page, Drain::all()), Ok(Granularity::Selective));
    let mut e = &rig.emu;
    let iotlb = rig.emu.config().ecap.iro().iotlb();
    let done = IotlbInv(e.read64(iotlb));
    assert!(!done.ivt());
    assert_eq!(done.iaig(), Some(Granularity::Selective));
    assert_eq!(done.drain(), Drain::all());
    // Reserved CIRG: nothing done, CAIG 0, ICC cleared.
    e.write64(offset::CCMD, Ccmd(0).with_icc(true).0);
    let c: Ccmd = e.read_reg();
    assert!(!c.icc());
    assert_eq!(c.caig(), None);
    // AM beyond MAMV (18): not performed (IAIG 0), as QEMU does.
    let iva = rig.emu.config().ecap.iro().iva();
    e.write64(iva, Iva(0).with_am(19).0);
    let req = IotlbInv(0).with_ivt(true).with_iirg(Granularity::Selective);
    e.write64(iotlb, req.0);
    assert_eq!(IotlbInv(e.read64(iotlb)).iaig(), None);
    assert!(!IotlbInv(e.read64(iotlb)).ivt());
    // While queued invalidation is enabled, register-based invalidation is
    // not performed.
    let q = rig.queue(0, DescriptorWidth::Bits128);
    u.enable_queued_invalidation(q).unwrap();
    assert_eq!(
        u.invalidate_context(ContextScope::Global),
        Err(UnitError::QueuedInvalidationEnabled)
    );
    e.write_reg(Ccmd::invalidate(ContextScope::Global));
    let c: Ccmd = e.read_reg();
    assert!(!c.icc());
    assert_eq!(c.caig(), None);
    assert_eq!(rig.emu.counters().register_invalidations, 6);
}

#[test]
fn page_selective_without_psi_is_done_domain_wide() {
    let mut cfg = EmuConfig::qemu();
    cfg.cap = cfg.cap.with_psi(false).with_drd(false).with_dwd(false);
    let rig = Rig::new(cfg);
    let mut e = &rig.emu;
    let (iva, iotlb) = (cfg.ecap.iro().iva(), cfg.ecap.iro().iotlb());
    let scope = IotlbScope::pages(DomainId::new(1), Iova::new(0x1000), 0, false).unwrap();
    let (a, b) = IotlbInv::invalidate(scope, Drain::all());
    e.write64(iva, a.0);
    e.write64(iotlb, b.0);
    let done = IotlbInv(e.read64(iotlb));
    assert_eq!(done.iaig(), Some(Granularity::Domain));
    // DR/DW are reserved without CAP.DRD/DWD.
    assert_eq!(done.drain(), Drain::empty());
}

#[test]
fn rtaddr_write_alone_does_not_set_rtps() {
    let rig = Rig::qemu();
    let mut e = &rig.emu;
    e.write_reg(Rtaddr::new(rig.root, TranslationTableMode::Legacy));
    assert!(!e.read_reg::<Gsts>().contains(GlobalBits::SRTP));
    e.write_reg(Gcmd::from_bits(GlobalBits::SRTP));
    assert!(e.read_reg::<Gsts>().contains(GlobalBits::SRTP));
    // 32-bit halves: the register reads back what the halves wrote.
    e.write32(offset::RTADDR, 0x1234_5000);
    e.write32(offset::RTADDR + 4, 0x12);
    assert_eq!(e.read64(offset::RTADDR), 0x12_1234_5000);
    let c = rig.emu.counters();
    assert_eq!(c.writes_of(RegisterName::Rtaddr), 4);
    assert_eq!(c.writes_of(RegisterName::Gcmd), 1);
}

#[test]
fn domain_ids_have_cap_nd_bits() {
    // ND = 0: 4-bit domain ids; higher bits are not implemented.
    let mut cfg = EmuConfig::qemu();
    cfg.cap = cfg.cap.with_nd(DomainBits::from_field(0));
    let rig = Rig::new(cfg);
    let mut e = &rig.emu;
    e.write_reg(Ccmd(0).with_did(DomainId::new(0x1234)));
    assert_eq!(e.read_reg::<Ccmd>().did(), DomainId::new(0x4));
    let iotlb = cfg.ecap.iro().iotlb();
    e.write64(iotlb, IotlbInv(0).with_did(DomainId::new(0xfff3)).0);
    assert_eq!(IotlbInv(e.read64(iotlb)).did(), DomainId::new(0x3));
    // A context entry's DID 0x15 is domain 5 to the caches.
    let dev = sid(0, 1, 0);
    let slpt = rig.attach(dev, 0x15, Agaw::Bits39);
    rig.map(slpt, Agaw::Bits39, 0, 0x10_0000, Perm::READ, PageSize::Size4KiB);
    rig.enable();
    let read = || rig.emu.translate(dev, Iova::new(0), Access::Read);
    assert!(read().is_ok());
    rig.unmap(slpt, Agaw::Bits39, 0, PageSize::Size4KiB);
    assert!(read().is_ok());
    let mut u = rig.unit();
    u.invalidate_iotlb(IotlbScope::Domain(DomainId::new(5)), Drain::empty()).unwrap();
    assert!(read().is_err());
}
