//! The test beds shared by the example programs in `src/bin/` and the
//! benchmarks in `benches/`: [`Machine`], a simulated computer with a
//! software VT-d behind a DMAR table, as a kernel finds one; and
//! [`Testbed`], the software VT-d (`vtd-emu`) over simulated memory,
//! brought up the way a driver does it, with one device attached to one
//! domain.

use std::time::Duration;

use invalidation::QueuedInvalidator;
use iommu_platform::{RegionFrames, StdClock, TscClock};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::dmar::{DeviceScopeKind, DmarFlags, DmarWriter, DrhdFlags};
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
/// The platform of a [`Testbed`]: its memory and frames, and a clock.
pub type Platform<C> = (Mem, Frames, C);

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

/// Frames of a [`Machine`]'s table pool, one bit each (32 MiB).
pub type MachineFrames = &'static RegionFrames<128>;

/// A simulated computer: [`RAM`] bytes of memory, a software VT-d (QEMU's
/// capabilities) at [`Machine::REGISTERS`], the DMAR table that describes
/// it (naming the NIC, [`DEVICE`], and a USB controller with a reserved
/// region), and the frames `[FRAMES_START, RAM)` for tables.
pub struct Machine {
    /// The memory.
    pub ram: Mem,
    /// The frame pool for tables and queues.
    pub frames: MachineFrames,
    /// The remapping unit.
    pub unit: &'static Emu,
    dmar: Vec<u8>,
}

impl Machine {
    /// The NIC, 00:01.0.
    pub const NIC: SourceId = DEVICE;
    /// A receive ring in the NIC driver's memory.
    pub const RING: PhysAddr = PhysAddr::new(0x10_0000);
    /// Where the unit's register page is.
    pub const REGISTERS: PhysAddr = PhysAddr::new(0xfed9_0000);
    /// The USB controller's reserved region (an RMRR): 1 MiB at 31 MiB.
    pub const USB_REGION: (PhysAddr, PhysAddr) =
        (PhysAddr::new(0x1f0_0000), PhysAddr::new(0x1ff_ffff));

    /// The machine, powered on: the unit in its reset state.
    pub fn new() -> Self {
        let ram: Mem = leak(HeapMemory::new(RAM as usize));
        let pool = RegionFrames::new(PhysAddr::new(FRAMES_START), PhysAddr::new(RAM));
        let frames: MachineFrames = leak(pool.expect("the pool fits its bitmap"));
        let unit: &'static Emu = leak(Emulator::new(ram, EmuConfig::qemu()).expect("config"));
        let pci = DeviceScopeKind::PciEndpoint;
        let (usb, usb_region) = ((0x14, 0), Self::USB_REGION);
        let mut buf = vec![0u8; 256];
        let len = DmarWriter::new(&mut buf, 39, DmarFlags::INTR_REMAP)
            .and_then(|w| w.drhd(DrhdFlags::empty(), 0, Self::REGISTERS))
            .and_then(|w| w.device(pci, 0, 0, &[(DEVICE.device(), DEVICE.function())]))
            .and_then(|w| w.device(pci, 0, 0, &[usb]))
            .and_then(|w| w.rmrr(0, usb_region.0, usb_region.1))
            .and_then(|w| w.device(pci, 0, 0, &[usb]))
            .and_then(|w| w.finish())
            .expect("the table fits")
            .len();
        buf.truncate(len);
        Machine { ram, frames, unit, dmar: buf }
    }

    /// The platform a kernel on this machine has: its memory, its frame
    /// pool, and the OS's monotonic clock.
    pub fn platform(&self) -> (Mem, MachineFrames, StdClock) {
        (self.ram, self.frames, StdClock::new())
    }

    /// The DMAR ACPI table (VT-d §8).
    pub fn dmar(&self) -> &[u8] {
        &self.dmar
    }

    /// The register page at `base`, if a unit is there.
    pub fn registers(&self, base: PhysAddr) -> Option<&'static Emu> {
        (base == Self::REGISTERS).then_some(self.unit)
    }
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

/// A unit brought up with translation and queued invalidation on, and a
/// 39-bit domain table with [`DEVICE`] attached.
pub struct Testbed {
    /// The simulated memory.
    pub mem: Mem,
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
        Testbed { mem, emu, frames, table, inv }
    }

    /// The platform of the test bed with `clock`.
    pub fn platform<C>(&self, clock: C) -> Platform<C> {
        (self.mem, self.frames, clock)
    }
}

/// The time-stamp counter as a clock, calibrated against the wall clock
/// over 20 ms (a kernel would read the frequency from CPUID or firmware:
/// [`TscClock::from_cpuid`], [`TscClock::from_hz`]).
pub fn tsc() -> TscClock {
    TscClock::calibrate(Duration::from_millis(20)).expect("the TSC ticks")
}
