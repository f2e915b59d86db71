//! The IOMMU mapping layer a driver calls for every DMA buffer:
//! `map(phys, len, perm) -> iova` and `unmap(iova, len)`, composed from
//! `iova-alloc` (where IOVAs come from), `vtd-tables` (the domain's
//! second-level table) and `invalidation` (when the IOTLB is told), with
//! the mapping-reuse policy chosen at construction: single-use, shared,
//! persistent, or optimistic teardown (the vIOMMU paper, Amit et al.,
//! USENIX ATC 2011, §5).
//!
//! A hypervisor plugs in a [`PagePinner`]: a guest page is pinned from the
//! moment any translation can reach it until the invalidation removing the
//! last one has completed, so inter-guest protection is never weakened.
//!
//! The rule the layer keeps: a torn-down mapping's IOVA range, its detached
//! table frames and its pins are given back only once the invalidation
//! covering it has completed (the unmap token of `vtd-tables`, released by
//! the flush queue of `invalidation`).
//!
//! A [`Mapper`] names the platform (memory, frames, clock), the IOVA space
//! and the invalidator; the pinner ([`NoPinning`]) and the capacities
//! ([`Fixed`]: 1024 mappings, 256 pending teardowns, inline; or
//! `Runtime` on the heap with `alloc`) have defaults. Most drivers hold
//! `vtd-dma`'s `DmaDomain`, which builds one; built by hand, on the
//! software VT-d:
//!
//! ```
//! use core::time::Duration;
//! use invalidation::{FlushConfig, QueuedInvalidator};
//! use iommu_platform::StdClock;
//! use iova_alloc::{IovaTree, Window};
//! use teardown::{Capacity, Fixed, Mapper, MapperConfig, NoPinning, Reuse};
//! use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
//! use vtd_regs::regs::QueueSize;
//! use vtd_regs::{DomainId, Iova, PhysAddr, RemappingUnit, SourceId};
//! use vtd_tables::{ContextManager, Perm, SlPageTable, TableConfig};
//!
//! // The platform: memory, frames for tables, a clock; a software VT-d.
//! let mem = HeapMemory::new(8 << 20);
//! let frames = SimFrameAllocator::new(&mem, PhysAddr::new(4 << 20), PhysAddr::new(8 << 20));
//! let platform = (&mem, &frames, StdClock::new());
//! let emu = Emulator::new(&mem, EmuConfig::qemu()).unwrap();
//!
//! // A domain's table, device 00:01.0 attached, remapping on.
//! let unit = RemappingUnit::new(&emu)?;
//! let table = SlPageTable::new(&mem, &frames, TableConfig::from_cap(unit.cap(), 39)?)?;
//! let mut contexts = ContextManager::new(&mem, &frames)?;
//! let _ = contexts.attach(SourceId::new(0, 1, 0).unwrap(), DomainId::new(1), &table)?;
//! let qs = QueueSize::from_order(0).unwrap();
//! let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), &mem, &frames, qs)
//!     .map_err(|r| r.error)?;
//!
//! // Optimistic teardown over deferred invalidation, Linux's 256 / 10 ms.
//! let config = MapperConfig {
//!     reuse: Reuse::Optimistic { quota: 64, time_limit: Duration::from_millis(10) },
//!     flush: FlushConfig::deferred(256, Duration::from_millis(10)),
//!     domain: DomainId::new(1),
//!     dma_limit: Iova::new(1 << 32),
//! };
//! let space = IovaTree::new(Window::from_pages(1, (1 << 20) - 1)?, Fixed::<1024, 256>.nodes());
//! let mut mapper = Mapper::new(platform, table, space, inv, NoPinning, config)?;
//! let iova = mapper.map(PhysAddr::new(0x12_3450), 1500, Perm::WRITE)?;
//! mapper.unmap(iova, 1500)?;
//! assert_eq!(mapper.map(PhysAddr::new(0x12_3450), 1500, Perm::WRITE)?, iova); // reused
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod capacity;
pub mod counters;
mod index;
pub mod mapper;
pub mod pinner;
pub mod policy;
mod registry;
pub mod shared;
pub mod space;

use core::fmt;

#[cfg(feature = "alloc")]
pub use capacity::Runtime;
pub use capacity::{Capacity, Fixed};
pub use counters::MapperCounters;
pub use mapper::{Mapper, sg_iova};
pub use pinner::{NoPinning, PagePinner, PinError};
pub use policy::{MapperConfig, Reuse};
pub use shared::{FlushScope, MapperHandle, SharedMapper, SharedSpace};
pub use space::{IovaSpace, PlacedOnly};

use iova_alloc::AllocError;
use vtd_regs::Iova;

/// Why a map or unmap failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// A buffer of length zero, or one that wraps the address space.
    Empty,
    /// No mapping starts at this IOVA's page, or it was already unmapped.
    NotMapped {
        /// The IOVA given.
        iova: Iova,
    },
    /// The length does not cover the same pages as the mapping.
    LengthMismatch {
        /// The IOVA given.
        iova: Iova,
        /// The length given.
        len: u64,
    },
    /// [`Mapper::map_at`]'s IOVA does not have the buffer's page offset.
    Misplaced {
        /// The IOVA given.
        iova: Iova,
    },
    /// The mapper holds as many mappings as it can.
    TooManyMappings,
    /// No IOVA range was available.
    Iova(AllocError),
    /// The table refused the map.
    Table(vtd_tables::Error),
    /// An invalidation failed.
    Invalidation(invalidation::Error),
    /// A page could not be pinned.
    Pin(PinError),
    /// An optimistic time limit with a clock that cannot tell time
    /// ([`NoClock`](invalidation::NoClock)): stale mappings would never
    /// age, and the stale window would have no bound in time.
    TimeLimitWithoutClock,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty => f.write_str("empty buffer"),
            Error::NotMapped { iova } => write!(f, "{iova:?} is not mapped"),
            Error::LengthMismatch { iova, len } => {
                write!(f, "{len:#x} bytes at {iova:?} do not match the mapping")
            }
            Error::Misplaced { iova } => write!(f, "{iova:?} has not the buffer's page offset"),
            Error::TooManyMappings => f.write_str("too many mappings"),
            Error::Iova(e) => write!(f, "IOVA allocation: {e}"),
            Error::Table(e) => write!(f, "page table: {e}"),
            Error::Invalidation(e) => write!(f, "invalidation: {e}"),
            Error::Pin(e) => write!(f, "cannot pin {:?}", e.page),
            Error::TimeLimitWithoutClock => {
                f.write_str("an optimistic time limit needs a clock that tells time")
            }
        }
    }
}

impl core::error::Error for Error {}

/// This crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
