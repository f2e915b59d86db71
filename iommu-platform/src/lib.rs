//! What an OS kernel, unikernel or hypervisor provides to the IOMMU crates
//! of viommu, and the typed addresses they all speak in.
//!
//! - [`PhysAddr`], [`Iova`], [`PageSize`]: physical and I/O virtual
//!   addresses as distinct types (VT-d §3.1), and the second-level page
//!   sizes (§3.7).
//! - [`PhysMem`]: reads and writes of physical memory by address, where
//!   translation tables and the invalidation queue live.
//! - [`FrameAllocator`]: frames for those tables and queues.
//! - [`Clock`]: monotonic time for the deadlines of deferred invalidation
//!   and optimistic teardown; [`TscClock`] (x86-64, no_std) and, with the
//!   `std` feature, `StdClock`.
//! - [`Platform`]: the three bundled behind one trait with associated
//!   types, so a stored mapping layer names one type for them.
//! - [`RegionFrames`]: a frame allocator for kernels over one region of
//!   physical memory (no heap, bounded, never hands out a frame twice).
//! - [`Storage`]: inline arrays ([`Inline`]) or, with `alloc`, heap arrays
//!   sized at run time (`Boxed`), for the bounded collections of the
//!   flush queue and the mapping layer.
//!
//! A kernel's platform in a few lines (the [`Platform`] documentation has
//! one as its own type):
//!
//! ```
//! use iommu_platform::{Clock, FrameAllocator, NoClock, PhysAddr, Platform, RegionFrames};
//!
//! // Frames for IOMMU tables: 1 MiB the kernel set aside.
//! static FRAMES: RegionFrames<4> =
//!     match RegionFrames::new(PhysAddr::new(0x20_0000), PhysAddr::new(0x30_0000)) {
//!         Ok(frames) => frames,
//!         Err(_) => panic!("the region fits the bitmap"),
//!     };
//!
//! # #[derive(Clone, Copy)] struct DirectMap;
//! # impl iommu_platform::PhysMem for DirectMap {
//! #     fn read_u64(&self, a: PhysAddr) -> Result<u64, iommu_platform::MemError> { Ok(0) }
//! #     fn write_u64(&self, a: PhysAddr, _: u64) -> Result<(), iommu_platform::MemError> { Ok(()) }
//! #     fn read_bytes(&self, _: PhysAddr, _: &mut [u8]) -> Result<(), iommu_platform::MemError> { Ok(()) }
//! #     fn write_bytes(&self, _: PhysAddr, _: &[u8]) -> Result<(), iommu_platform::MemError> { Ok(()) }
//! # }
//! // Memory (the kernel's direct map), frames, a clock: one platform.
//! let platform = (DirectMap, &FRAMES, NoClock);
//! let table = platform.frames().allocate(0).expect("a frame");
//! assert!(table.is_aligned(4096) && FRAMES.in_use() == 1);
//! assert!(!<NoClock as Clock>::TELLS_TIME); // no deadline can be measured with it
//! ```
//!
//! `unsafe` is denied except where a trait is unsafe to implement
//! ([`FrameAllocator`]) and for the `RDTSC` and `CPUID` instructions, each
//! allowed locally with its `// SAFETY:` reason.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks, missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod addr;
pub mod clock;
pub mod frames;
pub mod mem;
pub mod platform;
pub mod storage;
pub mod sync;

pub use addr::{Iova, PAGE_SHIFT, PAGE_SIZE, PageSize, PhysAddr};
#[cfg(feature = "std")]
pub use clock::StdClock;
#[cfg(target_arch = "x86_64")]
pub use clock::TscClock;
pub use clock::{Clock, Instant, NoClock};
pub use frames::{RegionError, RegionFrames};
pub use mem::{AtomicPhysMem, FrameAllocator, MemError, PhysMem};
pub use platform::Platform;
#[cfg(feature = "alloc")]
pub use storage::Boxed;
pub use storage::{Inline, Storage};
pub use sync::{Lock, PerCpu};
