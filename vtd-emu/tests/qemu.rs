//! Differential tests against QEMU's `intel-iommu`, an independent VT-d
//! implementation driven over qtest: the same register accesses and DMA on
//! both, then the registers read back and compared.
//!
//! Where QEMU 7.2/10 departs from the specification the model follows the
//! specification, and the register is left out of the comparison:
//! - IQA reads back the base latched when QIE was set, not what was written
//!   (§10.4.23 has IQA read/write);
//! - IEDATA keeps bits 31:16 and IRTA bit 11 (EIME) without ECAP.EIM, where
//!   the specification reserves them;
//! - IQERCD is not implemented (always 0);
//! - clearing FSTS.IQE does not resume the queue (a FIXME in QEMU; Linux's
//!   `qi_check_fault` relies on hardware resuming), so the sequence below
//!   stops at the queue error;
//! - a wait descriptor with both SW and IF trips an assertion in QEMU, so
//!   the queue below has them in separate descriptors;
//! - a second fault from the same requester is collapsed, not recorded or
//!   counted as an overflow, so one fault is compared at a time;
//! - a domain-selective context-cache invalidation is performed (and
//!   reported in CAIG) as a global one, which the specification allows; the
//!   model performs and reports domain-selective, so it is left out;
//! - FECTL.IP is re-evaluated only on FSTS writes, where the model drops a
//!   masked event as soon as its status is serviced (the last F cleared),
//!   so the comparison is made after both writes of the service routine.

use viommu_qtest::{Edu, IommuOptions, Qemu, QtestMem, QtestMmio, RAM_SIZE};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{Access, EmuConfig, Emulator};
use vtd_regs::regs::offset;
use vtd_regs::{Iova, Mmio, PhysAddr, PhysMem};

/// The registers compared: (name, offset, 64-bit).
const REGS: &[(&str, usize, bool)] = &[
    ("VER", offset::VER, false),
    ("CAP", offset::CAP, true),
    ("ECAP", offset::ECAP, true),
    ("GSTS", offset::GSTS, false),
    ("RTADDR", offset::RTADDR, true),
    ("CCMD", offset::CCMD, true),
    ("FSTS", offset::FSTS, false),
    ("FECTL", offset::FECTL, false),
    ("FEDATA", offset::FEDATA, false),
    ("FEADDR", offset::FEADDR, false),
    ("FEUADDR", offset::FEUADDR, false),
    ("IQH", offset::IQH, true),
    ("IQT", offset::IQT, true),
    ("ICS", offset::ICS, false),
    ("IECTL", offset::IECTL, false),
    ("IEADDR", offset::IEADDR, false),
    ("IEUADDR", offset::IEUADDR, false),
    ("IVA", 0xf0, true),
    ("IOTLB", 0xf8, true),
    ("FRCD.lo", 0x220, true),
    ("FRCD.hi", 0x228, true),
];

/// Registers written with all ones but not compared (see the module doc).
const UNCOMPARED: &[(&str, usize, bool)] =
    &[("IQA", offset::IQA, true), ("IEDATA", offset::IEDATA, false), ("IRTA", offset::IRTA, true)];

fn read(m: &impl Mmio, off: usize, wide: bool) -> u64 {
    if wide { m.read64(off) } else { u64::from(m.read32(off)) }
}

fn write(m: &mut impl Mmio, off: usize, value: u64, wide: bool) {
    if wide { m.write64(off, value) } else { m.write32(off, value as u32) }
}

fn differences(q: &QtestMmio<'_>, e: &impl Mmio, step: &str) -> Vec<String> {
    REGS.iter()
        .filter_map(|&(name, off, wide)| {
            let (a, b) = (read(q, off, wide), read(e, off, wide));
            (a != b).then(|| format!("{name}: qemu {a:#x}, emu {b:#x} after {step}"))
        })
        .collect()
}

fn start() -> Qemu {
    Qemu::start(&IommuOptions::default()).unwrap_or_else(|e| panic!("cannot start QEMU: {e}"))
}

#[test]
fn register_semantics_agree_with_qemu() {
    let qemu = start();
    let mut q = QtestMmio::new(&qemu);
    let qmem = QtestMem::new(&qemu);
    let mem = HeapMemory::new(RAM_SIZE as usize);
    let emu: Emulator<_, 64, 16> = Emulator::with_caches(&mem, EmuConfig::qemu()).unwrap();
    let mut e = &emu;
    let mut diffs = differences(&q, &e, "reset");
    // All ones to every register but those starting commands or queue
    // processing (GCMD, CCMD, IOTLB_REG, IQT): what sticks is what is
    // writable.
    for &(name, off, wide) in REGS.iter().chain(UNCOMPARED) {
        if matches!(name, "CCMD" | "IOTLB" | "IQT") {
            continue;
        }
        write(&mut q, off, u64::MAX, wide);
        write(&mut e, off, u64::MAX, wide);
        diffs.extend(differences(&q, &e, &format!("all ones to {name}")));
    }
    // Queue: IOTLB global invalidation, wait with SW, wait with IF, an
    // unknown type.
    let queue = [(0x12, 0), (0x25 | 0x77 << 32, 0x30_0000), (0x15, 0), (0xf, 0)];
    for (i, (lo, hi)) in queue.into_iter().enumerate() {
        let at = 0x20_0000 + 16 * i as u64;
        for m in [&qmem as &dyn PhysMem, &mem] {
            m.write_u64(PhysAddr::new(at), lo).unwrap();
            m.write_u64(PhysAddr::new(at + 8), hi).unwrap();
        }
    }
    // The command protocols: SRTP, TE, register-based invalidations (a
    // reserved granularity too), queued invalidation up to the bad slot.
    let ops: &[(usize, u64, bool)] = &[
        (offset::FSTS, 0xffff_ffff, false),
        (offset::FECTL, 0, false),
        (offset::IECTL, 0, false),
        (offset::RTADDR, 0x10_0000, true),
        (offset::GCMD, 0x4000_0000, false),
        (offset::GCMD, 0x8000_0000, false),
        (offset::CCMD, 0xa000_0000_0000_0000, true),
        (offset::CCMD, 0x8000_0000_0000_0000, true),
        (0xf0, 0x4003, true),
        (0xf8, 0xb000_0005_0000_0000, true),
        (0xf8, 0xa000_0005_0000_0000, true),
        (0xf8, 0x9000_0000_0000_0000, true),
        (offset::IQT, 0, true),
        (offset::IQA, 0x20_0000, true),
        (offset::GCMD, 0x8400_0000, false),
        (offset::IQT, 0x10, true),
        (offset::IQT, 0x20, true),
        (offset::IQT, 0x30, true),
        (offset::ICS, 1, false),
        (offset::IQT, 0x40, true),
    ];
    for &(off, v, wide) in ops {
        write(&mut q, off, v, wide);
        write(&mut e, off, v, wide);
        diffs.extend(differences(&q, &e, &format!("write {v:#x} to {off:#x}")));
    }
    let status = |m: &dyn PhysMem| m.read_u32(PhysAddr::new(0x30_0000)).unwrap();
    assert_eq!(status(&qmem), 0x77);
    assert_eq!(status(&mem), 0x77);
    assert!(e.read_reg::<vtd_regs::regs::Fsts>().iqe());
    qemu.check().unwrap();
    assert!(diffs.is_empty(), "{:#?}", diffs);
}

#[test]
fn fault_records_agree_with_qemu() {
    let qemu = start();
    let mut q = QtestMmio::new(&qemu);
    let edu = Edu::probe(&qemu).unwrap();
    let mem = HeapMemory::new(RAM_SIZE as usize);
    let emu: Emulator<_, 64, 16> = Emulator::with_caches(&mem, EmuConfig::qemu()).unwrap();
    let mut e = &emu;
    // An empty root table (RAM is zero on both): every request faults with
    // "root entry not present".
    for (off, v, wide) in [
        (offset::RTADDR, 0x10_0000, true),
        (offset::GCMD, 0x4000_0000, false),
        (offset::GCMD, 0x8000_0000, false),
    ] {
        write(&mut q, off, v, wide);
        write(&mut e, off, v, wide);
    }
    edu.read_memory(Iova::new(0x5678), 0, 8).unwrap();
    assert!(emu.translate(edu.source_id(), Iova::new(0x5678), Access::Read).is_err());
    let mut diffs = differences(&q, &e, "a read fault");
    // Software clears the record (its other fields stay), then the status,
    // as Linux's dmar_fault does.
    for (off, v, wide) in [(0x22c, 0x8000_0000, false), (offset::FSTS, 0x7f, false)] {
        write(&mut q, off, v, wide);
        write(&mut e, off, v, wide);
    }
    diffs.extend(differences(&q, &e, "clearing F and FSTS"));
    // A write fault.
    edu.write_memory(0, Iova::new(0x9000), 8).unwrap();
    assert!(emu.translate(edu.source_id(), Iova::new(0x9000), Access::Write).is_err());
    diffs.extend(differences(&q, &e, "a write fault"));
    qemu.check().unwrap();
    assert!(diffs.is_empty(), "{:#?}", diffs);
}
