//! IOVA space allocators for IOMMU drivers: a size-aligned, top-down range
//! allocator ([`IovaTree`]) and a magazine cache in front of it
//! ([`IovaCache`], used through per-CPU [`CpuHandle`]s).
//!
//! A driver maps a DMA buffer at an I/O virtual address (VT-d §3.1) that it
//! picks from its domain's IOVA window. The allocator here picks it:
//!
//! - [`IovaTree`]: ranges of whole 4 KiB pages, a request of `n` pages aligned
//!   to `n` rounded up to a power of two (what DMA APIs promise), placed as
//!   high as possible below a per-call DMA limit (so the low 4 GiB stay free
//!   for devices with 32-bit DMA masks), with reservations for RMRRs and the
//!   interrupt (MSI) window `0xFEE0_0000..=0xFEEF_FFFF`, and owner lookup.
//!   An AVL tree whose nodes summarise the free gaps below them, so every
//!   operation is O(log n) in the number of live ranges.
//! - [`IovaCache`] and [`CpuHandle`]: per-size-class magazines of recently
//!   freed ranges (orders 0..=5), per handle, with a shared depot; the fast
//!   path takes no lock and is O(1).
//! - [`IovaRing`] and [`IovaRings`]: per-ring contiguous allocation (F&S,
//!   SOSP 2024): a device queue's buffers handed out in order from one
//!   region, so a batch of them is invalidated as one range.
//!
//! Both hand out an [`IovaLease`]: the allocation, held by value. Freeing
//! it consumes it, so a double free does not compile, and with the cache a
//! free is a magazine push with no atomic read-modify-write. A caller that
//! keeps only an address turns the lease into a plain [`IovaRange`]
//! (`into_range`) and frees that by address (`free_range`): double and
//! foreign frees of ranges are typed errors, with caches on and across
//! CPUs too. A lease given to another allocator instance is a typed error.
//!
//! Storage is pluggable through [`Store`]: fixed-capacity `heapless` vectors
//! for a unikernel ([`FixedIovaCache`]), or heap vectors with the `alloc`
//! feature (`VecIovaCache`). Ranges returned to the allocator must no longer
//! be reachable by the device: give a range back only after the IOTLB
//! invalidation that covers its unmapping has completed.
//!
//! ```
//! use iova_alloc::{AllocError, FixedIovaCache, IovaRange, Window};
//! use vtd_regs::Iova;
//!
//! // A 39-bit window (3-level tables), without page 0; no heap.
//! let window = Window::new(Iova::new(0x1000), Iova::new((1 << 39) - 1))?;
//! let cache = FixedIovaCache::<512, 4, 4096>::new_fixed(window);
//! cache.reserve(IovaRange::new(Iova::new(0xFEE0_0000), 256)?)?; // MSI window
//!
//! let mut cpu0 = cache.handle();
//! let mut cpu1 = cache.handle();
//! let buf = cpu0.alloc(1, Iova::new(u64::MAX))?; // top of the window
//! let at = buf.range();
//! assert_eq!(at.last(), Iova::new((1 << 39) - 1));
//! let legacy = cpu0.alloc(4, Iova::new(0xFFFF_FFFF))?; // 32-bit DMA mask
//! assert_eq!(legacy.range().start(), Iova::new(0xFFFF_C000));
//! assert_eq!(cache.owner_of(Iova::new(0xFFFF_D123)), Some(legacy.range()));
//!
//! // Any CPU may free a lease; the range goes to that CPU's magazine,
//! // lock-free. A second free of `buf` would not compile.
//! cpu1.free(buf)?;
//! assert_eq!(cpu1.alloc(1, Iova::new(u64::MAX))?.range(), at); // recycled, LIFO
//!
//! // By address: the free is checked, so a second one is refused.
//! let legacy = cpu0.into_range(legacy)?;
//! cpu1.free_range(legacy)?;
//! assert_eq!(cpu0.free_range(legacy), Err(AllocError::NotAllocated));
//! # Ok::<(), AllocError>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod cache;
mod error;
mod lease;
mod live;
mod magazine;
mod range;
mod ring;
mod store;
mod tree;

#[cfg(feature = "alloc")]
pub use cache::VecIovaCache;
pub use cache::{CACHED_ORDERS, CpuHandle, FixedIovaCache, IovaCache};
pub use error::{AllocError, Result};
pub use lease::IovaLease;
pub use magazine::{MAG_SIZE, Magazine};
pub use range::{IovaRange, Window};
pub use ring::{IovaRing, IovaRings, RingHandle, RingLease};
pub use store::Store;
pub use tree::{IovaTree, Node};
