//! Simulated physical memory for the model and its tests: word storage the
//! remapping unit, the driver and a device thread share, and a frame
//! allocator over it.
//!
//! The model itself reads tables and the invalidation queue only through
//! [`PhysMem`](vtd_regs::PhysMem), so it runs as well over a hypervisor's view
//! of guest RAM; these types are the default "RAM" of tests, examples and
//! benchmarks.

mod frames;
mod sim;

pub use frames::{MAX_ORDER, SimFrameAllocator};
#[cfg(feature = "alloc")]
pub use sim::HeapMemory;
pub use sim::{SimMemory, StaticMemory};
