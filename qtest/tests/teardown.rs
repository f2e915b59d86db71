//! The `teardown` crate's mapping layer driving QEMU's VT-d: every reuse
//! policy with every flush policy carries 200 buffers each way through edu
//! DMA with exactly the right bytes, and once a mapping is torn down and its
//! invalidation completed (at once under strict flushing) the device's next
//! access faults with the right reason, page and source id (§6.5, §7.1.3).

mod common;

use std::cell::Cell;
use std::time::Duration;

use common::{DID, EDU_SID, pattern, start};
use invalidation::{Clock, FlushConfig, FlushMode, Instant, QueuedInvalidator};
use iova_alloc::{IovaTree, Window};
use teardown::{Fixed, Mapper, MapperConfig, NoPinning, Reuse};
use viommu_qtest::{EDU_BUFFER_SIZE, Edu, GuestFrames, IommuOptions, QtestMem, QtestMmio};
use vtd_regs::regs::{FaultRecord, FaultType, QueueSize};
use vtd_regs::{FaultReason, FrameAllocator, Iova, PAGE_SIZE, PhysAddr, PhysMem, RemappingUnit};
use vtd_tables::{ContextManager, Perm, SlPageTable, TableConfig};

/// Buffers carried each way.
const BUFFERS: usize = 200;
/// Buffer slots cycled through, so that reuse policies meet the same pages
/// again.
const SLOTS: usize = 16;
/// Each slot spans two pages: a buffer may cross a page boundary.
const SLOT_BYTES: usize = 2 * PAGE_SIZE as usize;
/// Filler of the destination slot around the buffer.
const FILL: u8 = 0xEE;
/// Virtual time between buffers.
const TICK: Duration = Duration::from_micros(20);

/// Virtual time the test moves.
#[derive(Default)]
struct StepClock(Cell<u64>);

impl Clock for StepClock {
    fn now(&self) -> Instant {
        Instant(self.0.get())
    }
}

impl StepClock {
    fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by.as_nanos() as u64);
    }
}

/// A buffer of `len` bytes at `offset` into a slot, varied per buffer.
fn shape(i: usize) -> (usize, usize) {
    let len = 1 + (i * 389 + 63) % EDU_BUFFER_SIZE;
    let offset = (i * 97) % (SLOT_BYTES - len);
    (offset, len)
}

fn at(base: PhysAddr, offset: usize) -> PhysAddr {
    PhysAddr::new(base.as_u64() + offset as u64)
}

fn drain(faults: &mut RemappingUnit<QtestMmio<'_>>) -> Vec<FaultRecord> {
    faults.drain_faults().collect()
}

fn carry_buffers(reuse: Reuse, flush: FlushConfig) {
    carry_buffers_on(&IommuOptions::default(), reuse, flush);
}

/// [`carry_buffers`] on a unit with `options`, its table as wide as the
/// unit's MGAW and IOVAs drawn from anywhere below it.
fn carry_buffers_on(options: &IommuOptions, reuse: Reuse, flush: FlushConfig) {
    let qemu = start(options);
    let mem = QtestMem::new(&qemu);
    let frames = GuestFrames::default();
    let edu = Edu::probe(&qemu).unwrap();
    assert_eq!(edu.source_id(), EDU_SID);

    // The domain's table, the device attached, translation on, and queued
    // invalidation (§6.5.2) for the mapper.
    let unit = RemappingUnit::new(QtestMmio::new(&qemu)).unwrap();
    let width = unit.cap().mgaw().bits();
    let table =
        SlPageTable::new(mem, frames.clone(), TableConfig::from_cap(unit.cap(), width).unwrap())
            .unwrap();
    let mut contexts = ContextManager::new(mem, frames.clone()).unwrap();
    let _attached = contexts.attach(EDU_SID, DID, &table).unwrap();
    let qs = QueueSize::from_order(0).unwrap();
    let inv =
        QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, &frames, qs).unwrap();
    // A second handle on the registers, for the fault records.
    let mut faults = RemappingUnit::new(QtestMmio::new(&qemu)).unwrap();

    let clock = StepClock::default();
    let pages = 1u64 << (width - 12);
    let space = IovaTree::new(Window::from_pages(1, pages - 1).unwrap(), Vec::new());
    let config = MapperConfig { reuse, flush, domain: DID, dma_limit: Iova::new(1 << width) };
    let platform = (mem, frames.clone(), &clock);
    let mut mapper =
        Mapper::with_capacity(platform, table, space, inv, NoPinning, config, Fixed::<256, 64>)
            .unwrap();

    let slots: Vec<(PhysAddr, PhysAddr)> =
        (0..SLOTS).map(|_| (frames.allocate(1).unwrap(), frames.allocate(1).unwrap())).collect();
    for i in 0..BUFFERS {
        let (src, dst) = slots[i % SLOTS];
        let (offset, len) = shape(i);
        let data = pattern(i as u8, len);
        mem.write_bytes(at(src, offset), &data).unwrap();
        mem.write_bytes(dst, &[FILL; SLOT_BYTES]).unwrap();

        // Two users of the source buffer, one of the destination.
        let iova_in = mapper.map(at(src, offset), len as u64, Perm::READ).unwrap();
        let again = mapper.map(at(src, offset), len as u64, Perm::READ).unwrap();
        assert_eq!(again == iova_in, reuse != Reuse::SingleUse, "buffer {i}");
        let iova_out = mapper.map(at(dst, offset), len as u64, Perm::WRITE).unwrap();
        assert_eq!(iova_in.as_u64() % PAGE_SIZE, (offset as u64) % PAGE_SIZE);
        // IOVAs come from the top of the space: above 2^39 on a 48-bit
        // unit, so the fourth level is in use.
        assert!(iova_in.as_u64() >= 1 << (width - 1), "{iova_in:?}");

        edu.read_memory(iova_in, 0, len).unwrap();
        edu.write_memory(0, iova_out, len).unwrap();
        let mut out = vec![0; SLOT_BYTES];
        mem.read_bytes(dst, &mut out).unwrap();
        assert!(out[..offset].iter().all(|b| *b == FILL), "buffer {i}: wrote before");
        assert!(out[offset + len..].iter().all(|b| *b == FILL), "buffer {i}: wrote after");
        assert!(out[offset..offset + len] == data, "buffer {i}: wrong bytes");
        assert_eq!(drain(&mut faults), [], "buffer {i}");

        mapper.unmap(iova_in, len as u64).unwrap();
        mapper.unmap(again, len as u64).unwrap();
        mapper.unmap(iova_out, len as u64).unwrap();
        clock.advance(TICK);
    }
    let counters = *mapper.counters();
    assert_eq!(counters.maps, 3 * BUFFERS as u64);
    assert_eq!(counters.unmaps, 3 * BUFFERS as u64);
    match reuse {
        Reuse::SingleUse => assert_eq!(counters.reuse_hits, 0),
        // The second user of each source buffer.
        Reuse::Shared => assert_eq!(counters.reuse_hits, BUFFERS as u64),
        // And buffers met again in a later round.
        _ => assert!(counters.reuse_hits > BUFFERS as u64, "{counters:?}"),
    }
    mapper.flush().unwrap();
    assert_eq!(mapper.pending(), 0);
    // Every teardown's invalidation completed; strict flushing posts one
    // batch per teardown, the others batch them.
    let stats = *mapper.flush_stats();
    println!(
        "{reuse:?} {:?}: {} reuse hits, {} teardowns in {} batches",
        flush.mode, counters.reuse_hits, stats.unmaps, stats.batches
    );
    assert_eq!(stats.released, stats.unmaps, "{stats:?}");
    if stats.unmaps > 0 {
        match flush.mode {
            FlushMode::Strict => assert_eq!(stats.batches, stats.unmaps, "{stats:?}"),
            _ => assert!(stats.batches < stats.unmaps, "{stats:?}"),
        }
    }

    // A buffer mapped, used (its translation now cached), and unmapped: once
    // torn down and invalidated, the device faults on it.
    let page = frames.allocate(0).unwrap();
    mem.write_bytes(page, &pattern(0xAB, PAGE_SIZE as usize)).unwrap();
    let iova = mapper.map(page, PAGE_SIZE, Perm::READ_WRITE).unwrap();
    edu.read_memory(iova, 0, 64).unwrap();
    edu.write_memory(0, Iova::new(iova.as_u64() + 0x100), 64).unwrap();
    assert_eq!(drain(&mut faults), []);
    mapper.unmap(iova, PAGE_SIZE).unwrap();
    let torn_down_at_once =
        flush.mode == FlushMode::Strict && !matches!(reuse, Reuse::Optimistic { .. });
    if !torn_down_at_once {
        mapper.flush().unwrap();
    }
    edu.read_memory(Iova::new(iova.as_u64() + 0x10), 0, 64).unwrap();
    assert_fault(&mut faults, FaultType::Read, FaultReason::ReadNotPermitted, iova);
    edu.write_memory(0, iova, 64).unwrap();
    assert_fault(&mut faults, FaultType::Write, FaultReason::WriteNotPermitted, iova);
    qemu.check().unwrap();
}

fn assert_fault(
    faults: &mut RemappingUnit<QtestMmio<'_>>,
    kind: FaultType,
    reason: FaultReason,
    iova: Iova,
) {
    let records = drain(faults);
    let [f] = records.as_slice() else { panic!("expected one fault, got {records:?}") };
    assert_eq!(
        (f.source, f.kind, f.reason(), f.fault_info),
        (EDU_SID, kind, Some(reason), iova.align_down(PAGE_SIZE).as_u64()),
        "{f:?}"
    );
}

const PERSISTENT: Reuse = Reuse::Persistent { quota: Some(SLOTS / 2) };
/// Room for every slot's two stale mappings, and long enough for a slot to
/// come round again (16 buffers of 20 us): buffers are found stale and
/// reused, and reclaims still happen (quota 48 of 32 stale is never
/// reached, the time limit is).
const OPTIMISTIC: Reuse =
    Reuse::Optimistic { quota: 3 * SLOTS, time_limit: Duration::from_millis(1) };
const STRICT: FlushConfig = FlushConfig::strict();
const DEFERRED: FlushConfig = FlushConfig::deferred(16, Duration::from_micros(50));
const ASYNC: FlushConfig = FlushConfig::asynchronous(8, Duration::from_micros(50));

macro_rules! policies {
    ($($name:ident: $reuse:expr, $flush:expr;)*) => {
        $(
            #[test]
            fn $name() {
                carry_buffers($reuse, $flush);
            }
        )*
    };
}

policies! {
    single_use_strict: Reuse::SingleUse, STRICT;
    single_use_deferred: Reuse::SingleUse, DEFERRED;
    single_use_async: Reuse::SingleUse, ASYNC;
    shared_strict: Reuse::Shared, STRICT;
    shared_deferred: Reuse::Shared, DEFERRED;
    shared_async: Reuse::Shared, ASYNC;
    persistent_strict: PERSISTENT, STRICT;
    persistent_deferred: PERSISTENT, DEFERRED;
    persistent_async: PERSISTENT, ASYNC;
    optimistic_strict: OPTIMISTIC, STRICT;
    optimistic_deferred: OPTIMISTIC, DEFERRED;
    optimistic_async: OPTIMISTIC, ASYNC;
}

#[test]
fn optimistic_async_on_a_48_bit_unit_in_caching_mode() {
    // 4-level tables, IOVAs from the top of a 48-bit space, and CAP.CM:
    // the mapper invalidates after each map too.
    let options = IommuOptions { aw_bits: 48, caching_mode: true, ..IommuOptions::default() };
    carry_buffers_on(&options, OPTIMISTIC, ASYNC);
}

#[test]
fn single_use_strict_on_a_48_bit_unit() {
    let options = IommuOptions { aw_bits: 48, ..IommuOptions::default() };
    carry_buffers_on(&options, Reuse::SingleUse, STRICT);
}
