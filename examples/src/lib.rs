//! The test bed shared by the example programs in `src/bin/` and the
//! benchmarks in `benches/`: the software VT-d (`vtd-emu`) over simulated
//! memory, brought up the way a driver does it, with one device attached to
//! one domain.

use std::time::Instant as StdInstant;

use invalidation::{Clock, Instant, QueuedInvalidator};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::regs::QueueSize;
use vtd_regs::{DomainId, PhysAddr, RemappingUnit, SourceId};
use vtd_tables::{ContextManager, SlPageTable, TableConfig};

/// Simulated memory.
pub type Mem = &'static HeapMemory;
/// Frames for tables and queues.
pub type Frames = &'static SimFrameAllocator<Mem>;
/// The software unit.
pub type Emu = Emulator<Mem>;
/// The queued invalidator on it.
pub type Inv = QueuedInvalidator<&'static Emu, Mem>;
/// A domain's table in simulated memory.
pub type Table = SlPageTable<Mem, Frames>;

/// Simulated RAM of [`Testbed::new`]: data buffers below [`FRAMES_START`],
/// tables above.
pub const RAM: u64 = 64 << 20;
/// Where table and queue frames start.
pub const FRAMES_START: u64 = 32 << 20;
/// The device: 00:01.0.
pub const DEVICE: SourceId = SourceId::from_raw(0x0008);
/// Its domain.
pub const DOMAIN: DomainId = DomainId::new(1);

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// A unit brought up with translation and queued invalidation on, and a
/// 39-bit domain table with [`DEVICE`] attached.
pub struct Testbed {
    /// The unit.
    pub emu: &'static Emu,
    /// Its frame allocator.
    pub frames: Frames,
    /// The domain's table.
    pub table: Table,
    /// The invalidator.
    pub inv: Inv,
}

impl Testbed {
    /// Brings up a unit configured by `cfg` over [`RAM`] bytes.
    pub fn new(cfg: EmuConfig) -> Self {
        Self::with_memory(cfg, RAM, FRAMES_START)
    }

    /// Brings up a unit configured by `cfg` over `ram` bytes of simulated
    /// memory, tables and queues taken from `[frames_start, ram)`.
    pub fn with_memory(cfg: EmuConfig, ram: u64, frames_start: u64) -> Self {
        let mem: Mem = leak(HeapMemory::new(ram as usize));
        let frames: Frames =
            leak(SimFrameAllocator::new(mem, PhysAddr::new(frames_start), PhysAddr::new(ram)));
        let emu: &'static Emu = leak(Emulator::new(mem, cfg).expect("valid configuration"));
        let unit = RemappingUnit::new(emu).expect("unit present");
        let config = TableConfig::from_cap(unit.cap(), 39).expect("39-bit tables");
        let table = SlPageTable::new(mem, frames, config).expect("frames");
        let mut contexts = ContextManager::new(mem, frames).expect("frames");
        let _attached = contexts.attach(DEVICE, DOMAIN, &table).expect("attach");
        let qs = QueueSize::from_order(0).expect("1 page");
        let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, qs)
            .expect("remapping on");
        Testbed { emu, frames, table, inv }
    }
}

/// Time from the time-stamp counter, as an OS kernel would read it (one
/// RDTSC, no system call), scaled to nanoseconds by a calibration against
/// the wall clock.
pub struct Tsc {
    /// Nanoseconds per tick, in 32.32 fixed point.
    ns_per_tick: u64,
}

impl Default for Tsc {
    fn default() -> Self {
        let (t0, w0) = (rdtsc(), StdInstant::now());
        while w0.elapsed().as_millis() < 20 {
            std::hint::spin_loop();
        }
        let (ticks, ns) = (rdtsc() - t0, w0.elapsed().as_nanos() as u64);
        Tsc {
            ns_per_tick: (u128::from(ns) << 32).checked_div(u128::from(ticks)).unwrap_or(1 << 32)
                as u64,
        }
    }
}

impl Clock for Tsc {
    #[inline]
    fn now(&self) -> Instant {
        Instant(((u128::from(rdtsc()) * u128::from(self.ns_per_tick)) >> 32) as u64)
    }
}

/// The time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}
