//! The host the vIOMMU benchmarks run their guests on: a software VT-d
//! unit over 64 MiB of host RAM, remapping enabled through a one-page
//! invalidation queue, and the vIOMMU's native host side over it. Guests
//! live in the RAM's first 16 MiB; host tables and frames in its upper
//! half. Everything is leaked: a benchmark's host lives as long as the
//! process.

use std::sync::Arc;

use invalidation::QueuedInvalidator;
use viommu::{GuestMemory, Host};
use viommu_examples::DOMAIN;
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::regs::QueueSize;
use vtd_regs::{PhysAddr, RemappingUnit};
use vtd_tables::{ContextManager, TableConfig};

/// The host's RAM.
pub type Mem = &'static HeapMemory;
/// The host's table frames.
pub type Frames = &'static SimFrameAllocator<Mem>;
/// The host's unit.
pub type Emu = Emulator<Mem>;
/// The host's invalidation queue.
pub type HostInv = QueuedInvalidator<&'static Emu, Mem>;
/// The vIOMMU's native host side.
pub type TheHost = Host<Mem, Frames, HostInv>;
/// A guest's RAM: a window of the host's.
pub type GMem = GuestMemory<Mem>;

/// Bytes of host RAM.
pub const HOST_RAM: u64 = 64 << 20;
/// Where the host's table frames start.
pub const HOST_FRAMES: u64 = 32 << 20;
/// Bytes of guest RAM, at host address 0.
pub const GUEST_RAM: u64 = 16 << 20;
/// Where the guest's driver takes its table frames from.
pub const GUEST_FRAMES: u64 = 8 << 20;

/// `t`, for the rest of the process.
pub fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// The host's RAM, its frames and its unit, configured as `config`,
/// translation still off.
pub fn host_unit(config: EmuConfig) -> (Mem, Frames, &'static Emu) {
    let mem: Mem = leak(HeapMemory::new(HOST_RAM as usize));
    let frames: Frames =
        leak(SimFrameAllocator::new(mem, PhysAddr::new(HOST_FRAMES), PhysAddr::new(HOST_RAM)));
    (mem, frames, leak(Emulator::new(mem, config).expect("config")))
}

/// The host's RAM, its frames, its unit (QEMU's configuration, remapping
/// on) and the host.
pub fn new_host() -> (Mem, Frames, &'static Emu, Arc<TheHost>) {
    let (mem, frames, emu) = host_unit(EmuConfig::qemu());
    let unit = RemappingUnit::new(emu).expect("unit");
    let tables = TableConfig::from_cap(unit.cap(), 39).expect("39-bit");
    let contexts = ContextManager::new(mem, frames).expect("frames");
    let qs = QueueSize::from_order(0).expect("1 page");
    let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, qs)
        .expect("remapping on");
    (mem, frames, emu, Arc::new(Host::new(mem, frames, contexts, inv, tables, DOMAIN)))
}
