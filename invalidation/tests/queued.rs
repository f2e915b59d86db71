//! The queued and register-based invalidators driving the software VT-d.

use std::time::Duration;

use invalidation::{
    Error, FlushConfig, FlushQueue, Invalidation, Invalidator, NoClock, QueuedInvalidator,
    RegisterInvalidator,
};
use iommu_platform::Inline;
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::DescType;
use vtd_regs::regs::QueueSize;
use vtd_regs::{
    ContextScope, DomainId, Drain, IotlbScope, Iova, PAGE_SIZE, PhysAddr, RemappingUnit,
};

type Emu = Emulator<&'static HeapMemory>;

fn rig(
    cfg: EmuConfig,
) -> (&'static HeapMemory, SimFrameAllocator<&'static HeapMemory>, &'static Emu) {
    let mem: &'static HeapMemory = Box::leak(Box::new(HeapMemory::new(2 << 20)));
    let frames = SimFrameAllocator::new(mem, PhysAddr::new(0x1000), PhysAddr::new(2 << 20));
    let emu: &'static Emu = Box::leak(Box::new(Emulator::new(mem, cfg).unwrap()));
    (mem, frames, emu)
}

fn queued(
    order: u8,
) -> (
    QueuedInvalidator<&'static Emu, &'static HeapMemory>,
    SimFrameAllocator<&'static HeapMemory>,
    &'static Emu,
) {
    let (mem, frames, emu) = rig(EmuConfig::qemu());
    let unit = RemappingUnit::new(emu).unwrap();
    let size = QueueSize::from_order(order).unwrap();
    let inv = QueuedInvalidator::new(unit, mem, &frames, size).map_err(|r| r.error).unwrap();
    (inv, frames, emu)
}

fn dsi(d: u16) -> Invalidation {
    Invalidation::Iotlb { scope: IotlbScope::Domain(DomainId::new(d)), drain: Drain::all() }
}

#[test]
fn one_batch_is_one_tail_write_and_completes() {
    let (mut inv, _frames, emu) = queued(0);
    let before = emu.counters();
    let t = inv.post([dsi(1), Invalidation::Context(ContextScope::Global)]).unwrap();
    inv.wait(t).unwrap();
    assert!(inv.is_complete(t).unwrap());
    let c = inv.counters();
    assert_eq!(c.tail_writes, 1);
    assert_eq!(c.descriptors_of(DescType::Iotlb), 1);
    assert_eq!(c.descriptors_of(DescType::ContextCache), 1);
    assert_eq!(c.descriptors_of(DescType::Wait), 1);
    let after = emu.counters();
    assert_eq!(after.descriptors_total() - before.descriptors_total(), 3);
}

#[test]
fn the_ring_wraps_around() {
    let (mut inv, _frames, _emu) = queued(0);
    assert_eq!(inv.entries(), 256);
    for i in 0..1000u16 {
        inv.invalidate([dsi(i % 7), dsi(1)]).unwrap();
    }
    assert_eq!(inv.counters().tail_writes, 1000);
    assert_eq!(inv.counters().descriptors_of(DescType::Wait), 1000);
}

#[test]
fn a_batch_larger_than_the_queue_is_published_in_parts() {
    let (mut inv, _frames, _emu) = queued(0);
    let d = DomainId::new(2);
    let pages = (0..600u64).map(|p| Invalidation::Iotlb {
        scope: IotlbScope::pages(d, Iova::new(p * PAGE_SIZE), 0, true).unwrap(),
        drain: Drain::empty(),
    });
    let t = inv.post(pages).unwrap();
    inv.wait(t).unwrap();
    assert_eq!(inv.counters().descriptors_of(DescType::Iotlb), 600);
    assert!(inv.counters().tail_writes >= 3, "600 descriptors need 3 publishes of a 256-slot ring");
}

#[test]
fn requests_beyond_the_units_capabilities_are_refused() {
    let (mut inv, _frames, _emu) = queued(0);
    // QEMU's MAMV is 18.
    let scope = IotlbScope::pages(DomainId::new(1), Iova::new(0), 19, false).unwrap();
    let req = Invalidation::Iotlb { scope, drain: Drain::empty() };
    assert_eq!(inv.post([req]), Err(Error::Unsupported(req)));
}

#[test]
fn shutdown_returns_every_frame() {
    let (inv, frames, _emu) = queued(1);
    assert_eq!(frames.live_frames(), 3);
    let unit = inv.shutdown(&frames).map_err(|(e, _)| e).unwrap();
    assert_eq!(frames.live_frames(), 0);
    assert!(unit.queue().is_none());
}

#[test]
fn register_fallback_performs_each_request() {
    let (_mem, _frames, emu) = rig(EmuConfig::qemu());
    let mut inv = RegisterInvalidator::new(RemappingUnit::new(emu).unwrap());
    let t =
        inv.post([dsi(3), Invalidation::Context(ContextScope::Domain(DomainId::new(3)))]).unwrap();
    assert!(inv.is_complete(t).unwrap());
    assert_eq!(inv.counters().register_commands, 2);
    assert_eq!(inv.counters().tail_writes, 0);
}

#[test]
fn deferred_flushing_costs_one_tail_write_per_batch() {
    let (mut inv, _frames, _emu) = queued(0);
    // No deadline: the batch size alone decides (NoClock cannot time one).
    let config = FlushConfig { deadline: None, ..FlushConfig::deferred(32, Duration::ZERO) };
    let mut q: FlushQueue<u64, _, Inline<64>> =
        FlushQueue::with_storage(config, NoClock, Inline).unwrap();
    let mut released = 0;
    for n in 0..10_000u64 {
        let iova = Iova::new((n % 4096) * PAGE_SIZE);
        let range = iova..Iova::new(iova.as_u64() + PAGE_SIZE);
        q.unmapped(&mut inv, DomainId::new(1), range, true, n, |_| released += 1).unwrap();
    }
    q.flush(&mut inv, |_| released += 1).unwrap();
    assert_eq!(released, 10_000);
    let writes = inv.counters().tail_writes;
    assert_eq!(q.stats().batches, 313, "{:?} {:?}", q.stats(), inv.counters());
    assert!(writes * 32 <= 10_000 + 32, "{writes} tail writes for 10,000 unmaps");
}

/// A unit whose queue memory gets one corrupt descriptor: the first tail
/// write it sees after `armed` is set first overwrites the descriptor at the
/// head with an unknown type, as a buggy or hostile writer would.
struct Corrupting {
    emu: &'static Emu,
    mem: &'static HeapMemory,
    armed: std::cell::Cell<bool>,
}

impl vtd_regs::Mmio for &Corrupting {
    fn read32(&self, offset: usize) -> u32 {
        (&self.emu).read32(offset)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        if offset == vtd_regs::regs::offset::IQT && self.armed.replace(false) {
            use vtd_regs::PhysMem;
            let iqa: vtd_regs::regs::Iqa = vtd_regs::Mmio::read_reg(&self.emu);
            let head: vtd_regs::regs::Iqh = vtd_regs::Mmio::read_reg(&self.emu);
            let slot = PhysAddr::new(iqa.base().as_u64() + head.byte_offset() as u64);
            self.mem.write_u64(slot, 0xf).unwrap(); // type 15: unknown
        }
        let mut emu = self.emu;
        vtd_regs::Mmio::write32(&mut emu, offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        (&self.emu).read64(offset)
    }
    fn write64(&mut self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

#[test]
fn a_rejected_descriptor_is_reported_and_the_queue_recovers_covered() {
    let (mem, frames, emu) = rig(EmuConfig::qemu());
    let bad: &'static Corrupting =
        Box::leak(Box::new(Corrupting { emu, mem, armed: std::cell::Cell::new(false) }));
    let unit = RemappingUnit::new(bad).unwrap();
    let mut inv = QueuedInvalidator::new(unit, mem, &frames, QueueSize::from_order(0).unwrap())
        .map_err(|r| r.error)
        .unwrap();
    inv.invalidate([dsi(1)]).unwrap();
    bad.armed.set(true);
    let t = inv.post([dsi(2)]).unwrap();
    let err = inv.wait(t).unwrap_err();
    let Error::Queue(fault) = err else { panic!("expected a queue error, got {err:?}") };
    assert_eq!(fault.index, 2, "the first batch took slots 0 and 1");
    assert!(fault.error.queue.is_some());
    assert_eq!(fault.descriptor, None, "an unknown type does not decode");
    // The bad slot now holds a global IOTLB invalidation and the unit resumed:
    // the ticket completes, and what it covers was invalidated (globally).
    inv.wait(t).unwrap();
    assert_eq!(inv.counters().queue_errors, 1);
    inv.invalidate([dsi(3)]).unwrap();
}

#[test]
fn a_changed_context_entry_stops_being_used_after_its_invalidation() {
    use vtd_regs::SourceId;
    use vtd_tables::{Access, ContextManager, Perm, SlPageTable, TableConfig};

    let (mem, frames, emu) = rig(EmuConfig::qemu());
    let unit = RemappingUnit::new(emu).unwrap();
    let sid = SourceId::new(0, 2, 0).unwrap();
    let d = DomainId::new(4);
    let mut table =
        SlPageTable::new(mem, &frames, TableConfig::from_cap(unit.cap(), 39).unwrap()).unwrap();
    table
        .map(Iova::new(0x1000), PhysAddr::new(0x5000), vtd_regs::PageSize::Size4KiB, Perm::READ)
        .unwrap();
    let mut contexts = ContextManager::new(mem, &frames).unwrap();
    let _ = contexts.attach(sid, d, &table).unwrap();
    let qs = QueueSize::from_order(0).unwrap();
    let mut inv =
        QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, &frames, qs).unwrap();
    assert!(emu.translate(sid, Iova::new(0x1000), Access::Read).is_ok());
    let change = contexts.detach(sid).unwrap();
    assert_eq!(change.previous, Some(d));
    // The unit still uses its cached context entry and translation...
    assert!(emu.translate(sid, Iova::new(0x1000), Access::Read).is_ok());
    // ...until the invalidation a context change owes completes.
    inv.invalidate(Invalidation::context_changed(sid, d)).unwrap();
    assert!(emu.translate(sid, Iova::new(0x1000), Access::Read).is_err());
}

#[test]
fn enabling_remapping_drops_what_the_unit_cached_under_an_earlier_root() {
    use vtd_regs::SourceId;
    use vtd_regs::regs::rtaddr::TranslationTableMode;
    use vtd_regs::regs::{GlobalBits, Gsts, offset};
    use vtd_regs::{Mmio, PageSize};
    use vtd_tables::{Access, ContextManager, Perm, SlPageTable, TableConfig};

    let (mem, frames, emu) = rig(EmuConfig::qemu());
    let sid = SourceId::new(0, 2, 0).unwrap();
    let iova = Iova::new(0x1000);
    // An earlier owner (firmware, a previous kernel) left the unit on, with
    // the device's context and translation cached.
    let mut earlier = RemappingUnit::new(emu).unwrap();
    let config = TableConfig::from_cap(earlier.cap(), 39).unwrap();
    let mut old = SlPageTable::new(mem, &frames, config).unwrap();
    old.map(iova, PhysAddr::new(0x5000), PageSize::Size4KiB, Perm::READ).unwrap();
    let mut old_contexts = ContextManager::new(mem, &frames).unwrap();
    let _ = old_contexts.attach(sid, DomainId::new(4), &old).unwrap();
    earlier.set_root_table(old_contexts.root_table(), TranslationTableMode::Legacy).unwrap();
    earlier.enable_translation().unwrap();
    assert_eq!(emu.translate(sid, iova, Access::Read), Ok(PhysAddr::new(0x5000)));

    // This driver's root table does not know the device.
    let contexts = ContextManager::new(mem, &frames).unwrap();
    let unit = RemappingUnit::new(emu).unwrap();
    let qs = QueueSize::from_order(0).unwrap();
    let mut inv =
        QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, &frames, qs).unwrap();
    let status = Gsts(emu.read32(offset::GSTS)).bits();
    assert!(status.contains(GlobalBits::TE | GlobalBits::QIE | GlobalBits::SRTP));
    assert!(emu.translate(sid, iova, Access::Read).is_err(), "the cached context was dropped");
    inv.invalidate([dsi(4)]).unwrap();
}
