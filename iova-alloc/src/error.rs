//! The one error type of the crate.

use core::fmt;

/// Why an allocator operation failed. Every failure leaves the allocator as
/// it was: a refused free or reserve never corrupts the tree or the caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AllocError {
    /// No size-aligned free range of the requested length lies in the window
    /// below the caller's address limit. Recovers once ranges are freed.
    Exhausted,
    /// An address that must be page-aligned (a range start, a window base) is
    /// not, or a window limit is not the last byte of a page.
    Misaligned,
    /// The range (or window) does not lie inside the allocator's window, or
    /// exceeds the 52-bit page-number space of an IOVA.
    OutOfWindow,
    /// A request or range of zero pages.
    Empty,
    /// The range freed is not a live allocation of this allocator: a double
    /// free, a range never handed out, a different length than was, or a
    /// range still held as a lease (free the lease instead).
    NotAllocated,
    /// The range freed is a reservation; reservations are never freed.
    Reserved,
    /// The lease was issued by another allocator instance. It is dropped;
    /// its range stays allocated in the allocator that issued it.
    ForeignLease,
    /// A reservation would overlap a live (or cached) allocation.
    Overlap,
    /// The fixed-capacity node store is full: no node is left to record one
    /// more range. Freeing ranges recovers.
    OutOfNodes,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocError::Exhausted => "no free IOVA range of that size below the limit",
            AllocError::Misaligned => "address is not page-aligned",
            AllocError::OutOfWindow => "range lies outside the IOVA window",
            AllocError::Empty => "empty range",
            AllocError::NotAllocated => "range is not a live allocation (double or foreign free)",
            AllocError::Reserved => "range is reserved and cannot be freed",
            AllocError::ForeignLease => "lease was issued by another allocator",
            AllocError::Overlap => "reservation overlaps a live allocation",
            AllocError::OutOfNodes => "node store is full",
        })
    }
}

impl core::error::Error for AllocError {}

/// `Result` with [`AllocError`].
pub type Result<T> = core::result::Result<T, AllocError>;
