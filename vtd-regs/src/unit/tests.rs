//! The driver handle against a small register-file model of a unit that
//! implements the command handshakes, and against one that never answers.

use core::cell::{Cell, RefCell};

use proptest::prelude::*;

use super::*;
use crate::addr::{Iova, PhysAddr};
use crate::fault::FaultReason;
use crate::ids::{DomainId, SourceId};
use crate::regs::cap::{FaultRecordCount, MaxAddressMask};
use crate::regs::offset::*;
use crate::regs::{
    Ccmd, DescriptorWidth, FaultType, Frcd, Fsts, Gcmd, IotlbInv, Irta, QueueErrorInfo, QueueSize,
    TranslationTableMode,
};
use crate::scope::{ContextScope, Drain, FunctionMask, Granularity, IotlbScope};

/// CAP of QEMU's intel-iommu (one fault register at 0x220, PSI, MAMV 18,
/// DRD, DWD, 16-bit domain ids).
const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
/// ECAP of QEMU's intel-iommu (QI, IR, PT; IOTLB registers at 0xF0).
const QEMU_ECAP: u64 = 0xf0_0f4a;

#[derive(Clone, Copy)]
struct Pending {
    offset: usize,
    value: u32,
    reads_left: u32,
}

/// A register page that answers commands like hardware: GCMD updates GSTS,
/// CCMD.ICC and IOTLB_REG.IVT clear with a granularity reported, FSTS and
/// FRCD.F are write-1-to-clear, and IQH follows IQT.
struct FakeUnit {
    regs: Vec<Cell<u32>>,
    pending: Cell<Option<Pending>>,
    /// Status reads before a command's effect shows.
    delay: u32,
    /// Never completes a command.
    stuck: bool,
    /// The granularity reported for every invalidation, if not the one asked.
    performed: Option<Option<Granularity>>,
    writes: RefCell<Vec<(usize, u32)>>,
}

impl FakeUnit {
    fn new(cap: u64, ecap: u64) -> Self {
        let f = FakeUnit {
            regs: (0..1024).map(|_| Cell::new(0)).collect(),
            pending: Cell::new(None),
            delay: 0,
            stuck: false,
            performed: None,
            writes: RefCell::new(Vec::new()),
        };
        f.set(VER, 0x10);
        f.set64(CAP, cap);
        f.set64(ECAP, ecap);
        f
    }
    /// Out-of-range offsets read as all ones and ignore writes, as
    /// `VolatileMmio` does.
    fn get(&self, off: usize) -> u32 {
        self.regs.get(off / 4).map_or(u32::MAX, Cell::get)
    }
    fn set(&self, off: usize, v: u32) {
        if let Some(r) = self.regs.get(off / 4) {
            r.set(v);
        }
    }
    fn get64(&self, off: usize) -> u64 {
        self.get(off) as u64 | (self.get(off + 4) as u64) << 32
    }
    fn set64(&self, off: usize, v: u64) {
        self.set(off, v as u32);
        self.set(off + 4, (v >> 32) as u32);
    }
    fn iotlb_off(&self) -> usize {
        crate::regs::Ecap(self.get64(ECAP)).iro().iotlb()
    }
    fn complete(&self, offset: usize, value: u32) {
        if !self.stuck {
            self.pending.set(Some(Pending { offset, value, reads_left: self.delay }));
        }
    }
    fn granularity(&self, asked: Option<Granularity>) -> Option<Granularity> {
        self.performed.unwrap_or(asked)
    }
    fn gcmd_writes(&self) -> Vec<u32> {
        self.writes.borrow().iter().filter(|(o, _)| *o == GCMD).map(|(_, v)| *v).collect()
    }
}

impl Mmio for FakeUnit {
    fn read32(&self, offset: usize) -> u32 {
        if let Some(mut p) = self.pending.get() {
            if p.reads_left == 0 {
                self.set(p.offset, p.value);
                self.pending.set(None);
            } else {
                p.reads_left -= 1;
                self.pending.set(Some(p));
            }
        }
        self.get(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.writes.borrow_mut().push((offset, value));
        let iotlb = self.iotlb_off();
        let cap = crate::regs::Cap(self.get64(CAP));
        let records = crate::regs::FaultRecords::new(cap);
        let frcd_first = cap.fro().byte_offset();
        let frcd_end = frcd_first + records.count() as usize * 16;
        match offset {
            GCMD => {
                let cmd = GlobalBits::from_bits_truncate(value);
                let mut sts = GlobalBits::from_bits_truncate(self.get(GSTS))
                    & (GlobalBits::SRTP | GlobalBits::SIRTP);
                sts |= cmd
                    & (GlobalBits::TE
                        | GlobalBits::EAFL
                        | GlobalBits::QIE
                        | GlobalBits::IRE
                        | GlobalBits::CFI);
                if cmd.contains(GlobalBits::SRTP) {
                    sts |= GlobalBits::SRTP;
                }
                if cmd.contains(GlobalBits::SIRTP) {
                    sts |= GlobalBits::SIRTP;
                }
                if !cmd.contains(GlobalBits::QIE) {
                    self.set64(IQH, 0);
                }
                self.complete(GSTS, sts.bits());
            }
            o if o == CCMD + 4 => {
                self.set(o, value);
                let c = Ccmd(self.get64(CCMD));
                if c.icc() {
                    let done = c.with_icc(false).with_caig(self.granularity(c.cirg()));
                    self.complete(o, (done.0 >> 32) as u32);
                }
            }
            o if o == iotlb + 4 => {
                self.set(o, value);
                let c = IotlbInv(self.get64(iotlb));
                if c.ivt() {
                    let done = c.with_ivt(false).with_iaig(self.granularity(c.iirg()));
                    self.complete(o, (done.0 >> 32) as u32);
                }
            }
            FSTS => self.set(FSTS, self.get(FSTS) & !(value & Fsts::W1C)),
            o if (frcd_first..frcd_end).contains(&o) && o % 16 == 12 => {
                self.set(o, self.get(o) & !(value & (1 << 31)));
            }
            IQT => {
                self.set(IQT, value);
                if !self.stuck {
                    self.set(IQH, value);
                }
            }
            o => self.set(o, value),
        }
    }
}

fn unit(cap: u64, ecap: u64) -> RemappingUnit<FakeUnit> {
    RemappingUnit::new(FakeUnit::new(cap, ecap)).unwrap()
}

#[test]
fn constructor_caches_identity_registers() {
    let u = unit(QEMU_CAP, QEMU_ECAP);
    assert_eq!((u.ver().major(), u.ver().minor()), (1, 0));
    assert_eq!(u.cap().0, QEMU_CAP);
    assert_eq!(u.ecap().0, QEMU_ECAP);
    assert_eq!(u.queue(), None);
    assert_eq!(u.budget(), PollBudget::DEFAULT);
    let absent = FakeUnit::new(u64::MAX, u64::MAX);
    assert!(matches!(RemappingUnit::new(absent), Err(UnitError::NotPresent)));
}

#[test]
fn constructor_picks_up_an_enabled_queue() {
    let f = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    f.set(GSTS, GlobalBits::QIE.bits());
    f.set64(IQA, 0x5000_0001);
    let u = RemappingUnit::new(f).unwrap();
    assert_eq!(u.queue().map(|q| q.entries()), Some(512));
}

#[test]
fn root_table_then_translation() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    u.set_root_table(PhysAddr::new(0x10_0000), TranslationTableMode::Legacy).unwrap();
    assert_eq!(u.mmio().get64(RTADDR), 0x10_0000);
    assert!(u.status().contains(GlobalBits::SRTP));
    u.enable_translation().unwrap();
    assert!(u.status().contains(GlobalBits::TE));
    // Enabling again writes nothing; a second SRTP keeps TE and drops SRTP's
    // status bit from the command (Linux: GSTS & 0x96ffffff | SRTP).
    u.enable_translation().unwrap();
    u.set_root_table(PhysAddr::new(0x20_0000), TranslationTableMode::Legacy).unwrap();
    assert_eq!(u.mmio().gcmd_writes(), vec![0x4000_0000, 0x8000_0000, 0xc000_0000]);
    u.disable_translation().unwrap();
    assert!(!u.status().contains(GlobalBits::TE));
    assert_eq!(u.mmio().gcmd_writes().last(), Some(&0x0000_0000));
    assert_eq!(
        u.set_root_table(PhysAddr::new(0), TranslationTableMode::Scalable),
        Err(UnitError::Unsupported(Feature::ScalableMode))
    );
}

#[test]
fn write_buffer_flush_only_with_rwbf() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    u.write_buffer_flush().unwrap();
    assert!(u.mmio().writes.borrow().is_empty());
    let mut u = unit(QEMU_CAP | 1 << 4, QEMU_ECAP);
    u.write_buffer_flush().unwrap();
    assert_eq!(u.mmio().gcmd_writes(), vec![GlobalBits::WBF.bits()]);
}

#[test]
fn queued_invalidation_lifecycle() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    let iqa = Iqa::new(
        PhysAddr::new(0x7000),
        QueueSize::from_order(0).unwrap(),
        DescriptorWidth::Bits128,
    );
    assert_eq!(u.write_queue_tail(1), Err(UnitError::QueueDisabled));
    u.enable_queued_invalidation(iqa).unwrap();
    // IQT = 0 first, then IQA, then GCMD.QIE.
    let order: Vec<usize> = u
        .mmio()
        .writes
        .borrow()
        .iter()
        .map(|(o, _)| *o)
        .filter(|o| [IQT, IQA, GCMD].contains(o))
        .collect();
    assert_eq!(order, vec![IQT, IQA, GCMD]);
    assert_eq!(u.mmio().get64(IQA), 0x7000);
    assert_eq!(u.queue(), Some(iqa));
    assert_eq!(u.enable_queued_invalidation(iqa), Err(UnitError::QueuedInvalidationEnabled));
    u.write_queue_tail(5).unwrap();
    assert_eq!(u.mmio().get64(IQT), 0x50);
    assert_eq!(u.queue_head(), Ok(5));
    assert_eq!(
        u.write_queue_tail(256),
        Err(UnitError::TailOutOfRange { index: 256, entries: 256 })
    );
    // Register-based invalidation is refused while the queue is on.
    assert_eq!(
        u.invalidate_context(ContextScope::Global),
        Err(UnitError::QueuedInvalidationEnabled)
    );
    u.disable_queued_invalidation().unwrap();
    assert!(!u.status().contains(GlobalBits::QIE));
    assert_eq!(u.queue(), None);
    let wide = iqa.with_width(DescriptorWidth::Bits256);
    assert_eq!(
        u.enable_queued_invalidation(wide),
        Err(UnitError::Unsupported(Feature::ScalableMode))
    );
    let mut noqi = unit(QEMU_CAP, QEMU_ECAP & !2);
    assert_eq!(
        noqi.enable_queued_invalidation(iqa),
        Err(UnitError::Unsupported(Feature::QueuedInvalidation))
    );
}

#[test]
fn queue_that_never_drains_times_out() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    let iqa = Iqa::new(
        PhysAddr::new(0x7000),
        QueueSize::from_order(0).unwrap(),
        DescriptorWidth::Bits128,
    );
    u.enable_queued_invalidation(iqa).unwrap();
    u.set_budget(PollBudget::new(8));
    u.mmio.stuck = true;
    u.write_queue_tail(3).unwrap();
    assert_eq!(
        u.disable_queued_invalidation(),
        Err(UnitError::Timeout { what: Operation::QueueDrain })
    );
}

#[test]
fn interrupt_remapping() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    let irta = Irta::new(PhysAddr::new(0x9000), 7, false);
    u.set_interrupt_remap_table(irta).unwrap();
    assert_eq!(u.mmio().get64(IRTA), 0x9007);
    u.set_interrupt_remapping(true).unwrap();
    u.set_compatibility_format(true).unwrap();
    assert!(u.status().contains(GlobalBits::IRE | GlobalBits::CFI | GlobalBits::SIRTP));
    assert_eq!(u.mmio().gcmd_writes(), vec![0x0100_0000, 0x0200_0000, 0x0280_0000]);
    assert_eq!(
        u.set_interrupt_remap_table(irta.with_eime(true)),
        Err(UnitError::Unsupported(Feature::ExtendedInterruptMode))
    );
    let mut noir = unit(QEMU_CAP, QEMU_ECAP & !8);
    assert_eq!(
        noir.set_interrupt_remap_table(irta),
        Err(UnitError::Unsupported(Feature::InterruptRemapping))
    );
}

#[test]
fn context_invalidation_reports_actual_granularity() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    let dev = ContextScope::Device {
        domain: DomainId::new(4),
        source: SourceId::new(0, 3, 0).unwrap(),
        function_mask: FunctionMask::None,
    };
    assert_eq!(u.invalidate_context(dev), Ok(Granularity::Selective));
    assert_eq!(u.mmio().get64(CCMD), 0x7800_0000_0018_0004);
    u.mmio.performed = Some(Some(Granularity::Global));
    assert_eq!(
        u.invalidate_context(ContextScope::Domain(DomainId::new(4))),
        Ok(Granularity::Global)
    );
    u.mmio.performed = Some(None);
    assert_eq!(u.invalidate_context(ContextScope::Global), Err(UnitError::NotPerformed));
    // ND = 0: 16 domain ids.
    let mut small = unit(QEMU_CAP & !7, QEMU_ECAP);
    assert_eq!(
        small.invalidate_context(ContextScope::Domain(DomainId::new(16))),
        Err(UnitError::DomainOutOfRange(DomainId::new(16)))
    );
}

#[test]
fn iotlb_invalidation() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    let s = IotlbScope::pages(DomainId::new(2), Iova::new(0x20_0000), 9, true).unwrap();
    assert_eq!(u.invalidate_iotlb(s, Drain::all()), Ok(Granularity::Selective));
    assert_eq!(u.mmio().get64(0xf0), 0x20_0049);
    // IVA written before IOTLB_REG; IVT cleared, IAIG = 3, DR and DW kept (QEMU has DRD, DWD).
    let offs: Vec<usize> = u.mmio().writes.borrow().iter().map(|(o, _)| *o).collect();
    assert_eq!(offs, vec![0xf0, 0xf4, 0xf8, 0xfc]);
    assert_eq!(u.mmio().get64(0xf8), 0x3603_0002_0000_0000);
    assert_eq!(u.invalidate_iotlb(IotlbScope::Global, Drain::empty()), Ok(Granularity::Global));
    let too_big = IotlbScope::pages(DomainId::new(2), Iova::new(0), 19, false).unwrap();
    assert_eq!(
        u.invalidate_iotlb(too_big, Drain::empty()),
        Err(UnitError::AddressMaskTooLarge { order: 19, max: 18 })
    );
    let crooked = IotlbScope::Pages {
        domain: DomainId::new(1),
        addr: Iova::new(0x1000),
        order: 1,
        leaf_only: false,
    };
    assert!(matches!(u.invalidate_iotlb(crooked, Drain::empty()), Err(UnitError::Misaligned(_))));
    // Without PSI, DRD and DWD.
    let cap = crate::regs::Cap(QEMU_CAP)
        .with_psi(false)
        .with_drd(false)
        .with_dwd(false)
        .with_mamv(MaxAddressMask(0));
    let mut plain = unit(cap.0, QEMU_ECAP);
    assert_eq!(
        plain.invalidate_iotlb(s, Drain::empty()),
        Err(UnitError::Unsupported(Feature::PageSelectiveInvalidation))
    );
    assert_eq!(
        plain.invalidate_iotlb(IotlbScope::Domain(DomainId::new(2)), Drain::all()),
        Ok(Granularity::Domain)
    );
    assert_eq!(plain.mmio().get64(0xf8), 0x2400_0002_0000_0000);
}

#[test]
fn faults_drain_from_fri_with_wraparound() {
    let cap = crate::regs::Cap(QEMU_CAP).with_nfr(FaultRecordCount(3));
    let f = FakeUnit::new(cap.0, QEMU_ECAP);
    let write = |i: usize, r: Frcd| {
        f.set64(0x220 + 16 * i, r.lo);
        f.set64(0x228 + 16 * i, r.hi);
    };
    let sid = SourceId::new(0, 3, 0).unwrap();
    write(2, Frcd::new(sid, FaultReason::WriteNotPermitted, FaultType::Write, 0x1000, None));
    write(3, Frcd::new(sid, FaultReason::ReadNotPermitted, FaultType::Read, 0x2000, None));
    write(0, Frcd::new(sid, FaultReason::ContextEntryNotPresent, FaultType::Read, 0x3000, Some(7)));
    f.set(FSTS, Fsts(0).with_ppf(true).with_pfo(true).with_fri(2).0);
    let mut u = RemappingUnit::new(f).unwrap();
    let mut drain = u.drain_faults();
    assert!(drain.overflowed());
    let got: Vec<(u16, Option<FaultReason>, u64)> =
        drain.by_ref().map(|r| (r.index, r.reason(), r.fault_info)).collect();
    assert_eq!(
        got,
        vec![
            (2, Some(FaultReason::WriteNotPermitted), 0x1000),
            (3, Some(FaultReason::ReadNotPermitted), 0x2000),
            (0, Some(FaultReason::ContextEntryNotPresent), 0x3000),
        ]
    );
    assert_eq!(drain.next(), None);
    for i in 0..4 {
        assert_eq!(u.mmio().get(0x22c + 16 * i) >> 31, 0, "F of record {i} cleared");
    }
    assert!(!Fsts(u.mmio().get(FSTS)).pfo());
    // Every record full and a garbage FRI: the drain is bounded by NFR + 1.
    for i in 0..4 {
        u.mmio().set(0x22c + 16 * i, 0x8000_0000);
    }
    u.mmio().set(FSTS, Fsts(0).with_ppf(true).with_fri(0xff).0);
    assert_eq!(u.drain_faults().count(), 4);
    u.mmio().set(FSTS, 0);
    assert_eq!(u.drain_faults().count(), 0);
}

#[test]
fn queue_errors_read_and_cleared() {
    let mut u = unit(QEMU_CAP, QEMU_ECAP);
    assert_eq!(u.take_queue_error(), None);
    u.mmio().set(FSTS, Fsts(0).with_iqe(true).with_ite(true).with_ppf(true).0);
    u.mmio().set64(IQERCD, 0x0000_0018_0000_0004);
    u.mmio().set64(IQH, 0x40);
    let e = u.take_queue_error().unwrap();
    assert_eq!(e.queue, Some(QueueErrorInfo::ReservedField));
    assert_eq!(e.head.byte_offset(), 0x40);
    assert_eq!(e.timeout, Some(SourceId::new(0, 3, 0).unwrap()));
    assert_eq!(e.completion, None);
    // IQE and ITE cleared, PPF untouched.
    assert_eq!(u.mmio().get(FSTS), Fsts(0).with_ppf(true).0);
    assert_eq!(u.take_queue_error(), None);
}

#[test]
fn a_unit_that_never_answers_times_out() {
    let mut f = FakeUnit::new(QEMU_CAP | 1 << 4, QEMU_ECAP);
    f.stuck = true;
    let mut u = RemappingUnit::with_budget(f, PollBudget::new(16)).unwrap();
    assert_eq!(u.enable_translation(), Err(UnitError::Timeout { what: Operation::Translation }));
    assert_eq!(
        u.set_root_table(PhysAddr::new(0), TranslationTableMode::Legacy),
        Err(UnitError::Timeout { what: Operation::SetRootTable })
    );
    assert_eq!(
        u.invalidate_context(ContextScope::Global),
        Err(UnitError::Timeout { what: Operation::ContextInvalidation })
    );
    assert_eq!(
        u.invalidate_iotlb(IotlbScope::Global, Drain::empty()),
        Err(UnitError::Timeout { what: Operation::IotlbInvalidation })
    );
    // A write buffer flush never finishes: WBFS stays set.
    u.mmio.stuck = false;
    u.mmio().set(GSTS, GlobalBits::WBF.bits());
    u.mmio.stuck = true;
    assert_eq!(
        u.write_buffer_flush(),
        Err(UnitError::Timeout { what: Operation::WriteBufferFlush })
    );
}

#[test]
fn budget_counts_status_reads() {
    let mut f = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    f.delay = 5;
    let mut u = RemappingUnit::with_budget(f, PollBudget::new(3)).unwrap();
    assert_eq!(u.enable_translation(), Err(UnitError::Timeout { what: Operation::Translation }));
    let mut f = FakeUnit::new(QEMU_CAP, QEMU_ECAP);
    f.delay = 5;
    let mut u = RemappingUnit::with_budget(f, PollBudget::new(10)).unwrap();
    assert_eq!(u.enable_translation(), Ok(()));
    assert_eq!(PollBudget::new(0).reads(), 1);
}

#[test]
fn gcmd_written_value_type() {
    // The command value is what `GlobalBits::command` computes from GSTS.
    let g = GlobalBits::command(crate::regs::Gsts(0x8400_0000), GlobalBits::SRTP, true);
    assert_eq!(g, Gcmd(0xc400_0000));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary register contents never make the handle panic or loop
    /// beyond its bounds.
    #[test]
    fn arbitrary_registers_never_panic(words in proptest::collection::vec(any::<u32>(), 1024)) {
        let mut f = FakeUnit::new(0, 0);
        for (i, w) in words.iter().enumerate() {
            f.regs[i].set(*w);
        }
        f.stuck = true;
        let Ok(mut u) = RemappingUnit::with_budget(f, PollBudget::new(4)) else { return Ok(()) };
        let n = u.cap().nfr().count() as usize;
        prop_assert!(u.drain_faults().count() <= n);
        let _ = u.take_queue_error();
        let _ = u.queue_head();
        let _ = u.write_queue_tail(1);
        let _ = u.invalidate_context(ContextScope::Global);
        let _ = u.invalidate_iotlb(IotlbScope::Domain(DomainId::new(1)), Drain::all());
        let _ = u.write_buffer_flush();
        let _ = u.enable_translation();
        let _ = u.disable_queued_invalidation();
    }
}
