//! What a shadow domain has installed in its host domain: disjoint extents
//! of guest IOVA pages, each mapped onto contiguous guest-physical pages
//! with one permission, keyed by their first IOVA page. Each extent is what
//! one backend map installed (or the part of it still mapped).
//!
//! With `alloc` the extents live in a `BTreeMap` and grow without bound
//! (the guest's page quota is the only limit); without it, in a sorted
//! array of [`EXTENTS`] entries, and an insertion beyond that fails (the
//! vIOMMU leaves the range unmapped and counts it, as it does a range
//! beyond the quota).

use vtd_tables::Perm;

/// How many extents a shadow domain holds without `alloc`.
pub const EXTENTS: usize = 2048;

/// Guest IOVA pages `[start, start + pages)` mapped onto guest pages
/// `[gpa, gpa + pages)` with `perm`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Extent {
    pub(crate) start: u64,
    pub(crate) pages: u64,
    pub(crate) gpa: u64,
    pub(crate) perm: Perm,
}

impl Extent {
    /// The first IOVA page after it.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.pages
    }

    /// The part of it in IOVA pages `[from, to)` (within it).
    pub(crate) fn part(&self, from: u64, to: u64) -> Extent {
        Extent {
            start: from,
            pages: to - from,
            gpa: self.gpa + (from - self.start),
            perm: self.perm,
        }
    }
}

/// The store is full (only [`ArrayExtents`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Full;

/// The extents of one shadow domain.
#[cfg(feature = "alloc")]
pub(crate) type Extents = TreeExtents;
/// The extents of one shadow domain.
#[cfg(not(feature = "alloc"))]
pub(crate) type Extents = ArrayExtents;

/// Extents in a `BTreeMap`, without a bound.
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub(crate) struct TreeExtents {
    map: alloc::collections::BTreeMap<u64, Extent>,
}

#[cfg(feature = "alloc")]
impl TreeExtents {
    /// The extent that contains IOVA page `page` or, if none does, the
    /// first one above it.
    // Inlined: returned through memory, the extent was written word by word
    // and copied out with 16-byte loads, which stall (store forwarding).
    #[inline(always)]
    pub(crate) fn at_or_after(&self, page: u64) -> Option<Extent> {
        if let Some((_, e)) = self.map.range(..=page).next_back()
            && e.end() > page
        {
            return Some(*e);
        }
        use core::ops::Bound::{Excluded, Unbounded};
        self.map.range((Excluded(page), Unbounded)).next().map(|(_, e)| *e)
    }

    /// Records `e`, which overlaps no extent.
    pub(crate) fn insert(&mut self, e: Extent) -> Result<(), Full> {
        self.map.insert(e.start, e);
        Ok(())
    }

    /// Whether one more extent fits: always.
    pub(crate) fn has_room(&self) -> bool {
        true
    }

    /// Forgets the extent starting at IOVA page `start`.
    pub(crate) fn remove(&mut self, start: u64) {
        self.map.remove(&start);
    }

    /// Every extent, in IOVA order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Extent> {
        self.map.values()
    }
}

/// Extents in a sorted array of [`EXTENTS`] entries.
#[cfg(any(test, not(feature = "alloc")))]
#[derive(Debug, Default)]
pub(crate) struct ArrayExtents {
    sorted: heapless::Vec<Extent, EXTENTS>,
}

#[cfg(any(test, not(feature = "alloc")))]
impl ArrayExtents {
    /// See [`TreeExtents::from_page`].
    pub(crate) fn at_or_after(&self, page: u64) -> Option<Extent> {
        let i = self.sorted.partition_point(|e| e.start <= page);
        match i.checked_sub(1).map(|j| self.sorted[j]) {
            Some(e) if e.end() > page => Some(e),
            _ => self.sorted.get(i).copied(),
        }
    }

    /// Records `e`, which overlaps no extent; `Err` when full.
    pub(crate) fn insert(&mut self, e: Extent) -> Result<(), Full> {
        let i = self.sorted.partition_point(|x| x.start < e.start);
        self.sorted.insert(i, e).map_err(|_| Full)
    }

    /// Whether one more extent fits.
    pub(crate) fn has_room(&self) -> bool {
        !self.sorted.is_full()
    }

    /// See [`TreeExtents::remove`].
    pub(crate) fn remove(&mut self, start: u64) {
        if let Ok(i) = self.sorted.binary_search_by_key(&start, |e| e.start) {
            self.sorted.remove(i);
        }
    }

    /// See [`TreeExtents::iter`].
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Extent> {
        self.sorted.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(start: u64, pages: u64) -> Extent {
        Extent { start, pages, gpa: start + 100, perm: Perm::READ }
    }

    macro_rules! lookups {
        ($store:ty) => {{
            let mut x = <$store>::default();
            assert_eq!(x.at_or_after(0), None);
            x.insert(e(10, 5)).unwrap();
            x.insert(e(2, 3)).unwrap();
            x.insert(e(20, 1)).unwrap();
            assert_eq!(x.at_or_after(0), Some(e(2, 3)));
            assert_eq!(x.at_or_after(4), Some(e(2, 3)));
            assert_eq!(x.at_or_after(5), Some(e(10, 5)));
            assert_eq!(x.at_or_after(14), Some(e(10, 5)));
            assert_eq!(x.at_or_after(15), Some(e(20, 1)));
            assert_eq!(x.at_or_after(21), None);
            x.remove(10);
            assert_eq!(x.at_or_after(5), Some(e(20, 1)));
            assert_eq!(x.iter().map(|e| e.start).collect::<std::vec::Vec<_>>(), [2, 20]);
            assert!(x.has_room());
        }};
    }

    #[test]
    fn lookups_find_the_containing_or_next_extent() {
        #[cfg(feature = "alloc")]
        lookups!(TreeExtents);
        lookups!(ArrayExtents);
        let part = Extent { start: 12, pages: 2, gpa: 112, perm: Perm::READ };
        assert_eq!(e(10, 5).part(12, 14), part);
    }

    #[test]
    fn the_array_store_reports_when_it_is_full() {
        let mut x = ArrayExtents::default();
        for i in 0..EXTENTS as u64 {
            x.insert(e(2 * i, 1)).unwrap();
        }
        assert!(!x.has_room());
        assert_eq!(x.insert(e(1, 1)), Err(Full));
        x.remove(0);
        assert!(x.has_room());
        x.insert(e(1, 1)).unwrap();
        assert_eq!(x.at_or_after(1), Some(e(1, 1)));
    }
}
