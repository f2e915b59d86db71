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
pub mod space;

use core::fmt;

#[cfg(feature = "alloc")]
pub use capacity::Runtime;
pub use capacity::{Capacity, Fixed};
pub use counters::MapperCounters;
pub use mapper::{Mapper, sg_iova};
pub use pinner::{NoPinning, PagePinner, PinError};
pub use policy::{MapperConfig, Reuse};
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
