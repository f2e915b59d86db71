//! The magazine cache in front of the tree: per-CPU handles that allocate
//! and free small ranges without the shared lock.
//!
//! Design (after Linux's `iova_rcache`, itself after Bonwick and Adams'
//! magazines): ranges of 2^k pages, k in `0..CACHED_ORDERS`, are cached.
//! Each [`CpuHandle`] owns a *loaded* and a *previous* magazine per size
//! class. A free pushes onto the loaded magazine; an alloc pops from it. When
//! the loaded magazine is full (or empty) the handle swaps it with the
//! previous one, and only when both are full (or empty) does it take the
//! shared [`spin::Mutex`] to trade a whole magazine with the depot, or to go
//! to the tree. So at most one lock acquisition in
//! [`MAG_SIZE`](crate::MAG_SIZE) operations of a steady alloc/free mix, and
//! none in the common case.
//!
//! Cached ranges stay allocated in the tree. What tells a live range from a
//! cached one is a map of atomic bytes over the top of the window (one per
//! page, holding the order of the live range that starts there): a free
//! compare-exchanges the range's byte to zero and fails with
//! [`AllocError::NotAllocated`] if it did not hold the range's order, so a
//! double or foreign free is a typed error even when it lands on another
//! CPU's handle, two racing frees of one range cannot both win, and a range
//! can never sit in two magazines.
//!
//! Costs: alloc and free are O(1) on the fast path (a magazine pop or push;
//! a plain byte store on alloc and one compare-exchange on free); the slow
//! path is one tree operation, O(log n). Sizes of more than
//! 2^(`CACHED_ORDERS`-1) pages and ranges below the live map go to the tree
//! directly.

use core::sync::atomic::AtomicU8;

use spin::Mutex;
use vtd_regs::Iova;

use crate::live::{LiveMap, Take};
use crate::magazine::Magazine;
use crate::range::{IovaRange, Window, order_of};
use crate::store::Store;
use crate::tree::{IovaTree, Node};
use crate::{AllocError, Result};

/// Number of cached size classes: orders 0..=5, i.e. 1 to 32 pages (Linux's
/// `IOVA_RANGE_CACHE_MAX_SIZE`).
pub const CACHED_ORDERS: usize = 6;

/// What the lock protects: the tree and the depot of full magazines.
#[derive(Debug)]
struct Shared<S, D> {
    tree: IovaTree<S>,
    depot: [D; CACHED_ORDERS],
    /// Most full magazines the depot keeps per class.
    depot_cap: usize,
}

impl<S: Store<Node>, D: Store<Magazine>> Shared<S, D> {
    /// Frees every entry of `mag` (ranges of order `order`) to the tree.
    fn drain_to_tree(&mut self, mag: &mut Magazine, order: usize) {
        for pfn in mag.drain() {
            let freed = self.tree.free(IovaRange::from_parts(pfn, 1 << order));
            debug_assert!(freed.is_ok(), "a cached range was not allocated in the tree");
        }
    }

    /// Frees every magazine of the depot to the tree.
    fn flush_depot(&mut self) {
        for order in 0..CACHED_ORDERS {
            while let Some(mut mag) = self.depot[order].pop() {
                self.drain_to_tree(&mut mag, order);
            }
        }
    }

    /// Stores a full magazine in the depot, or frees it to the tree if the
    /// depot is full.
    fn deposit(&mut self, mut mag: Magazine, order: usize) {
        if self.depot[order].as_slice().len() < self.depot_cap {
            match self.depot[order].push(mag) {
                Ok(()) => return,
                Err(back) => mag = back,
            }
        }
        self.drain_to_tree(&mut mag, order);
    }
}

/// A range allocator with a magazine cache, shared by several
/// [`CpuHandle`]s (one per CPU in an OS).
///
/// Generic over the tree's node store `S`, the depot store `D` and the live
/// map's bytes `B`; [`FixedIovaCache`] needs no heap, `VecIovaCache` (with
/// the `alloc` feature) grows on the heap.
#[derive(Debug)]
pub struct IovaCache<S, D, B> {
    shared: Mutex<Shared<S, D>>,
    live: LiveMap<B>,
    window: Window,
}

/// A cache of fixed capacity without a heap: up to `NODES` ranges in the
/// tree, `MAGS` full magazines per size class in the depot, and a live map
/// over the top `TRACKED` pages of the window (one byte per page).
pub type FixedIovaCache<const NODES: usize, const MAGS: usize, const TRACKED: usize> =
    IovaCache<heapless::Vec<Node, NODES>, heapless::Vec<Magazine, MAGS>, [AtomicU8; TRACKED]>;

impl<const NODES: usize, const MAGS: usize, const TRACKED: usize>
    FixedIovaCache<NODES, MAGS, TRACKED>
{
    /// An empty cache over `window`, all capacity inline. A `const fn`, so
    /// a unikernel can place the cache in a `static` rather than on a stack:
    ///
    /// ```
    /// use iova_alloc::{FixedIovaCache, Window};
    /// use vtd_regs::Iova;
    ///
    /// const WINDOW: Window = match Window::from_pages(1, (1 << 20) - 1) {
    ///     Ok(w) => w,
    ///     Err(_) => panic!("bad window"),
    /// };
    /// static IOVAS: FixedIovaCache<4096, 8, 16384> = FixedIovaCache::new_fixed(WINDOW);
    ///
    /// let mut cpu = IOVAS.handle();
    /// let r = cpu.alloc(8, Iova::new(u64::MAX))?;
    /// assert_eq!(r.last_page(), (1 << 20) - 1);
    /// cpu.free(r)?;
    /// # Ok::<(), iova_alloc::AllocError>(())
    /// ```
    pub const fn new_fixed(window: Window) -> Self {
        Self {
            shared: Mutex::new(Shared {
                tree: IovaTree::new_fixed(window),
                depot: [const { heapless::Vec::new() }; CACHED_ORDERS],
                depot_cap: MAGS,
            }),
            live: LiveMap::with_span(window, [const { AtomicU8::new(0) }; TRACKED], TRACKED as u64),
            window,
        }
    }
}

/// A heap-backed cache: a growable tree and depot.
#[cfg(feature = "alloc")]
pub type VecIovaCache =
    IovaCache<alloc::vec::Vec<Node>, alloc::vec::Vec<Magazine>, alloc::boxed::Box<[AtomicU8]>>;

#[cfg(feature = "alloc")]
impl VecIovaCache {
    /// Pages the live map covers by default: 2^20 pages (4 GiB of IOVA
    /// space, 1 MiB of map), or the whole window if smaller.
    pub const DEFAULT_TRACKED_PAGES: u64 = 1 << 20;

    /// An empty cache over `window`, with a depot of up to 32 magazines per
    /// size class and a live map over the top
    /// [`DEFAULT_TRACKED_PAGES`](Self::DEFAULT_TRACKED_PAGES) of the window.
    pub fn with_window(window: Window) -> Self {
        Self::with_tracked_pages(window, Self::DEFAULT_TRACKED_PAGES)
    }

    /// An empty cache over `window` whose live map covers the top `pages`
    /// pages of it (capped at the window's size). Cached-size ranges below
    /// that are allocated and freed through the tree.
    pub fn with_tracked_pages(window: Window, pages: u64) -> Self {
        let pages = pages.min(window.limit() - window.base() + 1);
        Self::new(
            IovaTree::new(window, alloc::vec::Vec::new()),
            core::array::from_fn(|_| alloc::vec::Vec::new()),
            32,
            (0..pages).map(|_| AtomicU8::new(0)).collect(),
        )
    }
}

impl<S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>> IovaCache<S, D, B> {
    /// A cache in front of `tree`, keeping at most `depot_cap` full
    /// magazines per size class in `depot`, and tracking live ranges in
    /// `live_bytes` (zeroed; one byte per page, over the top of the
    /// window).
    pub fn new(
        tree: IovaTree<S>,
        depot: [D; CACHED_ORDERS],
        depot_cap: usize,
        live_bytes: B,
    ) -> Self {
        let window = tree.window();
        Self {
            shared: Mutex::new(Shared { tree, depot, depot_cap }),
            live: LiveMap::new(window, live_bytes),
            window,
        }
    }

    /// The window this cache allocates from.
    pub fn window(&self) -> Window {
        self.window
    }

    /// A new per-CPU handle with empty magazines.
    pub fn handle(&self) -> CpuHandle<'_, S, D, B> {
        CpuHandle {
            cache: self,
            loaded: core::array::from_fn(|_| Magazine::EMPTY),
            prev: core::array::from_fn(|_| Magazine::EMPTY),
        }
    }

    /// Reserves `range` (see [`IovaTree::reserve`]), after returning the
    /// depot to the tree. Ranges still cached in handles count as
    /// allocated: flush the handles first when reserving after use.
    ///
    /// # Errors
    /// As [`IovaTree::reserve`].
    pub fn reserve(&self, range: IovaRange) -> Result<()> {
        let mut shared = self.shared.lock();
        shared.flush_depot();
        shared.tree.reserve(range)
    }

    /// The live allocation or reservation containing `iova`; a range that
    /// sits in a magazine is free and has no owner. O(log n).
    pub fn owner_of(&self, iova: Iova) -> Option<IovaRange> {
        let (range, reserved) = self.shared.lock().tree.lookup(iova.page_number())?;
        if reserved {
            return Some(range);
        }
        match cached_order(range) {
            Some(order) if self.live.is_live(range.start_page(), order as u8) == Some(false) => {
                None
            }
            _ => Some(range),
        }
    }

    /// Returns every magazine of the depot to the tree. With every handle
    /// flushed (or dropped) too, the tree holds exactly the live ranges.
    pub fn flush_depot(&self) {
        self.shared.lock().flush_depot();
    }

    /// Runs `f` on the tree under the lock (statistics, inspection).
    pub fn with_tree<R>(&self, f: impl FnOnce(&IovaTree<S>) -> R) -> R {
        f(&self.shared.lock().tree)
    }

    /// The error for a cached-size free whose live byte did not match.
    #[cold]
    fn refused_free(&self, range: IovaRange) -> AllocError {
        match self.shared.lock().tree.lookup(range.start_page()) {
            Some((owner, true)) if owner == range => AllocError::Reserved,
            _ => AllocError::NotAllocated,
        }
    }
}

/// The size class of `range` if ranges like it are cached: a power-of-two
/// length of at most 2^(`CACHED_ORDERS`-1) pages at an aligned start.
#[inline]
fn cached_order(range: IovaRange) -> Option<usize> {
    let pages = range.pages();
    let aligned = (pages | range.start_page()) & (pages - 1) == 0;
    (aligned && pages <= 1 << (CACHED_ORDERS - 1)).then(|| pages.trailing_zeros() as usize)
}

/// One CPU's (or thread's) access to an [`IovaCache`]: it owns a loaded and a
/// previous magazine per size class, so its fast path takes no shared lock.
/// Dropping it returns its magazines to the tree.
#[derive(Debug)]
pub struct CpuHandle<'a, S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>> {
    cache: &'a IovaCache<S, D, B>,
    loaded: [Magazine; CACHED_ORDERS],
    prev: [Magazine; CACHED_ORDERS],
}

impl<S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>> CpuHandle<'_, S, D, B> {
    /// Allocates `pages` pages below the byte address `dma_limit`, as
    /// [`IovaTree::alloc`] does. Sizes up to 2^(`CACHED_ORDERS`-1) pages are
    /// rounded up to a power of two (the returned range says how many pages
    /// were given) and served from this handle's magazines when one fits the
    /// limit; O(1) then, O(log n) otherwise. If the tree is exhausted, this
    /// handle's magazines and the depot are returned to it and the
    /// allocation retried once (ranges cached by other handles stay there).
    ///
    /// # Errors
    /// As [`IovaTree::alloc`].
    #[inline]
    pub fn alloc(&mut self, pages: u64, dma_limit: Iova) -> Result<IovaRange> {
        if pages == 0 {
            return Err(AllocError::Empty);
        }
        let order = order_of(pages) as usize;
        if order >= CACHED_ORDERS {
            return self.cache.shared.lock().tree.alloc(pages, dma_limit);
        }
        let size = 1u64 << order;
        let hi = self.cache.window.last_page_below(dma_limit).ok_or(AllocError::Exhausted)?;
        let max_start = (hi + 1).checked_sub(size).ok_or(AllocError::Exhausted)?;
        let pfn = match self.pop_cached(order, max_start) {
            Some(pfn) => pfn,
            None => self.alloc_from_tree(order, dma_limit)?,
        };
        self.cache.live.mark(pfn, order as u8);
        Ok(IovaRange::from_parts(pfn, size))
    }

    /// Frees a range this cache's handles allocated (through any handle).
    /// Cached sizes go to this handle's magazines, O(1); others to the tree.
    ///
    /// # Errors
    /// [`AllocError::NotAllocated`] for a double free, a range never handed
    /// out or of another length; [`AllocError::Reserved`] for a reservation.
    /// Nothing changes on error.
    #[inline]
    pub fn free(&mut self, range: IovaRange) -> Result<()> {
        let Some(order) = cached_order(range) else {
            return self.cache.shared.lock().tree.free(range);
        };
        match self.cache.live.take(range.start_page(), order as u8) {
            Take::Taken => {
                self.push_cached(order, range.start_page());
                Ok(())
            }
            Take::NotLive => Err(self.cache.refused_free(range)),
            Take::Untracked => self.cache.shared.lock().tree.free(range),
        }
    }

    /// Returns this handle's magazines to the tree.
    pub fn flush(&mut self) {
        let mut shared = self.cache.shared.lock();
        for (order, (loaded, prev)) in self.loaded.iter_mut().zip(&mut self.prev).enumerate() {
            shared.drain_to_tree(loaded, order);
            shared.drain_to_tree(prev, order);
        }
    }

    /// Pops a cached range of order `order` starting at or below `max_start`.
    #[inline]
    fn pop_cached(&mut self, order: usize, max_start: u64) -> Option<u64> {
        self.loaded[order].pop_at_most(max_start).or_else(|| self.reload(order, max_start))
    }

    /// The loaded magazine had nothing under the limit: if it is empty,
    /// swap in the previous one or take a full one from the depot, and pop.
    #[cold]
    fn reload(&mut self, order: usize, max_start: u64) -> Option<u64> {
        let (loaded, prev) = (&mut self.loaded[order], &mut self.prev[order]);
        if loaded.is_empty() {
            if !prev.is_empty() {
                core::mem::swap(loaded, prev);
            } else if let Some(full) = self.cache.shared.lock().depot[order].pop() {
                *loaded = full;
            }
        }
        loaded.pop_at_most(max_start)
    }

    /// Allocates a range of order `order` from the tree; on exhaustion,
    /// returns this handle's magazines and the depot to the tree and retries.
    #[cold]
    fn alloc_from_tree(&mut self, order: usize, dma_limit: Iova) -> Result<u64> {
        let mut shared = self.cache.shared.lock();
        match shared.tree.alloc(1 << order, dma_limit) {
            Err(AllocError::Exhausted) => {
                for (o, (loaded, prev)) in self.loaded.iter_mut().zip(&mut self.prev).enumerate() {
                    shared.drain_to_tree(loaded, o);
                    shared.drain_to_tree(prev, o);
                }
                shared.flush_depot();
                shared.tree.alloc(1 << order, dma_limit)
            }
            other => other,
        }
        .map(IovaRange::start_page)
    }

    /// Caches a freed range of order `order`.
    #[inline]
    fn push_cached(&mut self, order: usize, pfn: u64) {
        if !self.loaded[order].push(pfn) {
            self.push_after_swap(order, pfn);
        }
    }

    /// The loaded magazine is full: swap in the previous one, or hand it to
    /// the depot if that is full too, and push.
    #[cold]
    fn push_after_swap(&mut self, order: usize, pfn: u64) {
        let (loaded, prev) = (&mut self.loaded[order], &mut self.prev[order]);
        if prev.is_full() {
            let full = core::mem::replace(loaded, Magazine::EMPTY);
            self.cache.shared.lock().deposit(full, order);
        } else {
            core::mem::swap(loaded, prev);
        }
        let pushed = loaded.push(pfn);
        debug_assert!(pushed, "a magazine was full after making room");
    }
}

impl<S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>> Drop for CpuHandle<'_, S, D, B> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = FixedIovaCache<1024, 2, 4096>;
    const NO_LIMIT: Iova = Iova::new(u64::MAX);

    fn cache() -> Cache {
        Cache::new_fixed(Window::from_pages(16, 4095).unwrap())
    }

    #[test]
    fn reuses_freed_ranges_lifo() {
        let c = cache();
        let mut h = c.handle();
        let a = h.alloc(1, NO_LIMIT).unwrap();
        let b = h.alloc(3, NO_LIMIT).unwrap();
        assert_eq!((a.start_page(), b.start_page(), b.pages()), (4095, 4088, 4));
        h.free(a).unwrap();
        assert_eq!(c.owner_of(a.start()), None, "cached ranges have no owner");
        assert_eq!(c.with_tree(|t| t.allocated()), 2, "but stay allocated in the tree");
        assert_eq!(h.alloc(1, NO_LIMIT).unwrap(), a);
        assert_eq!(c.owner_of(a.start()), Some(a));
    }

    #[test]
    fn double_and_foreign_free_across_handles() {
        let c = cache();
        let (mut h1, mut h2) = (c.handle(), c.handle());
        let a = h1.alloc(2, NO_LIMIT).unwrap();
        h2.free(a).unwrap();
        assert_eq!(h1.free(a), Err(AllocError::NotAllocated));
        assert_eq!(h2.free(a), Err(AllocError::NotAllocated));
        let never = IovaRange::from_pages(2048, 1).unwrap();
        assert_eq!(h1.free(never), Err(AllocError::NotAllocated));
        let b = h1.alloc(4, NO_LIMIT).unwrap();
        assert_eq!(
            h1.free(IovaRange::from_pages(b.start_page(), 2).unwrap()),
            Err(AllocError::NotAllocated)
        );
        c.reserve(IovaRange::from_pages(64, 8).unwrap()).unwrap();
        assert_eq!(h2.free(IovaRange::from_pages(64, 8).unwrap()), Err(AllocError::Reserved));
        // The range freed into h2 is handed out once, by h2.
        assert_eq!(h2.alloc(2, NO_LIMIT).unwrap(), a);
        assert_ne!(h1.alloc(2, NO_LIMIT).unwrap(), a);
    }

    #[test]
    fn limit_skips_cached_ranges_above_it() {
        let c = cache();
        let mut h = c.handle();
        let high = h.alloc(1, NO_LIMIT).unwrap();
        h.free(high).unwrap();
        let low = h.alloc(1, Iova::new((0x800 << 12) - 1)).unwrap();
        assert_eq!(low.start_page(), 0x7FF);
        assert_eq!(h.alloc(1, NO_LIMIT).unwrap(), high);
    }

    #[test]
    fn flush_returns_everything() {
        let c = cache();
        {
            let mut h1 = c.handle();
            let mut h2 = c.handle();
            let mut live = heapless::Vec::<IovaRange, 700>::new();
            for i in 0..700u64 {
                live.push(h1.alloc(1 + i % 8, NO_LIMIT).unwrap()).unwrap();
            }
            for r in live.iter() {
                h2.free(*r).unwrap();
            }
            h1.flush();
            assert!(c.with_tree(|t| t.allocated()) > 0, "h2 and the depot hold some");
            c.flush_depot();
        }
        // Dropping the handles returned their magazines.
        assert_eq!(c.with_tree(|t| t.allocated()), 0);
    }

    #[test]
    fn exhaustion_retries_after_returning_caches() {
        let c = FixedIovaCache::<64, 1, 32>::new_fixed(Window::from_pages(0, 31).unwrap());
        let mut h = c.handle();
        let all: heapless::Vec<_, 32> = (0..32).map(|_| h.alloc(1, NO_LIMIT).unwrap()).collect();
        assert_eq!(h.alloc(1, NO_LIMIT), Err(AllocError::Exhausted));
        for r in &all[..2] {
            h.free(*r).unwrap();
        }
        // Two free pages sit in h's magazine: a 2-page request flushes them
        // back to the tree and succeeds.
        assert_eq!(h.alloc(2, NO_LIMIT).unwrap().start_page(), 30);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn heap_backed_cache_grows_past_fixed_sizes() {
        let window = Window::new(Iova::new(0), Iova::new((1 << 32) - 1)).unwrap();
        let c = VecIovaCache::with_tracked_pages(window, 1 << 16);
        let mut h = c.handle();
        // 100k ranges: far beyond the map's 64 Ki pages, so the lower ones
        // are untracked and go through the tree.
        let live: std::vec::Vec<_> = (0..100_000).map(|_| h.alloc(1, NO_LIMIT).unwrap()).collect();
        assert_eq!(live[0].start_page(), (1 << 20) - 1);
        assert_eq!(live[99_999].start_page(), (1 << 20) - 100_000);
        for r in live.iter().rev() {
            h.free(*r).unwrap();
        }
        assert_eq!(h.free(live[5]), Err(AllocError::NotAllocated));
        assert_eq!(h.free(live[99_000]), Err(AllocError::NotAllocated));
        drop(h);
        c.flush_depot();
        assert_eq!(c.with_tree(|t| t.allocated()), 0);
    }

    #[test]
    fn large_sizes_bypass_the_cache() {
        let c = cache();
        let mut h = c.handle();
        let big = h.alloc(33, NO_LIMIT).unwrap();
        assert_eq!((big.start_page(), big.pages()), (4096 - 64, 33));
        h.free(big).unwrap();
        assert_eq!(h.free(big), Err(AllocError::NotAllocated));
        assert_eq!(c.with_tree(|t| t.allocated()), 0);
    }
}
