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
//!   and optimistic teardown.
//!
//! `unsafe` is denied except where a trait is unsafe to implement (the
//! forwarding impls of [`FrameAllocator`]), each allowed locally with its
//! `// SAFETY:` reason.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod addr;
pub mod clock;
pub mod mem;

pub use addr::{Iova, PAGE_SHIFT, PAGE_SIZE, PageSize, PhysAddr};
pub use clock::{Clock, Instant, NoClock};
pub use mem::{FrameAllocator, MemError, PhysMem};
