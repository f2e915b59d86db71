//! `viommu_irq`: a guest's affinity change of one interrupt
//! (`irq_remap::IrTable::set_affinity`: a 64-bit IRTE store, an
//! index-selective interrupt entry cache invalidation and its wait) through
//! its vIOMMU under trap-and-emulate (each register access a synchronous
//! call, no VM exit), which shadows the entry into a host route:
//! `msi_routes` (a VMM's MSI route table) and `host_irte` (a host IRTE on
//! the host's software VT-d, with the host's own index-selective
//! invalidation, waited for). Beside them, `bare_metal`: the same driver
//! call on the host's unit directly (`irq_remap/affinity_change`). Each
//! prints its work per change.
#![allow(missing_docs)] // reason: criterion's macros generate undocumented items

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use invalidation::QueuedInvalidator;
use irq_remap::{Handle, IrTable};
use viommu::interrupts::{GuestApics, HostInterrupts, IrteRoutes, MsiRoutes, VcpuMap};
use viommu::{
    Assignment, GuestLayout, GuestMemory, GuestPinner, InterruptRoutes, Native, Viommu,
    ViommuConfig,
};
use viommu_benches::host::{
    Frames, GMem, GUEST_FRAMES, GUEST_RAM, HOST_FRAMES, HostInv, Mem, TheHost, leak, new_host,
};
use viommu_examples::Testbed;
use vtd_emu::{EmuConfig, SimFrameAllocator};
use vtd_regs::irq::{Interrupt, InterruptMode};
use vtd_regs::regs::QueueSize;
use vtd_regs::{PhysAddr, RemappingUnit, SourceId};

type Backend = Native<Mem, Frames, HostInv, GuestPinner>;
type Vmmu<R> = Viommu<GMem, Backend, R>;

const DEVICE: SourceId = SourceId::from_raw(0x0008);
/// Changes run to count the work.
const COUNTED: u32 = 1000;

/// A guest's vIOMMU with `routes`, its interrupt remapping driver brought
/// up, one interrupt programmed; the driver's table, queue and handle.
#[allow(clippy::type_complexity)] // reason: one bench-local tuple
fn guest<R: InterruptRoutes + 'static>(
    mem: Mem,
    host: &Arc<TheHost>,
    routes: R,
) -> (IrTable<GMem>, QueuedInvalidator<&'static Vmmu<R>, GMem>, Handle, &'static Vmmu<R>) {
    let layout = GuestLayout::new(PhysAddr::ZERO, GUEST_RAM);
    let gmem = GuestMemory::new(mem, layout);
    let dev = Assignment { guest: DEVICE, host: DEVICE };
    let backend = Native::new(host.clone(), GuestPinner::new(layout));
    let v = Viommu::with_interrupts(gmem, backend, routes, &[dev], ViommuConfig::qemu());
    let v: &'static Vmmu<R> = leak(v.expect("vIOMMU"));
    let frames =
        leak(SimFrameAllocator::new(gmem, PhysAddr::new(GUEST_FRAMES), PhysAddr::new(GUEST_RAM)));
    let unit = RemappingUnit::new(v).expect("unit");
    let qs = QueueSize::from_order(0).expect("1 page");
    let mut inv = QueuedInvalidator::new(unit, gmem, frames, qs).map_err(|r| r.error).expect("qi");
    let mut table: IrTable<_> = IrTable::new(gmem, frames, InterruptMode::XApic).expect("frames");
    table.enable(&mut inv).expect("interrupt remapping on");
    let h = table.allocate(1).expect("room");
    table.program_device(&mut inv, &h, 0, DEVICE, Interrupt::fixed(0, 0x40)).expect("programmed");
    (table, inv, h, v)
}

/// Times `set_affinity` through `inv`; prints what `work` counts per change.
fn bench_affinity<I: invalidation::Invalidator>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    table: &mut IrTable<impl vtd_regs::PhysMem>,
    inv: &mut I,
    h: &Handle,
    work: impl Fn() -> [u64; 3],
) {
    let change = |table: &mut IrTable<_>, inv: &mut I, n: u32| {
        table.set_affinity(inv, h, 0, n % 4, 0x40 + (n % 64) as u8).expect("affinity");
    };
    let before = work();
    for n in 1..=COUNTED {
        change(table, inv, n);
    }
    let after = work();
    let per = |i: usize| (after[i] - before[i]) as f64 / f64::from(COUNTED);
    println!(
        "viommu_irq/{name}: per change {} guest register accesses, {} routes set, {} host IEC descriptors",
        per(0),
        per(1),
        per(2)
    );
    let mut n = 0u32;
    c.bench_function(name, |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            change(table, inv, n);
        })
    });
}

fn viommu_irq(c: &mut Criterion) {
    let mut group = c.benchmark_group("viommu_irq");

    // Bare metal: the driver on the host's unit.
    let Testbed { mem, emu, frames, mut inv, .. } = Testbed::new(EmuConfig::qemu());
    let mut table: IrTable<_> = IrTable::new(mem, frames, InterruptMode::XApic).expect("frames");
    table.enable(&mut inv).expect("interrupt remapping on");
    let h = table.allocate(1).expect("room");
    table.program_device(&mut inv, &h, 0, DEVICE, Interrupt::fixed(0, 0x40)).expect("programmed");
    let work = || [0, 0, emu.counters().descriptors_of(4)];
    bench_affinity(&mut group, "bare_metal", &mut table, &mut inv, &h, work);

    // A VMM's MSI route table.
    let (mem, _, emu, host) = new_host();
    let (mut table, mut inv, h, v) = guest(mem, &host, MsiRoutes::<_>::new(GuestApics::new(4)));
    let work = || {
        let c = v.counters();
        [c.register_accesses, c.interrupt_routes_set, emu.counters().descriptors_of(4)]
    };
    bench_affinity(&mut group, "msi_routes", &mut table, &mut inv, &h, work);

    // Host IRTEs: guest vCPU n on host CPU 8 + n.
    let (mem2, _, emu2, host2) = new_host();
    let host_frames =
        leak(SimFrameAllocator::new(mem2, PhysAddr::new(24 << 20), PhysAddr::new(HOST_FRAMES)));
    let shared =
        HostInterrupts::<_, _, _>::enable(host2.clone(), mem2, &host_frames, InterruptMode::XApic);
    let shared = Arc::new(shared.expect("host interrupt remapping"));
    let placement = |d: Assignment, i: &Interrupt| {
        GuestApics::new(4).route(d, i).map(|i| Interrupt { destination: 8 + i.destination, ..i })
    };
    let routes = IrteRoutes::new(shared, placement, 64);
    let (mut table, mut inv, h, v) = guest(mem2, &host2, routes);
    let work = || {
        let c = v.counters();
        [c.register_accesses, c.interrupt_routes_set, emu2.counters().descriptors_of(4)]
    };
    bench_affinity(&mut group, "host_irte", &mut table, &mut inv, &h, work);
    group.finish();
}

criterion_group!(benches, viommu_irq);
criterion_main!(benches);
