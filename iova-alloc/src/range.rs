//! Typed IOVA ranges and windows, in 4 KiB page units.
//!
//! VT-d translates IOVAs at 4 KiB granularity (VT-d §3.7, second-level
//! translation), so the allocator hands out and tracks whole pages. IOVAs
//! are at most 64 bits wide, so page numbers are below 2^52.

use vtd_regs::{Iova, PAGE_SHIFT};

use crate::{AllocError, Result};

/// One more than the largest page number of a 64-bit IOVA.
pub(crate) const PFN_END: u64 = 1 << (64 - PAGE_SHIFT);

/// A contiguous range of whole IOVA pages: a start page and a page count
/// (never zero). What the allocator hands out, frees and reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IovaRange {
    start: u64,
    pages: u64,
}

impl IovaRange {
    /// The range of `pages` pages starting at the page-aligned `start`.
    ///
    /// # Errors
    /// [`AllocError::Misaligned`] if `start` is not page-aligned,
    /// [`AllocError::Empty`] for zero pages, [`AllocError::OutOfWindow`] if
    /// the range would pass the end of the 64-bit IOVA space.
    pub const fn new(start: Iova, pages: u64) -> Result<Self> {
        if start.page_offset() != 0 {
            return Err(AllocError::Misaligned);
        }
        Self::from_pages(start.page_number(), pages)
    }

    /// The range of `pages` pages starting at page number `start_page`.
    ///
    /// # Errors
    /// [`AllocError::Empty`] for zero pages, [`AllocError::OutOfWindow`] if
    /// the range would pass the end of the 64-bit IOVA space.
    pub const fn from_pages(start_page: u64, pages: u64) -> Result<Self> {
        if pages == 0 {
            return Err(AllocError::Empty);
        }
        match start_page.checked_add(pages) {
            Some(end) if end <= PFN_END => Ok(Self { start: start_page, pages }),
            _ => Err(AllocError::OutOfWindow),
        }
    }

    /// Builds a range the allocator already validated (`start + pages <= PFN_END`).
    pub(crate) const fn from_parts(start: u64, pages: u64) -> Self {
        Self { start, pages }
    }

    /// The first IOVA of the range (page-aligned).
    pub const fn start(self) -> Iova {
        Iova::new(self.start << PAGE_SHIFT)
    }

    /// The page number of the first page.
    pub const fn start_page(self) -> u64 {
        self.start
    }

    /// The number of pages (at least one).
    pub const fn pages(self) -> u64 {
        self.pages
    }

    /// The page number of the last page (inclusive).
    pub const fn last_page(self) -> u64 {
        self.start + self.pages - 1
    }

    /// The last byte address of the range (inclusive).
    pub const fn last(self) -> Iova {
        Iova::new((self.last_page() << PAGE_SHIFT) | ((1 << PAGE_SHIFT) - 1))
    }

    /// The length in bytes, or `None` if it does not fit 64 bits (only the
    /// whole 64-bit space does not).
    pub const fn len_bytes(self) -> Option<u64> {
        self.pages.checked_mul(1 << PAGE_SHIFT)
    }

    /// Whether `iova` lies inside the range.
    pub const fn contains(self, iova: Iova) -> bool {
        let pfn = iova.page_number();
        pfn >= self.start && pfn <= self.last_page()
    }

    /// Whether the two ranges share a page.
    pub const fn overlaps(self, other: IovaRange) -> bool {
        self.start <= other.last_page() && other.start <= self.last_page()
    }
}

/// The IOVA window an allocator manages: pages `base..=limit`, both
/// inclusive (Linux's `start_pfn` and the domain's address width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    base: u64,
    limit: u64,
}

impl Window {
    /// The window from the page-aligned `base` up to and including the byte
    /// `last`, which must end a page (e.g. `0xFFFF_FFFF` for a 32-bit window,
    /// `(1 << 48) - 1` for a 4-level table's 48-bit address width).
    ///
    /// # Errors
    /// [`AllocError::Misaligned`] if `base` is not page-aligned or `last`
    /// does not end a page, [`AllocError::OutOfWindow`] if `last < base`.
    pub const fn new(base: Iova, last: Iova) -> Result<Self> {
        if base.page_offset() != 0 || last.page_offset() != (1 << PAGE_SHIFT) - 1 {
            return Err(AllocError::Misaligned);
        }
        Self::from_pages(base.page_number(), last.page_number())
    }

    /// The window of page numbers `base..=limit`.
    ///
    /// # Errors
    /// [`AllocError::OutOfWindow`] if `limit < base` or `limit` is not a page
    /// number of a 64-bit IOVA.
    pub const fn from_pages(base: u64, limit: u64) -> Result<Self> {
        if limit < base || limit >= PFN_END {
            return Err(AllocError::OutOfWindow);
        }
        Ok(Self { base, limit })
    }

    /// The first page number of the window.
    pub const fn base(self) -> u64 {
        self.base
    }

    /// The last page number of the window (inclusive).
    pub const fn limit(self) -> u64 {
        self.limit
    }

    /// Whether the whole `range` lies inside the window.
    pub const fn contains(self, range: IovaRange) -> bool {
        range.start_page() >= self.base && range.last_page() <= self.limit
    }

    /// The last page usable under a device's DMA limit: the highest page
    /// that lies entirely at or below the byte address `dma_limit` (a DMA
    /// mask such as `0xFFFF_FFFF`), capped at the window's limit. `None` if
    /// no page of the window qualifies.
    pub const fn last_page_below(self, dma_limit: Iova) -> Option<u64> {
        let pfn = if dma_limit.page_offset() == (1 << PAGE_SHIFT) - 1 {
            dma_limit.page_number()
        } else if dma_limit.page_number() == 0 {
            return None;
        } else {
            dma_limit.page_number() - 1
        };
        let top = if pfn < self.limit { pfn } else { self.limit };
        if top < self.base { None } else { Some(top) }
    }
}

/// An allocated range in one word, as a lease and a magazine keep it: the
/// start page with `pages - 1` in its low bits, which the alignment of an
/// allocation (its size rounded up to a power of two, 2^order) leaves zero,
/// and the order above the 52 bits of a page number. Of one order, packed
/// ranges order as their start pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PackedRange(u64);

/// Where a packed range keeps its order.
const ORDER_SHIFT: u32 = 64 - PAGE_SHIFT;

impl PackedRange {
    /// Above every packed range.
    pub(crate) const MAX: Self = Self(u64::MAX);

    /// Packs `range`, whose start must be aligned to its size rounded up to
    /// a power of two.
    pub(crate) const fn new(range: IovaRange) -> Self {
        let order = order_of(range.pages);
        debug_assert!(range.start & ((1 << order) - 1) == 0, "an allocation is aligned");
        Self(range.start | (range.pages - 1) | (order as u64) << ORDER_SHIFT)
    }

    /// Packs the range of 2^`order` pages at the 2^`order`-aligned
    /// `start_page`.
    pub(crate) const fn of_order(start_page: u64, order: u32) -> Self {
        Self::new(IovaRange::from_parts(start_page, 1 << order))
    }

    /// The order of the range: log2 of its page count, rounded up.
    #[inline]
    pub(crate) const fn order(self) -> u32 {
        (self.0 >> ORDER_SHIFT) as u32
    }

    /// The range.
    #[inline]
    pub(crate) const fn range(self) -> IovaRange {
        let low = self.0 & (PFN_END - 1);
        let below_alignment = (1 << self.order()) - 1;
        IovaRange::from_parts(low & !below_alignment, (low & below_alignment) + 1)
    }
}

/// The order (log2, rounded up) of a page count: the alignment, in pages,
/// that a size-aligned allocation of `pages` pages gets.
pub(crate) const fn order_of(pages: u64) -> u32 {
    if pages <= 1 { 0 } else { 64 - (pages - 1).leading_zeros() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_accessors() {
        let r = IovaRange::new(Iova::new(0x1000_0000), 4).unwrap();
        assert_eq!(r.start_page(), 0x1_0000);
        assert_eq!(r.last_page(), 0x1_0003);
        assert_eq!(r.last(), Iova::new(0x1000_3fff));
        assert!(r.contains(Iova::new(0x1000_3fff)));
        assert!(!r.contains(Iova::new(0x1000_4000)));
        assert_eq!(r.len_bytes(), Some(0x4000));
        assert_eq!(IovaRange::new(Iova::new(0x1001), 1), Err(AllocError::Misaligned));
        assert_eq!(IovaRange::from_pages(5, 0), Err(AllocError::Empty));
        assert_eq!(IovaRange::from_pages(PFN_END - 1, 2), Err(AllocError::OutOfWindow));
        assert!(r.overlaps(IovaRange::from_pages(0x1_0003, 9).unwrap()));
        assert!(!r.overlaps(IovaRange::from_pages(0x1_0004, 9).unwrap()));
    }

    #[test]
    fn window_and_dma_limit() {
        let w = Window::new(Iova::new(0x1000), Iova::new((1 << 39) - 1)).unwrap();
        assert_eq!((w.base(), w.limit()), (1, (1 << 27) - 1));
        assert_eq!(w.last_page_below(Iova::new(0xFFFF_FFFF)), Some(0xF_FFFF));
        assert_eq!(w.last_page_below(Iova::new(0x1_0000_0000)), Some(0xF_FFFF));
        assert_eq!(w.last_page_below(Iova::new(u64::MAX)), Some((1 << 27) - 1));
        assert_eq!(w.last_page_below(Iova::new(0x1fff)), Some(1));
        assert_eq!(w.last_page_below(Iova::new(0xfff)), None);
        assert_eq!(Window::new(Iova::new(0), Iova::new(0x1000)), Err(AllocError::Misaligned));
        assert_eq!(Window::from_pages(3, 2), Err(AllocError::OutOfWindow));
    }

    #[test]
    fn packed_ranges_round_trip_and_order_by_start() {
        for (start, pages) in [(0, 1), (7, 1), (8, 3), (64, 33), (1 << 40, 1 << 40), (0, PFN_END)] {
            let r = IovaRange::from_pages(start, pages).unwrap();
            assert_eq!(PackedRange::new(r).range(), r);
            assert_eq!(PackedRange::new(r).order(), order_of(pages));
        }
        let (a, b) = (PackedRange::of_order(64, 3), PackedRange::of_order(72, 3));
        assert!(a < b && b < PackedRange::MAX);
        assert_eq!(b.range(), IovaRange::from_pages(72, 8).unwrap());
    }

    #[test]
    fn orders() {
        assert_eq!([1, 2, 3, 4, 5, 32, 33].map(order_of), [0, 1, 2, 2, 3, 5, 6]);
    }
}
