//! Which cached-size allocations are held by address: one atomic byte per
//! page, so that a free by address through any [`CpuHandle`] tells a live
//! range from a double or foreign free without the shared lock.
//!
//! The byte of a range's first page holds `order + 1` while the range (of
//! 2^order pages) is held as a plain range, and 0 otherwise: free, cached in
//! a magazine, or held as an [`IovaLease`] (a lease is freed by value, so it
//! needs no byte, and its range's 0 makes a free by address refuse it). Only
//! the first page of a live range is ever non-zero, and ranges do not
//! overlap, so one byte per page serves every size class.
//!
//! Turning a lease into a range writes the byte with a plain store: the
//! range is the lease holder's alone at that point. A free by address
//! compare-exchanges `order + 1` to 0: of two frees of one range that race
//! on two CPUs exactly one wins, and a free of the wrong size, of a leased
//! range or of a range that is not live changes nothing. That one atomic
//! read-modify-write is the whole price of typed double-free errors on the
//! address path; the lease path touches no byte.
//!
//! The map covers the top `span` pages of the window (where top-down
//! allocation puts ranges); ranges below it are freed by address straight
//! to the tree, which records whether each range is leased or held by
//! address. The bytes of live ranges sit together at the top, which keeps
//! the accesses in cache even with a million live ranges.
//!
//! [`CpuHandle`]: crate::CpuHandle
//! [`IovaLease`]: crate::IovaLease

use core::sync::atomic::{AtomicU8, Ordering};

use crate::range::Window;

/// The byte of a page that starts no range held by address.
const FREE: u8 = 0;

/// The outcome of returning a cached-size range to the map by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// It was live; it is now free (cached).
    Taken,
    /// It is tracked but was not held by address with this size: a double or
    /// foreign free, or the range of a lease.
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

    /// Marks the leased range of order `order` at `pfn` as held by address;
    /// false if the map does not cover it.
    #[inline]
    pub(crate) fn mark(&self, pfn: u64, order: u8) -> bool {
        let Some(byte) = self.byte(pfn) else { return false };
        debug_assert_eq!(byte.load(Ordering::Relaxed), FREE, "a leased range had a live byte");
        byte.store(order + 1, Ordering::Relaxed);
        true
    }

    /// Marks the range of order `order` at `pfn` free (it is coming back
    /// from a caller by address), if it was held by address with that
    /// order.
    #[inline]
    pub(crate) fn take(&self, pfn: u64, order: u8) -> Take {
        match self.byte(pfn) {
            None => Take::Untracked,
            Some(byte) => {
                match byte.compare_exchange(order + 1, FREE, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => Take::Taken,
                    Err(_) => Take::NotLive,
                }
            }
        }
    }
}
