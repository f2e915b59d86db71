//! Per-ring contiguous IOVA allocation, as "Fast and Safe IO Memory
//! Protection" (SOSP 2024) proposes: a device queue (a NIC's receive ring,
//! an NVMe submission queue) takes one contiguous IOVA region up front and
//! hands its buffers out of it in order. Buffers of one batch then lie side
//! by side, so the batch's unmaps invalidate one range (a few
//! page-selective descriptors, VT-d §6.5.2.3) instead of one per buffer or
//! a domain-selective one, and the allocator's fast path is a bump pointer.
//!
//! [`IovaRing`] is one ring: a region, and at most `N` live allocations,
//! oldest first, without a heap. A buffer is placed after the newest live
//! one, wrapping to the region's start once the oldest ones are freed (a
//! ring's buffers complete in order); a buffer freed out of order is
//! remembered and its space is reused once every older one is freed too.
//! [`IovaRings`] is `R` rings side by side behind one lock each, one per
//! queue (or CPU): any CPU may free any ring's lease.
//!
//! As with every allocator here, a range is given back only after the IOTLB
//! invalidation covering its unmapping has completed.

use spin::Mutex;
use vtd_regs::Iova;

use crate::lease::Issuer;
use crate::{AllocError, IovaRange, Result};

/// A live allocation of a ring.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// First page, counted from the region's start.
    offset: u64,
    freed: bool,
}

/// An allocation of an [`IovaRing`], held by value like an
/// [`IovaLease`](crate::IovaLease): not `Copy`, not `Clone`, freed once.
#[must_use = "a lease that is dropped leaks its IOVA range until the ring is dropped"]
#[derive(Debug)]
pub struct RingLease {
    range: IovaRange,
    slot: u32,
    issuer: Issuer,
}

impl RingLease {
    /// The leased range: where to map the buffer.
    #[inline]
    pub const fn range(&self) -> IovaRange {
        self.range
    }
}

/// One ring's contiguous IOVA region, handed out in order to at most `N`
/// live allocations (a ring of `N` descriptors needs `N`).
///
/// ```
/// use iova_alloc::{AllocError, IovaRange, IovaRing};
/// use vtd_regs::Iova;
///
/// let region = IovaRange::new(Iova::new(0x10_0000), 4)?;
/// let mut ring = IovaRing::<8>::new(region);
/// let limit = Iova::new(u64::MAX);
/// let a = ring.alloc(1, limit)?;
/// let b = ring.alloc(2, limit)?;
/// assert_eq!(b.range().start(), Iova::new(0x10_1000)); // right after `a`
/// assert_eq!(ring.alloc(2, limit).err(), Some(AllocError::Exhausted));
/// ring.free(a)?;
/// let c = ring.alloc(1, limit)?; // the last page: `a`'s waits its turn
/// assert_eq!(c.range().start(), Iova::new(0x10_3000));
/// ring.free(b)?;
/// assert_eq!(ring.alloc(2, limit)?.range().start(), Iova::new(0x10_0000)); // wrapped
/// # Ok::<(), AllocError>(())
/// ```
///
/// A capacity of zero does not build:
///
/// ```compile_fail,E0080
/// use iova_alloc::{IovaRange, IovaRing};
/// let ring = IovaRing::<0>::new(IovaRange::from_pages(1, 1).unwrap());
/// ```
#[derive(Debug)]
pub struct IovaRing<const N: usize> {
    region: IovaRange,
    issuer: Issuer,
    /// Live allocations in a circle of `N` slots: `len` of them from `head`.
    slots: [Slot; N],
    head: usize,
    len: usize,
    /// Where the next allocation goes, in pages from the region's start.
    next: u64,
}

impl<const N: usize> IovaRing<N> {
    /// A ring handing out `region` (which its owner took from the domain's
    /// allocator and keeps while the ring lives).
    pub fn new(region: IovaRange) -> Self {
        const { assert!(N > 0, "IovaRing: the capacity N must be at least 1") };
        IovaRing {
            region,
            issuer: Issuer::fresh(),
            slots: [Slot::default(); N],
            head: 0,
            len: 0,
            next: 0,
        }
    }

    /// The ring's region.
    pub const fn region(&self) -> IovaRange {
        self.region
    }

    /// Allocations not freed yet, or freed out of order and waiting for an
    /// older one.
    pub const fn live(&self) -> usize {
        self.len
    }

    /// `pages` pages right after the newest live allocation (or at the
    /// region's start, wrapping), ending below `limit`.
    ///
    /// # Errors
    /// [`AllocError::Empty`] for zero pages, [`AllocError::OutOfNodes`] if
    /// `N` allocations are live, [`AllocError::Exhausted`] if the free part
    /// of the region after the newest allocation, or before the oldest, is
    /// too short, or the range would not end below `limit`.
    pub fn alloc(&mut self, pages: u64, limit: Iova) -> Result<RingLease> {
        if pages == 0 {
            return Err(AllocError::Empty);
        }
        if self.len == N {
            return Err(AllocError::OutOfNodes);
        }
        let size = self.region.pages();
        let offset = match self.slots.get(self.head) {
            _ if self.len == 0 => (pages <= size).then_some(0),
            // Not wrapped: room after the newest, else before the oldest.
            Some(oldest) if self.next > oldest.offset => {
                if pages <= size - self.next {
                    Some(self.next)
                } else {
                    (pages <= oldest.offset).then_some(0)
                }
            }
            // Wrapped: room between the newest and the oldest.
            Some(oldest) => (pages <= oldest.offset - self.next).then_some(self.next),
            None => None,
        }
        .ok_or(AllocError::Exhausted)?;
        let range = IovaRange::from_parts(self.region.start_page() + offset, pages);
        if range.last().as_u64() >= limit.as_u64() {
            return Err(AllocError::Exhausted);
        }
        let slot = (self.head + self.len) % N;
        let entry = self.slots.get_mut(slot).ok_or(AllocError::OutOfNodes)?;
        *entry = Slot { offset, freed: false };
        self.len += 1;
        self.next = offset + pages;
        Ok(RingLease { range, slot: slot as u32, issuer: self.issuer })
    }

    /// Gives back a lease of this ring; its space is reused once every
    /// older allocation is freed too.
    ///
    /// # Errors
    /// [`AllocError::ForeignLease`] for another ring's lease (dropped: its
    /// range stays allocated in its own ring).
    pub fn free(&mut self, lease: RingLease) -> Result<()> {
        if lease.issuer != self.issuer {
            return Err(AllocError::ForeignLease);
        }
        let at = lease.slot as usize;
        let live = (at + N - self.head) % N < self.len;
        let offset = lease.range.start_page().checked_sub(self.region.start_page());
        match self.slots.get_mut(at) {
            Some(s) if live && !s.freed && Some(s.offset) == offset => s.freed = true,
            _ => return Err(AllocError::NotAllocated),
        }
        while self.len > 0 && self.slots.get(self.head).is_some_and(|s| s.freed) {
            self.head = (self.head + 1) % N;
            self.len -= 1;
        }
        if self.len == 0 {
            (self.head, self.next) = (0, 0);
        }
        Ok(())
    }
}

/// `R` rings of `N` allocations each, side by side in one region, each
/// behind its own lock: ring `i` is queue (or CPU) `i`'s, and only it
/// allocates there, so its lock is contended only by frees from other
/// CPUs. A lease is freed into the ring its range lies in.
#[derive(Debug)]
pub struct IovaRings<const R: usize, const N: usize> {
    rings: [Mutex<IovaRing<N>>; R],
    /// First page of ring 0 and pages per ring.
    base: u64,
    per_ring: u64,
}

impl<const R: usize, const N: usize> IovaRings<R, N> {
    /// `region` split into `R` rings of equal size (the remainder unused).
    ///
    /// # Errors
    /// [`AllocError::Empty`] if `region` has fewer than `R` pages.
    pub fn new(region: IovaRange) -> Result<Self> {
        const { assert!(R > 0, "IovaRings: the ring count R must be at least 1") };
        let per_ring = region.pages() / R as u64;
        let base = region.start_page();
        let mut failed = None;
        let rings = core::array::from_fn(|i| {
            let range = IovaRange::from_pages(base + i as u64 * per_ring, per_ring);
            Mutex::new(IovaRing::new(range.unwrap_or_else(|e| {
                failed = Some(e);
                region
            })))
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(IovaRings { rings, base, per_ring }),
        }
    }

    /// Ring `ring % R`'s handle.
    pub fn handle(&self, ring: usize) -> RingHandle<'_, R, N> {
        RingHandle { rings: self, ring: ring % R }
    }

    /// Gives a lease back to the ring it came from.
    ///
    /// # Errors
    /// As [`IovaRing::free`].
    pub fn free(&self, lease: RingLease) -> Result<()> {
        let index = (lease.range.start_page().saturating_sub(self.base) / self.per_ring) as usize;
        self.rings.get(index).ok_or(AllocError::ForeignLease)?.lock().free(lease)
    }
}

/// One queue's (or CPU's) use of [`IovaRings`]: allocates from its own
/// ring, frees into whichever ring a lease came from.
#[derive(Debug)]
pub struct RingHandle<'a, const R: usize, const N: usize> {
    rings: &'a IovaRings<R, N>,
    ring: usize,
}

impl<const R: usize, const N: usize> RingHandle<'_, R, N> {
    /// As [`IovaRing::alloc`], from this handle's ring.
    ///
    /// # Errors
    /// As [`IovaRing::alloc`].
    pub fn alloc(&mut self, pages: u64, limit: Iova) -> Result<RingLease> {
        let ring = self.rings.rings.get(self.ring).ok_or(AllocError::Exhausted)?;
        ring.lock().alloc(pages, limit)
    }

    /// As [`IovaRings::free`].
    ///
    /// # Errors
    /// As [`IovaRing::free`].
    pub fn free(&mut self, lease: RingLease) -> Result<()> {
        self.rings.free(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const MAX: Iova = Iova::new(u64::MAX);

    #[test]
    fn leases_are_checked() {
        let region = IovaRange::from_pages(16, 8).unwrap();
        let (mut a, mut b) = (IovaRing::<4>::new(region), IovaRing::<4>::new(region));
        let lease = a.alloc(1, MAX).unwrap();
        assert_eq!(b.free(lease), Err(AllocError::ForeignLease));
        assert_eq!(a.alloc(0, MAX).err(), Some(AllocError::Empty));
        assert_eq!(a.alloc(1, Iova::new(17 << 12)).err(), Some(AllocError::Exhausted));
        for _ in 0..3 {
            let _kept = a.alloc(1, MAX).unwrap();
        }
        assert_eq!(a.alloc(1, MAX).err(), Some(AllocError::OutOfNodes));
    }

    #[test]
    fn rings_free_into_the_ring_of_the_lease() {
        let rings = IovaRings::<2, 4>::new(IovaRange::from_pages(100, 9).unwrap()).unwrap();
        let (mut h0, mut h1) = (rings.handle(0), rings.handle(1));
        let a = h0.alloc(4, MAX).unwrap();
        let b = h1.alloc(4, MAX).unwrap();
        assert_eq!((a.range().start_page(), b.range().start_page()), (100, 104));
        h1.free(a).unwrap();
        h0.free(b).unwrap();
        assert_eq!(h0.alloc(4, MAX).unwrap().range().start_page(), 100);
    }

    proptest! {
        /// Against a model (the live ranges, oldest first, those freed out
        /// of order kept until every older one is freed): allocations lie
        /// in the region, never overlap a live one, follow the newest one
        /// contiguously (or start the region), and one is refused only when
        /// neither after the newest nor before the oldest is room; every
        /// free succeeds.
        #[test]
        fn in_order_and_disjoint(ops in prop::collection::vec((any::<bool>(), 1u64..6, any::<prop::sample::Index>()), 1..300)) {
            const BASE: u64 = 1000;
            const SIZE: u64 = 24;
            let mut ring = IovaRing::<8>::new(IovaRange::from_pages(BASE, SIZE).unwrap());
            let mut live: VecDeque<(IovaRange, Option<RingLease>)> = VecDeque::new();
            for (alloc, pages, which) in ops {
                if alloc {
                    let newest = live.back().map(|(r, _)| r.last_page() + 1 - BASE);
                    let oldest = live.front().map(|(r, _)| r.start_page() - BASE);
                    match ring.alloc(pages, MAX) {
                        Ok(lease) => {
                            let r = lease.range();
                            prop_assert!(r.start_page() >= BASE && r.last_page() < BASE + SIZE);
                            prop_assert!(live.iter().all(|(h, _)| !h.overlaps(r)));
                            let at = r.start_page() - BASE;
                            prop_assert!(at == 0 || Some(at) == newest);
                            live.push_back((r, Some(lease)));
                        }
                        Err(AllocError::OutOfNodes) => prop_assert_eq!(live.len(), 8),
                        Err(e) => {
                            prop_assert_eq!(e, AllocError::Exhausted);
                            let (Some(next), Some(tail)) = (newest, oldest) else {
                                return Err(TestCaseError::fail("refused in an empty ring"));
                            };
                            if next > tail {
                                prop_assert!(next + pages > SIZE && pages > tail);
                            } else {
                                prop_assert!(next + pages > tail);
                            }
                        }
                    }
                } else if !live.is_empty() {
                    let i = which.index(live.len());
                    if let Some(lease) = live.get_mut(i).and_then(|(_, l)| l.take()) {
                        prop_assert_eq!(ring.free(lease), Ok(()));
                    }
                    while live.front().is_some_and(|(_, l)| l.is_none()) {
                        live.pop_front();
                    }
                }
                prop_assert_eq!(ring.live(), live.len());
            }
        }
    }
}
