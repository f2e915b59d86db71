//! VT-d IOTLB and context-cache invalidation: what to invalidate, the
//! mechanisms that do it (the invalidation queue of VT-d §6.5.2, or the
//! register interface of §6.5.1 on units without queued invalidation), and
//! the flush policies that decide when (strict, deferred, asynchronous).
//!
//! Invalidation is the expensive half of every unmap: natively it is a
//! queue round trip, and under an emulated IOMMU every tail write is a VM
//! exit. A [`FlushQueue`] batches the invalidations owed by unmaps and
//! releases each unmap's payload (the IOVAs, the page-table frames) only
//! once an invalidation covering it has completed.
//!
//! A [`QueuedInvalidator`] on the software VT-d, and 1000 one-page unmaps
//! flushed in Linux's deferred batches of 256: four queue-tail writes (VM
//! exits, under an emulated unit) instead of a thousand.
//!
//! ```
//! use core::time::Duration;
//! use invalidation::{FlushConfig, FlushQueue, Invalidation, Invalidator, QueuedInvalidator};
//! use iommu_platform::StdClock;
//! use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
//! use vtd_regs::regs::QueueSize;
//! use vtd_regs::{DomainId, Iova, PAGE_SIZE, PhysAddr, RemappingUnit, SourceId};
//!
//! let mem = HeapMemory::new(4 << 20);
//! let frames = SimFrameAllocator::new(&mem, PhysAddr::new(2 << 20), PhysAddr::new(4 << 20));
//! let emu = Emulator::new(&mem, EmuConfig::qemu()).unwrap();
//! let root = PhysAddr::new(1 << 20); // an empty root table: every device blocked
//! let unit = RemappingUnit::new(&emu)?;
//! let size = QueueSize::from_order(0).unwrap();
//! let mut inv = QueuedInvalidator::enable_remapping(unit, root, &mem, &frames, size)
//!     .map_err(|rejected| rejected.error)?;
//!
//! // What attaching a device to domain 1 owes, posted and waited for.
//! let device = SourceId::new(0, 1, 0).unwrap();
//! inv.invalidate(Invalidation::context_changed(device, DomainId::new(1)))?;
//!
//! // Deferred flushing: each payload comes back once its range is invalidated.
//! let lazy = FlushConfig::deferred(256, Duration::from_millis(10));
//! let mut queue: FlushQueue<u64, _> = FlushQueue::new(lazy, StdClock::new())?;
//! let mut released = 0;
//! for page in 0..1000u64 {
//!     let iova = Iova::new(page * PAGE_SIZE);
//!     let range = iova..Iova::new(iova.as_u64() + PAGE_SIZE);
//!     queue.unmapped(&mut inv, DomainId::new(1), range, true, page, |_| released += 1)?;
//! }
//! queue.flush(&mut inv, |_| released += 1)?;
//! assert_eq!(released, 1000);
//! // One for bring-up, one for the attach, then 4 batches: 3 x 256 and 232.
//! assert_eq!(inv.counters().tail_writes, 2 + 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blocks;
pub mod clock;
pub mod counters;
pub mod flush;
pub mod invalidator;
pub mod queued;
pub mod register;
pub mod request;
mod ring;
pub mod shared;
pub mod tag;
pub mod unit;

use core::fmt;

use vtd_regs::{DescError, MemError, UnitError};

pub use blocks::PageBlocks;
pub use clock::{Clock, Instant, NoClock};
pub use counters::InvalidatorCounters;
pub use flush::{FlushConfig, FlushMode, FlushQueue, FlushStats};
pub use invalidator::{InvalidationCaps, Invalidator};
pub use queued::{QueueFault, QueuedInvalidator, Rejected};
pub use register::RegisterInvalidator;
pub use request::{Invalidation, Ticket};
pub use shared::SharedInvalidator;
pub use tag::Tag;
pub use unit::UnitInvalidator;

/// What can go wrong while invalidating.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// A fixed-capacity queue had no room.
    QueueFull,
    /// The unit did not complete an invalidation within the poll budget.
    Timeout,
    /// The unit cannot perform this request (for example page-selective
    /// invalidation without CAP.PSI, or a mask order beyond CAP.MAMV).
    Unsupported(Invalidation),
    /// The frame allocator had no frame for the queue.
    OutOfFrames,
    /// Queue or status memory could not be accessed.
    Mem(MemError),
    /// A register operation failed.
    Unit(UnitError),
    /// A descriptor could not be encoded.
    Descriptor(DescError),
    /// The unit reported a queue error; the queue has been recovered.
    Queue(QueueFault),
    /// A flush configuration: the batch is larger than the queue holds.
    BatchTooLarge {
        /// The batch configured.
        batch: usize,
        /// The unmaps the queue holds.
        capacity: usize,
    },
    /// A flush configuration: a deferred or asynchronous batch of zero
    /// unmaps.
    EmptyBatch,
    /// A flush configuration: storage of no capacity.
    NoCapacity,
    /// A flush configuration: a deadline with a clock that cannot tell time
    /// ([`NoClock`]), which would never fire.
    DeadlineWithoutClock,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueFull => f.write_str("invalidation queue full"),
            Error::Timeout => f.write_str("invalidation did not complete in time"),
            Error::Unsupported(req) => write!(f, "the unit cannot perform {req:?}"),
            Error::OutOfFrames => f.write_str("no frame for the invalidation queue"),
            Error::Mem(e) => write!(f, "queue memory: {e}"),
            Error::Unit(e) => write!(f, "remapping unit: {e}"),
            Error::Descriptor(e) => write!(f, "descriptor: {e}"),
            Error::Queue(q) => write!(f, "queue error at slot {}: {:?}", q.index, q.error),
            Error::BatchTooLarge { batch, capacity } => {
                write!(f, "a batch of {batch} unmaps exceeds the flush queue's {capacity}")
            }
            Error::EmptyBatch => f.write_str("a batch of zero unmaps"),
            Error::NoCapacity => f.write_str("a flush queue of no capacity"),
            Error::DeadlineWithoutClock => {
                f.write_str("a deadline needs a clock that tells time (NoClock does not)")
            }
        }
    }
}

impl core::error::Error for Error {}

/// This crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
