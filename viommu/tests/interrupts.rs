//! Interrupt remapping through the vIOMMU (issue 17, point 4): the guest's
//! driver is the workspace's own `irq_remap::IrTable` over the guest's
//! trapped registers; the host side is a VMM's MSI route table
//! (`MsiRoutes`) or host IRTEs on the host's software VT-d (`IrteRoutes`).
//! A hostile guest's entries (another guest's device, a CPU or vector it
//! does not own, tables outside its RAM, posted format, reserved bits)
//! give no host route, and remove the one they replace.

mod common;

use std::sync::Arc;

use common::{GMem, GUEST_DEVICE, GUEST_FRAMES, GUEST_LOW, HostRig, leak};
use invalidation::{Invalidation, Invalidator, QueuedInvalidator};
use irq_remap::{Handle, IrTable};
use proptest::prelude::*;
use viommu::interrupts::{GuestApics, HostInterrupts, IrteRoutes, MsiRoutes};
use viommu::{Assignment, GuestMemory, InterruptRoutes, Native, Viommu, ViommuConfig};
use vtd_emu::{Delivered, SimFrameAllocator};
use vtd_regs::desc::IecScope;
use vtd_regs::irq::{
    DeliveryMode, DestinationMode, Interrupt, InterruptMode, Irte, MsiMessage, RawIrte,
    RemappedIrte, SidQualifier, SourceValidation, TriggerMode,
};
use vtd_regs::regs::{Irta, QueueSize};
use vtd_regs::{FaultReason, PhysAddr, PhysMem, RemappingUnit, SourceId};

type Backend = common::Backend;
type Routes = MsiRoutes<GuestApics>;
/// The host unit's interrupt remapping table: 256 entries.
type HostIr = HostInterrupts<common::Mem, common::Frames, common::HostInv>;
type Vmmu<R> = Viommu<GMem, Backend, R>;
type GuestInv<'v, R> = QueuedInvalidator<&'v Vmmu<R>, GMem>;

/// Another guest's device, as this guest might name it.
const FOREIGN: SourceId = SourceId::from_raw(0x0010);

/// Guest `n`'s vIOMMU with interrupt routes `routes`, its unit in `mode`.
fn viommu<R: InterruptRoutes>(rig: &HostRig, n: u64, routes: R, mode: InterruptMode) -> Vmmu<R> {
    let layout = HostRig::layout(n);
    let gmem = GuestMemory::new(rig.mem, layout);
    let dev = Assignment { guest: GUEST_DEVICE, host: HostRig::host_device(n) };
    let backend = Native::new(rig.host.clone(), viommu::GuestPinner::new(layout));
    let mut config = ViommuConfig::qemu();
    config.unit = config.unit.with_interrupt_remapping(true, mode == InterruptMode::X2Apic);
    Viommu::with_interrupts(gmem, backend, routes, &[dev], config).unwrap()
}

/// A guest's interrupt remapping driver: its table in its RAM, its queue
/// through the vIOMMU's registers.
struct Guest<'v, R: InterruptRoutes> {
    v: &'v Vmmu<R>,
    mem: GMem,
    inv: GuestInv<'v, R>,
    table: IrTable<GMem>,
}

impl<'v, R: InterruptRoutes> Guest<'v, R> {
    /// Brings interrupt remapping up in guest `n` on `v`, as Linux does.
    fn new(rig: &HostRig, n: u64, v: &'v Vmmu<R>, mode: InterruptMode) -> Self {
        let mem = GuestMemory::new(rig.mem, HostRig::layout(n));
        let frames = leak(SimFrameAllocator::new(
            mem,
            PhysAddr::new(GUEST_FRAMES),
            PhysAddr::new(GUEST_LOW),
        ));
        let unit = RemappingUnit::new(v).unwrap();
        let qs = QueueSize::from_order(0).unwrap();
        let mut inv = QueuedInvalidator::new(unit, mem, frames, qs).map_err(|r| r.error).unwrap();
        let mut table = IrTable::new(mem, frames, mode).unwrap();
        table.enable(&mut inv).unwrap();
        Guest { v, mem, inv, table }
    }

    /// Writes `raw` at `index` of the guest's table, as a hostile guest
    /// would (no invalidation).
    fn write(&self, index: u16, raw: RawIrte) {
        let at = self.table.irta().table().as_u64() + u64::from(index) * 16;
        self.mem.write_u64(PhysAddr::new(at + 8), raw.hi()).unwrap();
        self.mem.write_u64(PhysAddr::new(at), raw.lo()).unwrap();
    }

    fn invalidate(&mut self, scope: IecScope) {
        self.inv.invalidate([Invalidation::InterruptEntries(scope)]).unwrap();
    }

    /// Writes `raw` at `index` and invalidates that entry.
    fn put(&mut self, index: u16, raw: RawIrte) {
        self.write(index, raw);
        self.invalidate(IecScope::Entries { index, mask: 0 });
    }

    /// The routes the vIOMMU holds, as (guest index, route).
    fn routes(&self) -> Vec<(u16, Interrupt)> {
        let mut all = Vec::new();
        self.v.for_each_route(|d, i, r| {
            assert_eq!(d.guest, GUEST_DEVICE);
            all.push((i, r));
        });
        all
    }
}

fn entry(source: SourceId, interrupt: Interrupt) -> RawIrte {
    RemappedIrte::for_device(source, interrupt).encode(InterruptMode::XApic).unwrap()
}

#[test]
fn the_guests_entry_becomes_the_vmms_msi_route() {
    let rig = HostRig::new();
    let host = HostRig::host_device(0);
    let v = viommu(&rig, 0, Routes::new(GuestApics::new(4)), InterruptMode::XApic);
    let mut g = Guest::new(&rig, 0, &v, InterruptMode::XApic);
    let irq = g.table.allocate(1).unwrap();
    g.table.program_device(&mut g.inv, &irq, 0, GUEST_DEVICE, Interrupt::fixed(1, 0x41)).unwrap();
    let got = v.with_routes(|r| r.get(host, irq.index()));
    assert_eq!(got, Some(Interrupt::fixed(1, 0x41)));
    assert_eq!(g.routes(), [(irq.index(), Interrupt::fixed(1, 0x41))]);

    // An affinity change without the interrupt entry cache invalidation:
    // the host keeps the old route, as a unit keeps its cached entry.
    g.write(irq.index(), entry(GUEST_DEVICE, Interrupt::fixed(2, 0x42)));
    assert_eq!(v.with_routes(|r| r.get(host, irq.index())), Some(Interrupt::fixed(1, 0x41)));
    // With it, the new one.
    g.invalidate(IecScope::Entries { index: irq.index(), mask: 0 });
    assert_eq!(v.with_routes(|r| r.get(host, irq.index())), Some(Interrupt::fixed(2, 0x42)));
    // The driver's own affinity change.
    g.table.set_affinity(&mut g.inv, &irq, 0, 3, 0x43).unwrap();
    assert_eq!(v.with_routes(|r| r.get(host, irq.index())), Some(Interrupt::fixed(3, 0x43)));

    // Freed: gone once the guest's invalidation completed.
    g.table.release(&mut g.inv, irq).unwrap();
    g.table.drain(&mut g.inv).unwrap();
    assert!(v.with_routes(|r| r.is_empty()));
    assert!(g.routes().is_empty());
    assert!(v.counters().interrupt_entries_read > 0);
}

#[test]
fn multi_vector_blocks_and_global_invalidation() {
    let rig = HostRig::new();
    let host = HostRig::host_device(0);
    let v = viommu(&rig, 0, Routes::new(GuestApics::new(4)), InterruptMode::XApic);
    let mut g = Guest::new(&rig, 0, &v, InterruptMode::XApic);
    let block: Handle = g.table.allocate(4).unwrap();
    for sub in 0..4u16 {
        let i = Interrupt::fixed(u32::from(sub), 0x50 + sub as u8);
        g.write(block.index() + sub, entry(GUEST_DEVICE, i));
    }
    assert!(g.routes().is_empty());
    g.invalidate(IecScope::Global);
    assert_eq!(g.routes().len(), 4);
    for sub in 0..4u16 {
        let want = Interrupt::fixed(u32::from(sub), 0x50 + sub as u8);
        assert_eq!(v.with_routes(|r| r.get(host, block.index() + sub)), Some(want));
    }
    // Interrupt remapping off: no routes (the VMM's ordinary MSI path).
    g.table.disable(&mut g.inv).unwrap();
    assert!(g.routes().is_empty());
    // On again: built from the table as it is.
    g.table.enable(&mut g.inv).unwrap();
    assert_eq!(g.routes().len(), 4);
}

#[test]
fn x2apic_destinations() {
    let rig = HostRig::new();
    let apics = GuestApics { apic_ids: 0x100..0x104, vectors: 0x20..=0xef };
    let v = viommu(&rig, 0, Routes::new(apics), InterruptMode::X2Apic);
    let mut g = Guest::new(&rig, 0, &v, InterruptMode::X2Apic);
    assert!(v.unit().config().ecap.eim());
    let irq = g.table.allocate(1).unwrap();
    g.table
        .program_device(&mut g.inv, &irq, 0, GUEST_DEVICE, Interrupt::fixed(0x103, 0x41))
        .unwrap();
    assert_eq!(g.routes(), [(irq.index(), Interrupt::fixed(0x103, 0x41))]);
    // A vector the VMM keeps for itself, an APIC id not the guest's.
    g.table.set_affinity(&mut g.inv, &irq, 0, 0x103, 0xf0).unwrap();
    assert!(g.routes().is_empty());
    g.table.set_affinity(&mut g.inv, &irq, 0, 0x104, 0x41).unwrap();
    assert!(g.routes().is_empty());
}

/// Every hostile entry: no route, and the valid route it replaces removed.
#[test]
fn hostile_entries_give_no_route() {
    let rig = HostRig::new();
    let v = viommu(&rig, 0, Routes::new(GuestApics::new(4)), InterruptMode::XApic);
    let mut g = Guest::new(&rig, 0, &v, InterruptMode::XApic);
    let ok = Interrupt::fixed(1, 0x41);
    let good = entry(GUEST_DEVICE, ok);
    let with = |f: fn(&mut Interrupt)| {
        let mut i = ok;
        f(&mut i);
        entry(GUEST_DEVICE, i)
    };
    let posted = RawIrte::new(1 | 1 << 15 | 0x41 << 16, good.hi());
    let hostile: [(&str, RawIrte); 12] = [
        ("another guest's device", entry(FOREIGN, ok)),
        ("its device with SQ not covering it", {
            let mut e = RemappedIrte::for_device(FOREIGN, ok);
            e.source =
                SourceValidation::Requester { sid: FOREIGN, qualifier: SidQualifier::IgnoreBit2 };
            e.encode(InterruptMode::XApic).unwrap()
        }),
        ("a bus range without its bus", {
            let mut e = RemappedIrte::for_device(GUEST_DEVICE, ok);
            e.source = SourceValidation::Bus { start: 1, end: 4 };
            e.encode(InterruptMode::XApic).unwrap()
        }),
        ("an APIC id it does not own", with(|i| i.destination = 4)),
        ("a logical destination", with(|i| i.destination_mode = DestinationMode::Logical)),
        ("reserved vector", with(|i| i.vector = 0x0f)),
        ("NMI", with(|i| i.delivery = DeliveryMode::Nmi)),
        ("SMI", with(|i| i.delivery = DeliveryMode::Smi)),
        ("level-triggered", with(|i| i.trigger = TriggerMode::Level)),
        ("posted format", posted),
        ("reserved bits", RawIrte::new(good.lo() | 1 << 13, good.hi())),
        ("not present", RawIrte::new(good.lo() & !1, good.hi())),
    ];
    for (what, raw) in hostile {
        g.put(7, good);
        assert_eq!(g.routes(), [(7, ok)], "{what}: the valid entry first");
        g.put(7, raw);
        assert!(g.routes().is_empty(), "{what}: still routed");
    }
    // The device's interrupt, blocked on the host, is the guest's fault:
    // 22h (not present) at index 7 from the last entry.
    let msi = MsiMessage::remappable(7, None);
    let got = v.report_blocked_interrupt(HostRig::host_device(0), msi).unwrap();
    assert_eq!(got.unwrap_err().reason, FaultReason::IrEntryNotPresent);
    let record = g.inv.unit().drain_faults().next().expect("a fault record");
    assert_eq!(record.fault_info >> 48, 7);
    assert!(v.report_blocked_interrupt(HostRig::host_device(1), msi).is_none());

    // Garbage in every reserved field and both formats.
    for (lo, hi) in [(u64::MAX, u64::MAX), (!(1u64 << 15), 0), (0x0000_00ff_0041_0001, 0)] {
        g.put(7, good);
        g.put(7, RawIrte::new(lo, hi));
        assert!(g.routes().is_empty(), "{lo:#x}:{hi:#x}");
    }
    // No source validation, or a bus range with the device's bus: the
    // guest lets any of its devices use the entry; the host route is still
    // its own device's only.
    g.put(8, {
        let mut e = RemappedIrte::for_device(GUEST_DEVICE, ok);
        e.source = SourceValidation::None;
        e.encode(InterruptMode::XApic).unwrap()
    });
    assert_eq!(g.routes(), [(8, ok)]);
}

#[test]
fn hostile_table_pointers_are_bounded() {
    let rig = HostRig::new();
    let v = viommu(&rig, 0, Routes::new(GuestApics::new(4)), InterruptMode::XApic);
    let mut g = Guest::new(&rig, 0, &v, InterruptMode::XApic);
    g.put(3, entry(GUEST_DEVICE, Interrupt::fixed(0, 0x41)));
    assert_eq!(g.routes().len(), 1);
    let before = v.counters().interrupt_entries_read;
    // A table outside the guest's RAM (at 256 MiB; the guest has 16 MiB
    // there), 65536 entries: read at most once each, nothing routed, the
    // old route gone.
    let unit = g.inv.unit();
    unit.set_interrupt_remap_table(Irta::new(PhysAddr::new(0x1000_0000), 15, false)).unwrap();
    g.invalidate(IecScope::Global);
    assert!(g.routes().is_empty());
    let read = v.counters().interrupt_entries_read - before;
    assert!(read <= 1 << 16, "{read} entries read");
    // The largest table, starting at the last page of the guest's low RAM:
    // the entries inside RAM are read, the rest give nothing.
    let last = GUEST_LOW - 0x1000;
    g.mem
        .write_u64(PhysAddr::new(last + 16), entry(GUEST_DEVICE, Interrupt::fixed(0, 0x41)).lo())
        .unwrap();
    g.mem
        .write_u64(PhysAddr::new(last + 24), entry(GUEST_DEVICE, Interrupt::fixed(0, 0x41)).hi())
        .unwrap();
    let unit = g.inv.unit();
    unit.set_interrupt_remap_table(Irta::new(PhysAddr::new(last), 15, false)).unwrap();
    g.invalidate(IecScope::Global);
    assert_eq!(g.routes(), [(1, Interrupt::fixed(0, 0x41))]);
    // A table above the unit's address width.
    let unit = g.inv.unit();
    unit.set_interrupt_remap_table(Irta::new(PhysAddr::new(1 << 50), 15, false)).unwrap();
    g.invalidate(IecScope::Entries { index: 0, mask: 15 });
    assert!(g.routes().is_empty());
}

#[test]
fn host_irtes_on_the_host_unit() {
    let rig = HostRig::new();
    // Host frames for the host's table, apart from the rig's.
    let frames =
        leak(SimFrameAllocator::new(rig.mem, PhysAddr::new(56 << 20), PhysAddr::new(64 << 20)));
    let shared =
        Arc::new(HostIr::enable(rig.host.clone(), rig.mem, &frames, InterruptMode::XApic).unwrap());
    // vCPU n of guest 0 runs on physical CPU 8 + n; vectors as the guest's.
    let placement = |_: Assignment, i: &Interrupt| {
        (i.destination < 4 && i.destination_mode == DestinationMode::Physical)
            .then_some(Interrupt { destination: 8 + i.destination, ..*i })
    };
    let routes = IrteRoutes::new(shared.clone(), placement, 4);
    let v = viommu(&rig, 0, routes, InterruptMode::XApic);
    let mut g = Guest::new(&rig, 0, &v, InterruptMode::XApic);
    let host = HostRig::host_device(0);
    let other = HostRig::host_device(1);

    let irq = g.table.allocate(1).unwrap();
    g.table.program_device(&mut g.inv, &irq, 0, GUEST_DEVICE, Interrupt::fixed(1, 0x41)).unwrap();
    let msi = v.with_routes(|r| r.host_msi(host, irq.index())).expect("a host entry");
    // The physical device's MSI arrives at the vCPU's physical CPU.
    let delivered = rig.emu.remap_interrupt(host, msi);
    assert!(
        matches!(delivered, Ok(Delivered::Remapped { interrupt, .. })
        if interrupt == Interrupt::fixed(9, 0x41)),
        "{delivered:?}"
    );
    // Another guest's device sending the same message: source validation.
    let fault = rig.emu.remap_interrupt(other, msi).unwrap_err();
    assert_eq!(fault.reason, FaultReason::IrSourceIdInvalid);

    // A second guest on the same host, its device at the same guest
    // requester id and guest index: a host entry of its own, validated
    // against its own device; neither device can use the other's.
    let v1 = viommu(&rig, 1, IrteRoutes::new(shared.clone(), placement, 4), InterruptMode::XApic);
    let mut g1 = Guest::new(&rig, 1, &v1, InterruptMode::XApic);
    let irq1 = g1.table.allocate(1).unwrap();
    assert_eq!(irq1.index(), irq.index());
    g1.table
        .program_device(&mut g1.inv, &irq1, 0, GUEST_DEVICE, Interrupt::fixed(0, 0x51))
        .unwrap();
    let msi1 = v1.with_routes(|r| r.host_msi(other, irq1.index())).expect("a host entry");
    assert_ne!(msi1, msi);
    assert!(
        matches!(rig.emu.remap_interrupt(other, msi1), Ok(Delivered::Remapped { interrupt, .. })
        if interrupt == Interrupt::fixed(8, 0x51))
    );
    let fault = rig.emu.remap_interrupt(host, msi1).unwrap_err();
    assert_eq!(fault.reason, FaultReason::IrSourceIdInvalid);
    drop(g1);
    drop(v1);

    // The guest moves it: same host entry, new destination.
    g.table.set_affinity(&mut g.inv, &irq, 0, 3, 0x45).unwrap();
    assert_eq!(v.with_routes(|r| r.host_msi(host, irq.index())), Some(msi));
    let delivered = rig.emu.remap_interrupt(host, msi);
    assert!(
        matches!(delivered, Ok(Delivered::Remapped { interrupt, .. })
        if interrupt == Interrupt::fixed(11, 0x45)),
        "{delivered:?}"
    );

    // A destination the guest does not own: the host entry is gone before
    // the guest's invalidation completed.
    g.table.set_affinity(&mut g.inv, &irq, 0, 7, 0x45).unwrap();
    assert_eq!(v.with_routes(|r| r.host_msi(host, irq.index())), None);
    let fault = rig.emu.remap_interrupt(host, msi).unwrap_err();
    assert_eq!(fault.reason, FaultReason::IrEntryNotPresent);

    // Back, then the guest goes away: its host entries are freed.
    g.table.set_affinity(&mut g.inv, &irq, 0, 0, 0x45).unwrap();
    assert_eq!(shared.in_use(), 1);
    // Beyond its quota of 4 host entries, a guest gets no more routes.
    let more = g.table.allocate(8).unwrap();
    for sub in 0..8 {
        g.write(more.index() + sub, entry(GUEST_DEVICE, Interrupt::fixed(0, 0x60)));
    }
    g.invalidate(IecScope::Global);
    assert_eq!(v.with_routes(|r| r.len()), 4);
    assert_eq!(shared.in_use(), 4);
    assert!(v.counters().host_errors > 0);
    drop(g);
    drop(v);
    let fault = rig.emu.remap_interrupt(host, msi).unwrap_err();
    assert_eq!(fault.reason, FaultReason::IrEntryNotPresent);
}

/// One step of a hostile guest.
#[derive(Clone, Debug)]
enum Op {
    /// Writes an entry without invalidating.
    Write(u16, RawIrte),
    /// Invalidates 2^mask entries from an aligned index, or all.
    Invalidate(Option<(u16, u8)>),
}

const INDICES: u16 = 32;

fn interrupt() -> impl Strategy<Value = Interrupt> {
    // Mostly what a driver writes (fixed, edge, physical), so that routes
    // are made, and every other value too.
    let dlm = prop_oneof![3 => Just(0u8), 1 => 0u8..8];
    let level = prop::bool::weighted(0.2);
    let logical = prop::bool::weighted(0.2);
    (any::<u8>(), dlm, level, logical, any::<bool>(), 0u32..6).prop_map(
        |(vector, dlm, level, logical, rh, destination)| Interrupt {
            vector,
            delivery: DeliveryMode::from_field(dlm).unwrap_or(DeliveryMode::Fixed),
            trigger: TriggerMode::from_bit(level),
            destination_mode: DestinationMode::from_bit(logical),
            redirection_hint: rh,
            destination,
        },
    )
}

fn source() -> impl Strategy<Value = SourceValidation> {
    let sid =
        prop_oneof![Just(GUEST_DEVICE), Just(FOREIGN), any::<u16>().prop_map(SourceId::from_raw)];
    prop_oneof![
        Just(SourceValidation::None),
        (sid, 0u8..4).prop_map(|(sid, q)| SourceValidation::Requester {
            sid,
            qualifier: SidQualifier::from_field(q)
        }),
        (0u8..3, 0u8..3).prop_map(|(start, end)| SourceValidation::Bus { start, end }),
    ]
}

fn remapped() -> impl Strategy<Value = RawIrte> {
    (interrupt(), source(), any::<bool>()).prop_map(|(interrupt, source, fpd)| {
        RemappedIrte { fpd, interrupt, available: 0, source }.encode(InterruptMode::XApic).unwrap()
    })
}

fn raw_entry() -> impl Strategy<Value = RawIrte> {
    let remapped = remapped();
    prop_oneof![
        4 => self::remapped(),
        // A valid entry with one bit flipped, or random bits.
        2 => (remapped, 0u32..128).prop_map(|(r, bit)| if bit < 64 {
            RawIrte::new(r.lo() ^ 1 << bit, r.hi())
        } else {
            RawIrte::new(r.lo(), r.hi() ^ 1 << (bit - 64))
        }),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(lo, hi)| RawIrte::new(lo, hi)),
    ]
}

/// The guest's table as written, and as it was at each entry's last
/// invalidation: what the vIOMMU must have shadowed.
struct Model {
    table: [RawIrte; INDICES as usize],
    seen: [RawIrte; INDICES as usize],
}

impl Default for Model {
    fn default() -> Self {
        Self { table: [RawIrte::ZERO; INDICES as usize], seen: [RawIrte::ZERO; INDICES as usize] }
    }
}

impl Model {
    /// Runs `op` on the guest `g` and records it.
    fn apply<R: InterruptRoutes>(&mut self, g: &mut Guest<'_, R>, op: Op) {
        match op {
            Op::Write(i, raw) => {
                g.write(i, raw);
                self.table[usize::from(i)] = raw;
            }
            Op::Invalidate(scope) => {
                let (first, count) = scope.map_or((0, INDICES), |(i, m)| (i, 1 << m));
                g.invalidate(
                    scope.map_or(IecScope::Global, |(index, mask)| IecScope::Entries {
                        index,
                        mask,
                    }),
                );
                for i in first..(first + count).min(INDICES) {
                    self.seen[usize::from(i)] = self.table[usize::from(i)];
                }
            }
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..INDICES, raw_entry()).prop_map(|(i, r)| Op::Write(i, r)),
        1 => (0u8..4, 0..INDICES).prop_map(|(mask, i)| Op::Invalidate(Some((i & !((1 << mask) - 1), mask)))),
        1 => Just(Op::Invalidate(None)),
    ]
}

/// What the guest's entry allows its device, by the rules written out
/// again here: present, remapped format, no reserved bits, the device
/// permitted, vector 16-255, fixed or lowest priority, edge, and a
/// destination and vector the VMM accepts (physical APIC 0-3).
fn allowed(raw: RawIrte) -> Option<Interrupt> {
    let Ok(Irte::Remapped(e)) = raw.decode(InterruptMode::XApic) else { return None };
    let i = e.interrupt;
    let ok = e.source.permits(GUEST_DEVICE)
        && i.vector >= 16
        && matches!(i.delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority)
        && i.trigger == TriggerMode::Edge
        && i.destination_mode == DestinationMode::Physical
        && i.destination < 4;
    ok.then_some(i)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// After every completed invalidation, every host route names this
    /// guest's device and a (vCPU, vector) the VMM allowed, and is exactly
    /// what the guest's entry said when it was last invalidated.
    #[test]
    fn routes_are_only_what_the_guest_owns(ops in prop::collection::vec(op(), 1..40)) {
        let rig = rig();
        let v = viommu(rig, 0, Routes::new(GuestApics::new(4)), InterruptMode::XApic);
        let mut g = Guest::new(rig, 0, &v, InterruptMode::XApic);
        let mut model = Model::default();
        for op in ops {
            model.apply(&mut g, op);
            let seen = &model.seen;
            let dev = HostRig::host_device(0);
            v.for_each_route(|d, i, r| {
                assert_eq!(d, Assignment { guest: GUEST_DEVICE, host: dev });
                assert_eq!(allowed(seen[usize::from(i)]), Some(r), "index {}", i);
            });
            let want = seen.iter().filter(|e| allowed(**e).is_some()).count();
            prop_assert_eq!(v.with_routes(|r| r.len()), want);
        }
    }
}

/// One host for all cases (a vIOMMU gives its device back when dropped).
fn rig() -> &'static HostRig {
    static RIG: std::sync::OnceLock<HostRig> = std::sync::OnceLock::new();
    RIG.get_or_init(HostRig::new)
}

/// The interrupt remapping table of [`rig`]'s host unit.
fn host_table() -> &'static Arc<HostIr> {
    static TABLE: std::sync::OnceLock<Arc<HostIr>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let rig = rig();
        let frames =
            leak(SimFrameAllocator::new(rig.mem, PhysAddr::new(56 << 20), PhysAddr::new(64 << 20)));
        Arc::new(HostIr::enable(rig.host.clone(), rig.mem, &frames, InterruptMode::XApic).unwrap())
    })
}

/// Where the VMM of the host-IRTE property runs the guest's vCPUs: vCPU n
/// on physical CPU 8 + n, vectors as the guest's.
fn placement(d: Assignment, i: &Interrupt) -> Option<Interrupt> {
    use viommu::interrupts::VcpuMap;
    GuestApics::new(4).route(d, i).map(|i| Interrupt { destination: 8 + i.destination, ..i })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The same guest behaviour with host IRTEs, checked where it matters,
    /// at the host's unit: after every completed invalidation the device's
    /// host message for each guest index delivers exactly the placement of
    /// what the guest's entry allowed at its last invalidation, or nothing
    /// (no host entry); another device sending it is refused (26h).
    #[test]
    fn the_host_unit_delivers_only_what_the_guest_owns(ops in prop::collection::vec(op(), 1..30)) {
        let rig = rig();
        let routes = IrteRoutes::new(host_table().clone(), placement as fn(_, &_) -> _, 64);
        // Guest 1: the other property runs guest 0 on the same host at
        // the same time.
        let v = viommu(rig, 1, routes, InterruptMode::XApic);
        let mut g = Guest::new(rig, 1, &v, InterruptMode::XApic);
        let (dev, other) = (HostRig::host_device(1), HostRig::host_device(0));
        let mut model = Model::default();
        for op in ops {
            model.apply(&mut g, op);
            let seen = &model.seen;
            let device = Assignment { guest: GUEST_DEVICE, host: dev };
            for i in 0..INDICES {
                let want = allowed(seen[usize::from(i)]).and_then(|a| placement(device, &a));
                let msi = v.with_routes(|r| r.host_msi(dev, i));
                prop_assert_eq!(msi.is_some(), want.is_some(), "index {}", i);
                let Some(msi) = msi else { continue };
                let got = rig.emu.remap_interrupt(dev, msi);
                prop_assert!(
                    matches!(got, Ok(Delivered::Remapped { interrupt, .. }) if Some(interrupt) == want),
                    "index {}: {:?}, want {:?}", i, got, want
                );
                let stolen = rig.emu.remap_interrupt(other, msi).map_err(|f| f.reason);
                prop_assert_eq!(stolen, Err(FaultReason::IrSourceIdInvalid));
            }
        }
    }
}
