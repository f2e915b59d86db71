//! Leases: an allocation held by value. [`IovaTree::alloc`] and
//! [`CpuHandle::alloc`] hand out an [`IovaLease`] rather than a bare range.
//! It is neither `Copy` nor `Clone`, and freeing it consumes it, so a double
//! free does not compile and the free path needs no check that the range is
//! live: with the magazine cache that makes a free a plain magazine push,
//! without an atomic read-modify-write.
//!
//! A caller that can keep only an address (an OS whose unmap is given an
//! IOVA, not a handle) turns the lease into an [`IovaRange`] with
//! `into_range` and later gives the range back through `free_range`, which
//! checks it: double and foreign frees of ranges are typed errors.
//!
//! A lease names its issuer, so giving it to another allocator instance is
//! a typed error ([`AllocError::ForeignLease`]) rather than a corruption.
//!
//! A lease is 12 bytes (the range packed in one word, and the issuer): a
//! driver's table of a million live leases takes 12 MiB.
//!
//! [`IovaTree::alloc`]: crate::IovaTree::alloc
//! [`CpuHandle::alloc`]: crate::CpuHandle::alloc
//! [`AllocError::ForeignLease`]: crate::AllocError::ForeignLease

use core::num::NonZeroU32;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::range::{IovaRange, PackedRange};

/// Which allocator instance issued a lease: a number drawn once per
/// instance from a counter, so no two of the first 2^32 - 1 instances of a
/// program share it (later ones all get the last number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Issuer(NonZeroU32);

/// The last issuer handed out (0: none yet).
static LAST_ISSUED: AtomicU32 = AtomicU32::new(0);

impl Issuer {
    /// A new issuer, distinct from every other one until the counter runs
    /// out.
    pub(crate) fn fresh() -> Self {
        let next = |n: u32| Some(n.saturating_add(1));
        // The closure never refuses, so this is always `Ok(previous)`.
        let previous = LAST_ISSUED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, next);
        Self(NonZeroU32::MIN.saturating_add(previous.unwrap_or_else(|n| n)))
    }
}

/// An issuer assigned on first use, so that `const fn` constructors (an
/// allocator in a `static`) need not draw one.
#[derive(Debug)]
pub(crate) struct IssuerCell(AtomicU32);

impl IssuerCell {
    /// No issuer yet.
    pub(crate) const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// The issuer, drawn on the first call.
    pub(crate) fn get(&self) -> Issuer {
        if let Some(id) = NonZeroU32::new(self.0.load(Ordering::Relaxed)) {
            return Issuer(id);
        }
        let fresh = Issuer::fresh();
        match self.0.compare_exchange(0, fresh.0.get(), Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => fresh,
            // Another CPU drew one first; its number is never zero.
            Err(won) => NonZeroU32::new(won).map_or(fresh, Issuer),
        }
    }
}

/// A live allocation, held by value: what `alloc` returns. Free it by
/// value (`free(lease)`), or turn it into a plain [`IovaRange`] with
/// `into_range` to free by address later.
///
/// Not `Copy`, not `Clone`: a lease is freed at most once, which the
/// compiler checks.
///
/// ```compile_fail,E0382
/// use iova_alloc::{FixedIovaCache, Window};
/// use vtd_regs::Iova;
///
/// let cache = FixedIovaCache::<64, 1, 64>::new_fixed(Window::from_pages(1, 63)?);
/// let mut cpu = cache.handle();
/// let lease = cpu.alloc(1, Iova::new(u64::MAX))?;
/// cpu.free(lease)?;
/// cpu.free(lease)?; // the lease was moved into the first free
/// # Ok::<(), iova_alloc::AllocError>(())
/// ```
#[must_use = "a lease that is dropped leaks its IOVA range"]
#[derive(Debug)]
#[repr(C, packed(4))]
pub struct IovaLease {
    range: PackedRange,
    issuer: Issuer,
}

impl IovaLease {
    pub(crate) const fn new(range: PackedRange, issuer: Issuer) -> Self {
        Self { range, issuer }
    }

    /// The leased range: where to map the buffer.
    #[inline]
    pub const fn range(&self) -> IovaRange {
        let packed = self.range;
        packed.range()
    }

    /// The leased range, packed.
    #[inline]
    pub(crate) const fn packed(&self) -> PackedRange {
        self.range
    }

    /// Whether `issuer` issued this lease.
    #[inline]
    pub(crate) fn is_from(&self, issuer: Issuer) -> bool {
        let own = self.issuer;
        own == issuer
    }
}

// 12 bytes: a million leases fit in a 12 MiB table.
const _: () = assert!(size_of::<IovaLease>() == 12);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_distinct_and_stable() {
        let (a, b) = (Issuer::fresh(), Issuer::fresh());
        assert_ne!(a, b);
        let cell = IssuerCell::new();
        let first = cell.get();
        assert_eq!(cell.get(), first);
        assert!(first != a && first != b);
    }
}
