//! Which cached-size allocations are out with a caller: one atomic byte per
//! page, so that a free through any [`CpuHandle`] tells a live range from a
//! double or foreign free without the shared lock.
//!
//! The byte of a range's first page holds `order + 1` while the range (of
//! 2^order pages) is live, and 0 otherwise. Only the first page of a live
//! range is ever non-zero, and ranges do not overlap, so one byte per page
//! serves every size class. An alloc writes its byte with a plain store: the
//! range is the allocating handle's alone at that point. A free
//! compare-exchanges `order + 1` to 0: of two frees of one range that race
//! on two CPUs exactly one wins, and a free of the wrong size or of a range
//! that is not live changes nothing. That one atomic read-modify-write is the
//! whole price of typed double-free errors on the fast path.
//!
//! The map covers the top `span` pages of the window (where top-down
//! allocation puts ranges); ranges below it are never cached and are freed
//! straight to the tree. The bytes of live ranges sit together at the top,
//! which keeps the fast path's accesses in cache even with a million live
//! ranges.
//!
//! [`CpuHandle`]: crate::CpuHandle

use core::sync::atomic::{AtomicU8, Ordering};

use crate::range::Window;

/// The outcome of returning a cached-size range to the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// It was live; it is now free (cached).
    Taken,
    /// It is tracked but was not live with this size: a double or foreign free.
    NotLive,
    /// The map does not cover it; the tree decides.
    Untracked,
}

/// The live bytes over the top of a window.
#[derive(Debug)]
pub(crate) struct LiveMap<B> {
    bytes: B,
    /// First page covered.
    base: u64,
}

impl<B> LiveMap<B> {
    /// A map over the top `span` pages of `window`, `span` being the length
    /// of `bytes`.
    pub(crate) const fn with_span(window: Window, bytes: B, span: u64) -> Self {
        let top = window.limit() + 1;
        let base = if top - window.base() > span { top - span } else { window.base() };
        Self { bytes, base }
    }
}

impl<B: AsRef<[AtomicU8]>> LiveMap<B> {
    /// A map over the top `bytes.len()` pages of `window`. The bytes must be
    /// zero.
    pub(crate) fn new(window: Window, bytes: B) -> Self {
        let span = bytes.as_ref().len() as u64;
        Self::with_span(window, bytes, span)
    }

    /// The byte of page `pfn`, if covered.
    #[inline]
    fn byte(&self, pfn: u64) -> Option<&AtomicU8> {
        let off = usize::try_from(pfn.wrapping_sub(self.base)).ok()?;
        self.bytes.as_ref().get(off)
    }

    /// Marks the range of order `order` at `pfn` live (it is leaving the
    /// allocator for a caller).
    #[inline]
    pub(crate) fn mark(&self, pfn: u64, order: u8) {
        if let Some(byte) = self.byte(pfn) {
            debug_assert_eq!(
                byte.load(Ordering::Relaxed),
                0,
                "a cached range was handed out twice"
            );
            byte.store(order + 1, Ordering::Relaxed);
        }
    }

    /// Marks the range of order `order` at `pfn` free (it is coming back
    /// from a caller), if it was live with that order.
    #[inline]
    pub(crate) fn take(&self, pfn: u64, order: u8) -> Take {
        match self.byte(pfn) {
            None => Take::Untracked,
            Some(byte) => {
                match byte.compare_exchange(order + 1, 0, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => Take::Taken,
                    Err(_) => Take::NotLive,
                }
            }
        }
    }

    /// Whether the range of order `order` at `pfn` is live, or `None` if the
    /// map does not cover it.
    pub(crate) fn is_live(&self, pfn: u64, order: u8) -> Option<bool> {
        self.byte(pfn).map(|byte| byte.load(Ordering::Acquire) == order + 1)
    }
}
