//! Interrupt remapping on the software VT-d (§5.1): delivery through a
//! remapped-format entry, the interrupt entry cache's staleness until an
//! invalidation, source validation, compatibility format and CFIS, and
//! the faults 20h-26h with FPD.

mod common;

use common::{Rig, sid};
use vtd_emu::{Delivered, EmuConfig, InterruptFault};
use vtd_regs::desc::{Descriptor, IecInv, IecScope};
use vtd_regs::irq::{
    Interrupt, InterruptMode, IoApicRte, MsiMessage, PostedIrte, RawIrte, RemappedIrte,
    SidQualifier, SourceValidation, TriggerMode,
};
use vtd_regs::regs::Irta;
use vtd_regs::regs::iq::DescriptorWidth;
use vtd_regs::{FaultReason, PhysAddr, PhysMem, SourceId};

const DEV: SourceId = SourceId::from_raw(0x0008);

/// A unit with interrupt remapping on over a 256-entry table in `mode`,
/// queued invalidation on, compatibility format as `cfi`.
struct IrRig {
    rig: Rig,
    table: PhysAddr,
    iqa: vtd_regs::regs::Iqa,
    tail: usize,
    mode: InterruptMode,
}

impl IrRig {
    fn new(mode: InterruptMode, cfi: bool) -> Self {
        let cfg = EmuConfig::qemu().with_interrupt_remapping(true, mode.eime());
        let rig = Rig::new(cfg);
        let table = rig.frame();
        let iqa = rig.queue(0, DescriptorWidth::Bits128);
        let mut unit = rig.unit();
        unit.enable_queued_invalidation(iqa).unwrap();
        unit.set_interrupt_remap_table(Irta::new(table, 7, mode.eime())).unwrap();
        unit.set_compatibility_format(cfi).unwrap();
        unit.set_interrupt_remapping(true).unwrap();
        Self { rig, table, iqa, tail: 0, mode }
    }

    fn write(&self, index: u64, raw: RawIrte) {
        let at = self.table.as_u64() + index * 16;
        self.rig.mem.write_u64(PhysAddr::new(at), raw.lo()).unwrap();
        self.rig.mem.write_u64(PhysAddr::new(at + 8), raw.hi()).unwrap();
    }

    fn program(&self, index: u64, e: RemappedIrte) {
        self.write(index, e.encode(self.mode).unwrap());
    }

    fn iec(&mut self, scope: IecScope) {
        self.rig.put(self.iqa, self.tail, Descriptor::Iec(IecInv { scope }));
        self.tail += 1;
        self.rig.unit().write_queue_tail(self.tail).unwrap();
    }

    fn msi(&self, source: SourceId, index: u16) -> Result<Delivered, InterruptFault> {
        self.rig.emu.remap_interrupt(source, MsiMessage::remappable(index, Some(0)))
    }

    /// The reason and FI of the fault record software would read next, if
    /// any, freeing it.
    fn take_fault(&self) -> Option<(FaultReason, SourceId, u16)> {
        let mut unit = self.rig.unit();
        let f = unit.drain_faults().next()?;
        Some((f.reason()?, f.source, (f.fault_info >> 48) as u16))
    }
}

fn remapped(index: u16, interrupt: Interrupt) -> Result<Delivered, InterruptFault> {
    Ok(Delivered::Remapped { index, interrupt })
}

fn blocked(
    source: SourceId,
    index: Option<u16>,
    reason: FaultReason,
) -> Result<Delivered, InterruptFault> {
    Err(InterruptFault { source, index, reason })
}

#[test]
fn delivers_through_the_entry_and_validates_the_source() {
    let r = IrRig::new(InterruptMode::XApic, false);
    let irq = Interrupt::fixed(3, 0x41);
    r.program(5, RemappedIrte::for_device(DEV, irq));
    assert_eq!(r.msi(DEV, 5), remapped(5, irq));
    // Another function of the device: SQ = all 16 bits, so 26h.
    let other = sid(0, 1, 1);
    assert_eq!(r.msi(other, 5), blocked(other, Some(5), FaultReason::IrSourceIdInvalid));
    assert_eq!(r.take_fault(), Some((FaultReason::IrSourceIdInvalid, other, 5)));
    // Multi-vector MSI: handle 4, subhandle 1 is entry 5.
    let m = MsiMessage { data: 1, ..MsiMessage::remappable(4, Some(0)) };
    assert_eq!(r.rig.emu.remap_interrupt(DEV, m), remapped(5, irq));
    let c = r.rig.emu.counters();
    assert_eq!((c.interrupt_requests, c.irte_reads, c.interrupt_faults), (3, 1, 1));
    assert_eq!(c.interrupt_entry_cache.hits, 2);
}

#[test]
fn cached_entries_are_stale_until_invalidated() {
    let mut r = IrRig::new(InterruptMode::XApic, false);
    let old = Interrupt::fixed(1, 0x30);
    let new = Interrupt::fixed(2, 0x31);
    for i in 8..12 {
        r.program(i, RemappedIrte::for_device(DEV, old));
        assert!(r.msi(DEV, i as u16).is_ok());
    }
    assert_eq!(r.rig.emu.interrupt_entry_cache_entries(), 4);
    for i in 8..12 {
        r.program(i, RemappedIrte::for_device(DEV, new));
    }
    // A changed affinity without invalidation: the old vector still arrives.
    assert_eq!(r.msi(DEV, 9), remapped(9, old));
    // Index-selective: entry 9 only.
    r.iec(IecScope::entries(9, 0).unwrap());
    assert_eq!(r.msi(DEV, 9), remapped(9, new));
    assert_eq!(r.msi(DEV, 10), remapped(10, old));
    // IM 1 from 10: 10 and 11; 8 stays stale.
    r.iec(IecScope::entries(10, 1).unwrap());
    assert_eq!(r.msi(DEV, 11), remapped(11, new));
    assert_eq!(r.msi(DEV, 8), remapped(8, old));
    // Clearing P is not seen either until a global invalidation.
    r.write(8, RawIrte::ZERO);
    assert_eq!(r.msi(DEV, 8), remapped(8, old));
    r.iec(IecScope::Global);
    assert_eq!(r.msi(DEV, 8), blocked(DEV, Some(8), FaultReason::IrEntryNotPresent));
    assert_eq!(r.rig.emu.counters().descriptors_of(4), 3);
}

#[test]
fn faults_and_fpd() {
    let r = IrRig::new(InterruptMode::XApic, false);
    // 22h: not present; with FPD set, not recorded.
    assert_eq!(r.msi(DEV, 1), blocked(DEV, Some(1), FaultReason::IrEntryNotPresent));
    assert_eq!(r.take_fault(), Some((FaultReason::IrEntryNotPresent, DEV, 1)));
    r.write(1, RawIrte::new(2, 0));
    assert!(r.msi(DEV, 1).is_err());
    assert_eq!(r.take_fault(), None);
    // 24h: a reserved bit; a posted-format entry (no CAP.PI); FPD too.
    r.write(2, RawIrte::new(1 | 1 << 12, 0));
    assert_eq!(r.msi(DEV, 2), blocked(DEV, Some(2), FaultReason::IrEntryReserved));
    assert_eq!(r.take_fault(), Some((FaultReason::IrEntryReserved, DEV, 2)));
    let posted = PostedIrte {
        fpd: true,
        urgent: false,
        vector: 1,
        descriptor: PhysAddr::new(0x1000),
        available: 0,
        source: SourceValidation::None,
    };
    r.write(3, posted.encode().unwrap());
    assert_eq!(r.msi(DEV, 3), blocked(DEV, Some(3), FaultReason::IrEntryReserved));
    assert_eq!(r.take_fault(), None);
    // 26h with FPD: not recorded.
    let fpd = RemappedIrte { fpd: true, ..RemappedIrte::for_device(DEV, Interrupt::fixed(0, 1)) };
    r.program(4, fpd);
    assert!(r.msi(sid(0, 2, 0), 4).is_err());
    assert_eq!(r.take_fault(), None);
    // 21h: beyond the 256 entries IRTA.S = 7 gives; with a subhandle
    // carrying the index past 16 bits.
    assert_eq!(r.msi(DEV, 256), blocked(DEV, Some(256), FaultReason::IrIndexBeyondTable));
    assert_eq!(r.take_fault(), Some((FaultReason::IrIndexBeyondTable, DEV, 256)));
    let wrap = MsiMessage { data: 2, ..MsiMessage::remappable(0xffff, Some(0)) };
    assert_eq!(
        r.rig.emu.remap_interrupt(DEV, wrap),
        blocked(DEV, Some(1), FaultReason::IrIndexBeyondTable)
    );
    assert!(r.take_fault().is_some());
    // 20h: reserved data bits with SHV; address bits above 32.
    let bad = MsiMessage { data: 1 << 16, ..MsiMessage::remappable(0, Some(0)) };
    assert_eq!(
        r.rig.emu.remap_interrupt(DEV, bad),
        blocked(DEV, None, FaultReason::IrRequestReserved)
    );
    assert_eq!(r.take_fault(), Some((FaultReason::IrRequestReserved, DEV, 0)));
    // Not an interrupt request: refused, nothing recorded.
    let dma = MsiMessage { address: 0x1000, data: 0 };
    assert!(r.rig.emu.remap_interrupt(DEV, dma).is_err());
    assert_eq!(r.take_fault(), None);
}

#[test]
fn compatibility_format_follows_cfis_and_eime() {
    let compat = MsiMessage::compatibility(&Interrupt::fixed(1, 0x50)).unwrap();
    let blocked_rig = IrRig::new(InterruptMode::XApic, false);
    assert_eq!(
        blocked_rig.rig.emu.remap_interrupt(DEV, compat),
        blocked(DEV, None, FaultReason::IrCompatBlocked)
    );
    assert_eq!(blocked_rig.take_fault(), Some((FaultReason::IrCompatBlocked, DEV, 0)));
    let allowed = IrRig::new(InterruptMode::XApic, true);
    assert_eq!(allowed.rig.emu.remap_interrupt(DEV, compat), Ok(Delivered::Passed(compat)));
    // x2APIC mode blocks compatibility format whatever CFI says.
    let x2 = IrRig::new(InterruptMode::X2Apic, true);
    assert!(x2.rig.emu.remap_interrupt(DEV, compat).is_err());
    // Remapping off: everything passes, remappable format too.
    let rig = Rig::qemu();
    let m = MsiMessage::remappable(3, Some(0));
    assert_eq!(rig.emu.remap_interrupt(DEV, m), Ok(Delivered::Passed(m)));
}

#[test]
fn x2apic_destinations_bus_ranges_and_ioapic() {
    let mut r = IrRig::new(InterruptMode::X2Apic, false);
    let irq = Interrupt { trigger: TriggerMode::Level, ..Interrupt::fixed(0x1_0002, 0x60) };
    let bridge_bus = RemappedIrte {
        source: SourceValidation::Bus { start: 2, end: 4 },
        ..RemappedIrte::for_device(DEV, irq)
    };
    r.program(7, bridge_bus);
    assert_eq!(r.msi(sid(3, 0, 0), 7), remapped(7, irq));
    assert!(r.msi(sid(5, 0, 0), 7).is_err());
    // The IOAPIC at 00:1f.0, any function of it (SQ 11b).
    let ioapic = sid(0, 0x1f, 0);
    let e = RemappedIrte {
        source: SourceValidation::Requester {
            sid: ioapic,
            qualifier: SidQualifier::IgnoreBits2To0,
        },
        ..RemappedIrte::for_device(ioapic, irq)
    };
    r.program(0x20, e);
    r.iec(IecScope::Global);
    let rte = IoApicRte::remappable(0x20, 0x60, TriggerMode::Level, false);
    assert_eq!(r.rig.emu.remap_ioapic(sid(0, 0x1f, 7), rte), remapped(0x20, irq));
}

#[test]
fn sirtp_with_esirtps_drops_the_cache() {
    for esirtps in [false, true] {
        let mut cfg = EmuConfig::qemu();
        cfg.cap = cfg.cap.with_esirtps(esirtps);
        let rig = Rig::new(cfg);
        let table = rig.frame();
        let mut unit = rig.unit();
        unit.enable_queued_invalidation(rig.queue(0, DescriptorWidth::Bits128)).unwrap();
        let irta = Irta::new(table, 7, false);
        unit.set_interrupt_remap_table(irta).unwrap();
        unit.set_interrupt_remapping(true).unwrap();
        let e = RemappedIrte::for_device(DEV, Interrupt::fixed(0, 0x22));
        let raw = e.encode(InterruptMode::XApic).unwrap();
        rig.mem.write_u64(table, raw.lo()).unwrap();
        rig.mem.write_u64(PhysAddr::new(table.as_u64() + 8), raw.hi()).unwrap();
        assert!(rig.emu.remap_interrupt(DEV, MsiMessage::remappable(0, Some(0))).is_ok());
        unit.set_interrupt_remap_table(irta).unwrap();
        assert_eq!(rig.emu.interrupt_entry_cache_entries(), usize::from(!esirtps));
    }
}
