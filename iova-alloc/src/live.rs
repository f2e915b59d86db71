//! Which cached-size allocations are out with a caller: one atomic bit per
//! aligned block and size class, so that a free through any [`CpuHandle`]
//! can tell a live range from a double or foreign free without the shared
//! lock.
//!
//! The map covers the top `span` pages of the window (where top-down
//! allocation puts the ranges); ranges below it are never cached and are
//! freed straight to the tree. Order `k` has one bit per 2^k-aligned block,
//! so the map costs about two bits per page of span; the bits of live
//! ranges sit together at the top, which keeps the fast path's accesses in
//! cache even with a million live ranges.
//!
//! [`CpuHandle`]: crate::CpuHandle

use core::sync::atomic::{AtomicU64, Ordering};

use crate::cache::CACHED_ORDERS;
use crate::range::Window;

/// Pages of span per word of map: the 63 words of the six orders' regions
/// (32 + 16 + 8 + 4 + 2 + 1) cover 2048 pages.
const PAGES_PER_63_WORDS: u64 = 2048;
/// Alignment of the map's first page: the largest cached block.
const BASE_ALIGN: u64 = 1 << (CACHED_ORDERS - 1);

/// The outcome of returning a cached-size range to the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// It was live; it is now free (cached).
    Taken,
    /// It is tracked but was not live: a double or foreign free.
    NotLive,
    /// The map does not cover it; the tree decides.
    Untracked,
}

/// The per-order live bits over the top of a window.
#[derive(Debug)]
pub(crate) struct LiveMap<B> {
    words: B,
    /// First page covered (aligned to the largest cached block).
    base: u64,
    /// Pages covered.
    span: u64,
    /// Word index of each order's region.
    offsets: [usize; CACHED_ORDERS],
}

impl<B: AsRef<[AtomicU64]>> LiveMap<B> {
    /// A map over the top of `window`, as many pages as `words` can cover
    /// (2048 pages per 63 words). The words must be zero.
    pub(crate) fn new(window: Window, words: B) -> Self {
        let span = (words.as_ref().len() as u64 / 63) * PAGES_PER_63_WORDS;
        let top = (window.limit() + 1).next_multiple_of(BASE_ALIGN);
        let base = top.saturating_sub(span).max(window.base() & !(BASE_ALIGN - 1));
        let mut offsets = [0; CACHED_ORDERS];
        let mut at = 0usize;
        for (order, off) in offsets.iter_mut().enumerate() {
            *off = at;
            at += (span >> (6 + order)) as usize;
        }
        Self { words, base, span, offsets }
    }

    /// Word and bit of the block of order `order` at page `pfn`.
    fn slot(&self, pfn: u64, order: usize) -> Option<(&AtomicU64, u64)> {
        let off = pfn.checked_sub(self.base).filter(|&o| o < self.span)?;
        let bit = off >> order;
        let word = self.offsets.get(order)? + (bit / 64) as usize;
        Some((self.words.as_ref().get(word)?, 1 << (bit % 64)))
    }

    /// Marks the block live (it is leaving the allocator for a caller).
    pub(crate) fn mark(&self, pfn: u64, order: usize) {
        if let Some((word, mask)) = self.slot(pfn, order) {
            let was = word.fetch_or(mask, Ordering::AcqRel);
            debug_assert_eq!(was & mask, 0, "a cached range was handed out twice");
        }
    }

    /// Marks the block free (it is coming back from a caller).
    pub(crate) fn take(&self, pfn: u64, order: usize) -> Take {
        match self.slot(pfn, order) {
            None => Take::Untracked,
            Some((word, mask)) => {
                if word.fetch_and(!mask, Ordering::AcqRel) & mask != 0 {
                    Take::Taken
                } else {
                    Take::NotLive
                }
            }
        }
    }

    /// Whether the block is live, or `None` if the map does not cover it.
    pub(crate) fn is_live(&self, pfn: u64, order: usize) -> Option<bool> {
        self.slot(pfn, order).map(|(word, mask)| word.load(Ordering::Acquire) & mask != 0)
    }
}

/// Words needed to track `pages` pages (rounded up to whole 2048-page units).
#[cfg(feature = "alloc")]
pub(crate) const fn words_for(pages: u64) -> usize {
    (pages.div_ceil(PAGES_PER_63_WORDS) * 63) as usize
}
