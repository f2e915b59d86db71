//! `irq_remap`: interrupt remapping on the software VT-d (`vtd-emu`,
//! QEMU's capabilities, which include ECAP.IR): the driver's affinity
//! change (`irq_remap::IrTable::set_affinity`: a 64-bit IRTE store, an
//! index-selective interrupt entry cache invalidation and its wait
//! descriptor, one queue-tail write) and the unit's remapping of one MSI,
//! served by the interrupt entry cache (hit) or by a table read (miss:
//! the MSIs cycle over more entries than the cache holds). Each prints its
//! counters per operation.
#![allow(missing_docs)] // reason: criterion's macros generate undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use irq_remap::IrTable;
use viommu_examples::{DEVICE, Testbed};
use vtd_emu::{Delivered, EmuConfig, IEC_ENTRIES};
use vtd_regs::irq::{Interrupt, InterruptMode, MsiMessage};

fn irq_remap(c: &mut Criterion) {
    let Testbed { mem, emu, frames, mut inv, .. } = Testbed::new(EmuConfig::qemu());
    let mut table: IrTable<_> = IrTable::new(mem, frames, InterruptMode::XApic).expect("frames");
    table.enable(&mut inv).expect("interrupt remapping on");
    let handles: Vec<_> = (0..4 * IEC_ENTRIES as u8)
        .map(|i| {
            let h = table.allocate(1).expect("room");
            let irq = Interrupt::fixed(u32::from(i % 8), 0x20 + i);
            table.program_device(&mut inv, &h, 0, DEVICE, irq).expect("programmed");
            h
        })
        .collect();
    let mut group = c.benchmark_group("irq_remap");

    // Affinity change: counters for 1000 of them first.
    let (before, emu_before) = (*inv.counters(), emu.counters());
    for n in 0..1000u32 {
        table.set_affinity(&mut inv, &handles[0], 0, n % 8, 0x40 + (n % 64) as u8).unwrap();
    }
    let (after, emu_after) = (*inv.counters(), emu.counters());
    println!(
        "irq_remap/affinity_change: per change {} IQT writes, {} IEC descriptors, {} wait polls",
        (after.tail_writes - before.tail_writes) as f64 / 1000.0,
        (emu_after.descriptors_of(4) - emu_before.descriptors_of(4)) as f64 / 1000.0,
        (after.wait_polls - before.wait_polls) as f64 / 1000.0,
    );
    let mut n = 0u32;
    group.bench_function("affinity_change", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            table.set_affinity(&mut inv, &handles[0], 0, n % 8, 0x40 + (n % 64) as u8).unwrap();
        })
    });

    // One MSI remapped through a cached entry.
    let msi = handles[1].msi(0);
    assert!(matches!(emu.remap_interrupt(DEVICE, msi), Ok(Delivered::Remapped { .. })));
    emu.reset_counters();
    for _ in 0..1000 {
        emu.remap_interrupt(DEVICE, msi).unwrap();
    }
    let c = emu.counters();
    println!(
        "irq_remap/remap_msi_hit: per MSI {} IEC hits, {} IRTE reads",
        c.interrupt_entry_cache.hits as f64 / 1000.0,
        c.irte_reads as f64 / 1000.0
    );
    group.bench_function("remap_msi_hit", |b| b.iter(|| emu.remap_interrupt(DEVICE, msi).unwrap()));

    // One MSI each from 4x as many entries as the cache holds, in turn.
    let msis: Vec<MsiMessage> = handles.iter().map(|h| h.msi(0)).collect();
    emu.reset_counters();
    for m in msis.iter().cycle().take(1000) {
        emu.remap_interrupt(DEVICE, *m).unwrap();
    }
    let c = emu.counters();
    println!(
        "irq_remap/remap_msi_miss: per MSI {} IEC hits, {} IRTE reads",
        c.interrupt_entry_cache.hits as f64 / 1000.0,
        c.irte_reads as f64 / 1000.0
    );
    let mut next = msis.iter().cycle();
    group.bench_function("remap_msi_miss", |b| {
        b.iter(|| emu.remap_interrupt(DEVICE, *next.next().unwrap()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, irq_remap);
criterion_main!(benches);
