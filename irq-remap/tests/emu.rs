//! The table manager on the software VT-d: bring-up order, x2APIC, affinity
//! changes, multi-vector MSI blocks and their invalidation scopes, IOAPIC
//! entries, and the units it refuses.

mod common;

use common::Bed;
use invalidation::{Invalidation, RegisterInvalidator};
use irq_remap::{Error, IrTable};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{Delivered, EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::IecScope;
use vtd_regs::irq::{Interrupt, InterruptMode, IrteError, MsiMessage, TriggerMode};
use vtd_regs::unit::Feature;
use vtd_regs::{PhysAddr, RemappingUnit, SourceId, UnitError};

const NIC: SourceId = SourceId::from_raw(0x0008);

fn seen<const W: usize>(bed: &Bed<W>) -> Vec<String> {
    bed.emu.with_hook_mut(|h| std::mem::take(&mut h.seen))
}

#[test]
fn bring_up_in_order() {
    let bed: Bed<4> = Bed::new(InterruptMode::X2Apic);
    let seen = seen(&bed);
    let at = |s: &str| {
        seen.iter().position(|x| x.starts_with(s)).unwrap_or_else(|| panic!("{s}: {seen:?}"))
    };
    let table = at("InterruptTable");
    let global =
        at(&format!("{:?}", vtd_emu::hook::Invalidation::InterruptEntries(IecScope::Global)));
    let ire = at("InterruptRemapping(true)");
    assert!(table < global && global < ire, "{seen:?}");
    // EIME was latched with the table; CFI stays clear (it is at reset).
    assert!(seen[table].contains("InterruptTable(Irta(") && bed.table.irta().eime());
    assert!(!seen.iter().any(|s| s == "CompatibilityFormat(true)"));
    let compat = MsiMessage::compatibility(&Interrupt::fixed(0, 0x30)).unwrap();
    assert!(bed.emu.remap_interrupt(NIC, compat).is_err());
    assert_eq!(bed.table.irta().entries(), 256);
}

#[test]
fn x2apic_destinations_and_affinity() {
    let mut bed: Bed<4> = Bed::new(InterruptMode::X2Apic);
    let h = bed.table.allocate(1).unwrap();
    let irq = Interrupt::fixed(0x1_0005, 0x40);
    bed.table.program_device(&mut bed.inv, &h, 0, NIC, irq).unwrap();
    let msi = h.msi(0);
    assert_eq!(
        bed.emu.remap_interrupt(NIC, msi),
        Ok(Delivered::Remapped { index: h.index(), interrupt: irq })
    );
    let before = bed.emu.counters().descriptors_of(4);
    bed.table.set_affinity(&mut bed.inv, &h, 0, 0x2_0000, 0x41).unwrap();
    assert_eq!(bed.emu.counters().descriptors_of(4), before + 1);
    let moved = Interrupt::fixed(0x2_0000, 0x41);
    assert_eq!(
        bed.emu.remap_interrupt(NIC, msi),
        Ok(Delivered::Remapped { index: h.index(), interrupt: moved })
    );
    // The invalidation was index-selective, of that entry.
    let inv =
        vtd_emu::hook::Invalidation::InterruptEntries(IecScope::entries(h.index(), 0).unwrap());
    assert!(seen(&bed).contains(&format!("{inv:?}")));
    assert_eq!(bed.table.set_affinity(&mut bed.inv, &h, 1, 0, 0), Err(Error::NotInBlock(1)));
    let free = bed.table.allocate(1).unwrap();
    assert_eq!(
        bed.table.set_affinity(&mut bed.inv, &free, 0, 0, 0x50),
        Err(Error::NotProgrammed(free.index()))
    );
}

#[test]
fn xapic_refuses_wide_destinations() {
    let mut bed: Bed<1> = Bed::new(InterruptMode::XApic);
    let h = bed.table.allocate(1).unwrap();
    assert_eq!(
        bed.table.program_device(&mut bed.inv, &h, 0, NIC, Interrupt::fixed(256, 0x40)),
        Err(Error::Entry(IrteError::DestinationTooWide(256)))
    );
}

#[test]
fn multi_vector_msi_block() {
    let mut bed: Bed<4> = Bed::new(InterruptMode::XApic);
    let _one = bed.table.allocate(1).unwrap();
    let h = bed.table.allocate(4).unwrap();
    assert_eq!(h.index() % 4, 0);
    for v in 0..4u16 {
        let irq = Interrupt::fixed(u32::from(v), 0x60 + v as u8);
        bed.table.program_device(&mut bed.inv, &h, v, NIC, irq).unwrap();
    }
    // The device is given msi(0) and ORs the vector number into the data.
    for v in 0..4u16 {
        let m = MsiMessage { data: h.msi(0).data | u32::from(v), ..h.msi(0) };
        let Ok(Delivered::Remapped { index, interrupt }) = bed.emu.remap_interrupt(NIC, m) else {
            panic!()
        };
        assert_eq!((index, interrupt.vector), (h.index() + v, 0x60 + v as u8));
    }
    let index = h.index();
    let released = bed.table.free(h).unwrap();
    assert_eq!(
        released.invalidation(),
        Invalidation::InterruptEntries(IecScope::entries(index, 2).unwrap())
    );
    let ticket = invalidation::Invalidator::post(&mut bed.inv, [released.invalidation()]).unwrap();
    bed.table.retire(&mut bed.inv, released, ticket).unwrap();
    assert!(bed.emu.remap_interrupt(NIC, MsiMessage::remappable(index, Some(1))).is_err());
    bed.table.drain(&mut bed.inv).unwrap();
    assert_eq!(bed.table.in_use(), 1);
}

#[test]
fn blocks_beyond_mhmv_are_invalidated_globally() {
    let mut cfg = EmuConfig::qemu();
    cfg.ecap = cfg.ecap.with_mhmv(1);
    let mut bed: Bed<1> = Bed::with_config(cfg, InterruptMode::XApic);
    let two = bed.table.allocate(2).unwrap();
    let four = bed.table.allocate(4).unwrap();
    assert_eq!(
        bed.table.free(two).unwrap().invalidation(),
        Invalidation::InterruptEntries(IecScope::entries(0, 1).unwrap())
    );
    assert_eq!(
        bed.table.free(four).unwrap().invalidation(),
        Invalidation::InterruptEntries(IecScope::Global)
    );
}

#[test]
fn ioapic_pin() {
    let mut bed: Bed<1> = Bed::new(InterruptMode::XApic);
    let ioapic = SourceId::new(0, 0x1f, 0).unwrap();
    let h = bed.table.allocate(1).unwrap();
    let irq = Interrupt { trigger: TriggerMode::Level, ..Interrupt::fixed(1, 0x33) };
    bed.table.program_device(&mut bed.inv, &h, 0, ioapic, irq).unwrap();
    let rte = h.ioapic(0, 0x33, TriggerMode::Level);
    assert_eq!(
        bed.emu.remap_ioapic(ioapic, rte),
        Ok(Delivered::Remapped { index: h.index(), interrupt: irq })
    );
    assert!(bed.emu.remap_ioapic(NIC, rte).is_err());
}

#[test]
fn units_that_cannot() {
    // x2APIC mode on a unit without ECAP.EIM.
    let mut cfg = EmuConfig::qemu();
    cfg.ecap = cfg.ecap.with_eim(false);
    let mem: &'static HeapMemory = Box::leak(Box::new(HeapMemory::new(1 << 20)));
    let frames = SimFrameAllocator::new(mem, PhysAddr::new(0x1000), PhysAddr::new(1 << 20));
    let emu: &'static Emulator<&HeapMemory> = Box::leak(Box::new(Emulator::new(mem, cfg).unwrap()));
    let mut table: IrTable<_, 1> = IrTable::new(mem, &frames, InterruptMode::X2Apic).unwrap();
    let mut reg = RegisterInvalidator::new(RemappingUnit::new(emu).unwrap());
    assert_eq!(
        table.enable(&mut reg),
        Err(Error::Unit(UnitError::Unsupported(Feature::ExtendedInterruptMode)))
    );
    // Register-based invalidation has no interrupt entry cache command.
    let mut table: IrTable<_, 1> = IrTable::new(mem, &frames, InterruptMode::XApic).unwrap();
    assert!(matches!(
        table.enable(&mut reg),
        Err(Error::Invalidation(invalidation::Error::Unsupported(_)))
    ));
    // No capacity that is not a power of two.
    assert_eq!(
        IrTable::<_, 3>::new(mem, &frames, InterruptMode::XApic).err(),
        Some(Error::Capacity)
    );
    assert_eq!(table.allocate(3).err(), Some(Error::BadCount(3)));
    assert_eq!(table.allocate(128).err(), Some(Error::BadCount(128)));
}
