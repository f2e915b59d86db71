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
//! Beyond Linux, a CPU's IOVAs stay its own: a handle that goes to the tree
//! with nothing left of a size class takes a run of neighbouring ranges (64
//! pages' worth, at most a 64th of the window) under that one lock, and
//! the depot tags each magazine with the CPU (or handle) that deposited it:
//! a handle takes back its own first, another's only from a depot at least
//! half full. Otherwise two CPUs' IOVAs interleave page by page, and
//! the page-table entries (eight to a cache line) and live-map bytes they
//! write share lines: every map and unmap a cross-core line transfer.
//!
//! Cached ranges stay allocated in the tree (as in Linux). An alloc hands
//! out an [`IovaLease`]; freeing the lease pushes its range onto a magazine
//! with no further check and no atomic operation, since a lease cannot be
//! freed twice and names the cache that issued it. A lease turned into a
//! plain range ([`CpuHandle::into_range`]) is freed by address
//! ([`CpuHandle::free_range`]), and that free is checked against a map of
//! atomic bytes over the top of the window (one per page, holding the order
//! of the range held by address that starts there): it compare-exchanges
//! the range's byte to zero and fails with [`AllocError::NotAllocated`] if
//! it did not hold the range's order, so a double or foreign free of a
//! range is a typed error even when it lands on another CPU's handle, two
//! racing frees of one range cannot both win, and a range can never sit in
//! two magazines.
//!
//! Costs: alloc and the free of a lease are O(1) on the fast path, a
//! magazine pop or push; turning a lease into a range adds a plain byte
//! store, and its free by address one compare-exchange. The slow path is
//! one tree operation, O(log n). Sizes of more than 2^(`CACHED_ORDERS`-1)
//! pages go to the tree directly, and so do frees by address and
//! conversions of ranges below the live map.

use core::sync::atomic::{AtomicU8, AtomicU16, Ordering};

use spin::Mutex;
use vtd_regs::Iova;

use crate::lease::{IovaLease, Issuer, IssuerCell};
use crate::live::{LiveMap, Take};
use crate::magazine::Magazine;
use crate::range::{IovaRange, PackedRange, Window, order_of};
use crate::store::Store;
use crate::tree::{IovaTree, Kind, Node};
use crate::{AllocError, Result};

/// Number of cached size classes: orders 0..=5, i.e. 1 to 32 pages (Linux's
/// `IOVA_RANGE_CACHE_MAX_SIZE`).
pub const CACHED_ORDERS: usize = 6;

/// The largest size cached, in pages.
const MAX_CACHED_PAGES: u64 = 1 << (CACHED_ORDERS - 1);

/// Pages a handle takes from the tree at once when it has no range of a
/// size class left: a run of neighbouring ranges, so that the IOVAs one CPU
/// cycles through are its own. 64 pages: one 64-byte line of the live map
/// and eight lines of a last-level page table (eight 8-byte entries each),
/// which no other CPU's mappings then share (two CPUs writing entries of
/// one line make every map and unmap a cross-core line transfer).
const RUN_PAGES: usize = 64;

/// A run takes at most 1/`RUN_SHARE` of the window, so a small window is
/// not hoarded by the first handle that allocates.
const RUN_SHARE: u64 = 64;

/// What the lock protects: the tree and the depot of full magazines.
#[derive(Debug)]
struct Shared<S, D> {
    tree: IovaTree<S>,
    depot: [D; CACHED_ORDERS],
    /// Most full magazines the depot keeps per class.
    depot_cap: usize,
}

impl<S: Store<Node>, D: Store<Magazine>> Shared<S, D> {
    /// Frees every entry of `mag` to the tree.
    fn drain_to_tree(&mut self, mag: &mut Magazine) {
        for range in mag.drain() {
            // The cache records every range it allocates as a lease.
            let freed = self.tree.remove_as(range, Kind::Lease);
            debug_assert!(freed.is_ok(), "a cached range was not allocated in the tree");
        }
    }

    /// Frees every magazine of the depot to the tree.
    fn flush_depot(&mut self) {
        for order in 0..CACHED_ORDERS {
            while let Some(mut mag) = self.depot[order].pop() {
                self.drain_to_tree(&mut mag);
            }
        }
    }

    /// A full magazine of class `order` from the depot for handle `owner`:
    /// the most recent one it deposited, so a CPU gets its own IOVAs back
    /// and keeps its page-table lines to itself (see [`RUN_PAGES`]);
    /// another's only from a depot at least half full (a CPU that frees
    /// more than it allocates feeds one that allocates more), since a
    /// run from the tree keeps IOVAs apart and costs one lock too.
    fn withdraw(&mut self, order: usize, owner: u16) -> Option<Magazine> {
        let mags = self.depot[order].as_mut_slice();
        let top = mags.len().checked_sub(1)?;
        match mags.iter().rposition(|m| m.owner() == owner) {
            Some(own) => mags.swap(own, top),
            None if 2 * mags.len() < self.depot_cap => return None,
            None => {}
        }
        self.depot[order].pop()
    }

    /// Stores a full magazine, deposited by handle `owner`, in the depot,
    /// or frees it to the tree if the depot is full.
    fn deposit(&mut self, mut mag: Magazine, order: usize, owner: u16) {
        mag.set_owner(owner);
        if self.depot[order].as_slice().len() < self.depot_cap {
            match self.depot[order].push(mag) {
                Ok(()) => return,
                Err(back) => mag = back,
            }
        }
        self.drain_to_tree(&mut mag);
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
    /// The last byte of the window: DMA limits at or above it limit nothing.
    last_byte: u64,
    issuer: IssuerCell,
    /// Handles made by [`handle`](Self::handle) so far (wrapping): their
    /// tags in the depot.
    handles: AtomicU16,
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
    /// let lease = cpu.alloc(8, Iova::new(u64::MAX))?;
    /// assert_eq!(lease.range().last_page(), (1 << 20) - 1);
    /// cpu.free(lease)?;
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
            last_byte: last_byte(window),
            issuer: IssuerCell::new(),
            handles: AtomicU16::new(0),
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
            last_byte: last_byte(window),
            issuer: IssuerCell::new(),
            handles: AtomicU16::new(0),
        }
    }

    /// The window this cache allocates from.
    pub fn window(&self) -> Window {
        self.window
    }

    /// A new per-CPU handle with empty magazines. The magazines it deposits
    /// come back to it first; a handle that is dropped and made again for
    /// the same CPU should be made with [`handle_on`](Self::handle_on)
    /// instead, to get its CPU's back.
    pub fn handle(&self) -> CpuHandle<'_, S, D, B> {
        self.tagged(self.handles.fetch_add(1, Ordering::Relaxed))
    }

    /// A new handle of CPU `cpu` with empty magazines: the magazines any
    /// handle of that CPU deposited come back to it first, so a CPU keeps
    /// its IOVAs, and the page-table lines they use, across handles.
    pub fn handle_on(&self, cpu: usize) -> CpuHandle<'_, S, D, B> {
        // CPUs past u16::MAX share tags: affinity is only a preference.
        self.tagged(cpu as u16)
    }

    fn tagged(&self, id: u16) -> CpuHandle<'_, S, D, B> {
        CpuHandle {
            cache: self,
            issuer: self.issuer.get(),
            id,
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

    /// The allocation or reservation containing `iova`. A range cached in
    /// a magazine counts as allocated (it is, in the tree, until its
    /// magazine is flushed, as in Linux's `find_iova`): flush the handles
    /// and the depot first for the live allocations alone. O(log n).
    pub fn owner_of(&self, iova: Iova) -> Option<IovaRange> {
        self.shared.lock().tree.owner_of(iova)
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

    /// Ranges of order `order` a handle takes from the tree at once when
    /// its magazines are empty: [`RUN_PAGES`] pages' worth, at most
    /// 1/[`RUN_SHARE`] of the window, rounded down to a power of two, at
    /// least one. The extra ranges are cached as freed ones are (allocated
    /// in the tree until their magazine is flushed), so
    /// [`owner_of`](Self::owner_of) reports them.
    fn run_len(&self, order: usize) -> usize {
        let window = self.window.limit() - self.window.base() + 1;
        let pages = (RUN_PAGES as u64).min(window / RUN_SHARE);
        // A power of two, so the run fills an aligned block exactly.
        let pages = if pages == 0 { 0 } else { 1 << pages.ilog2() };
        usize::try_from(pages >> order).unwrap_or(RUN_PAGES).max(1)
    }

    /// The error for a cached-size free whose live byte did not match.
    #[cold]
    fn refused_free(&self, range: IovaRange) -> AllocError {
        match self.shared.lock().tree.lookup(range.start_page()) {
            Some((owner, Kind::Reserved)) if owner == range => AllocError::Reserved,
            _ => AllocError::NotAllocated,
        }
    }

    /// Frees `range`, recorded in the tree as `kind`, under the lock.
    #[cold]
    fn free_in_tree(&self, range: IovaRange, kind: Kind) -> Result<()> {
        self.shared.lock().tree.remove_as(range, kind)
    }
}

/// The last byte address of `window`.
const fn last_byte(window: Window) -> u64 {
    IovaRange::from_parts(window.limit(), 1).last().as_u64()
}

/// The size class of `range` if ranges like it are cached: a power-of-two
/// length of at most 2^(`CACHED_ORDERS`-1) pages at an aligned start.
#[inline]
fn cached_order(range: IovaRange) -> Option<usize> {
    let pages = range.pages();
    let aligned = (pages | range.start_page()) & (pages - 1) == 0;
    (aligned && pages <= MAX_CACHED_PAGES).then(|| pages.trailing_zeros() as usize)
}

/// One CPU's (or thread's) access to an [`IovaCache`]: it owns a loaded and a
/// previous magazine per size class, so its fast path takes no shared lock.
/// Dropping it returns its magazines to the tree.
///
/// Aligned to 128 bytes (two 64-byte lines, as adjacent-line prefetchers
/// fetch them in pairs), so handles kept side by side, as an OS keeps its
/// per-CPU handles in an array, share no cache line: every allocation
/// writes the loaded magazine's count at a handle's start and reads the
/// issuer at its end, and with the handles packed one CPU's end and the
/// next CPU's start were one line, moved between the two cores on every
/// allocation (two threads mapping and unmapping through two handles in
/// one `Vec` took a third longer per pair than with the handles apart).
#[derive(Debug)]
#[repr(align(128))]
pub struct CpuHandle<'a, S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>> {
    cache: &'a IovaCache<S, D, B>,
    /// The cache's identity, put in every lease.
    issuer: Issuer,
    /// Its tag on the magazines it deposits (see [`Shared::withdraw`]).
    id: u16,
    loaded: [Magazine; CACHED_ORDERS],
    prev: [Magazine; CACHED_ORDERS],
}

impl<S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>> CpuHandle<'_, S, D, B> {
    /// Allocates `pages` pages below the byte address `dma_limit`, as
    /// [`IovaTree::alloc`] does. Sizes up to 2^(`CACHED_ORDERS`-1) pages are
    /// rounded up to a power of two (the lease's range says how many pages
    /// were given) and served from this handle's magazines when one fits the
    /// limit; O(1) then, O(log n) otherwise. If the tree is exhausted, this
    /// handle's magazines and the depot are returned to it and the
    /// allocation retried once (ranges cached by other handles stay there).
    ///
    /// # Errors
    /// As [`IovaTree::alloc`].
    #[inline]
    pub fn alloc(&mut self, pages: u64, dma_limit: Iova) -> Result<IovaLease> {
        if pages == 0 {
            return Err(AllocError::Empty);
        }
        let order = order_of(pages) as usize;
        if order >= CACHED_ORDERS {
            return self.alloc_uncached(pages, dma_limit);
        }
        let max = if dma_limit.as_u64() >= self.cache.last_byte {
            // Every cached range lies in the window.
            PackedRange::MAX
        } else {
            let size = 1u64 << order;
            let hi = self.cache.window.last_page_below(dma_limit).ok_or(AllocError::Exhausted)?;
            let max_start = (hi + 1).checked_sub(size).ok_or(AllocError::Exhausted)?;
            PackedRange::of_order(max_start & !(size - 1), order as u32)
        };
        let range = match self.loaded[order].pop_at_most(max) {
            Some(range) => range,
            None => self.reload_or_grow(order, max, dma_limit)?,
        };
        Ok(IovaLease::new(range, self.issuer))
    }

    /// Frees a lease this cache's handles handed out (through any handle).
    /// Cached sizes go to this handle's magazines, O(1), with no atomic
    /// operation; others to the tree, O(log n).
    ///
    /// # Errors
    /// [`AllocError::ForeignLease`] if another allocator issued it (nothing
    /// changes).
    #[inline]
    pub fn free(&mut self, lease: IovaLease) -> Result<()> {
        if !lease.is_from(self.issuer) {
            return Err(AllocError::ForeignLease);
        }
        let range = lease.packed();
        // The cache hands out the sizes it caches as exact powers of two:
        // the order alone says whether a magazine takes the range.
        let order = range.order() as usize;
        if order >= CACHED_ORDERS {
            return self.cache.free_in_tree(range.range(), Kind::Lease);
        }
        self.push_cached(order, range);
        Ok(())
    }

    /// Turns a lease this cache's handles handed out into a plain range, to
    /// be freed by address with [`free_range`](Self::free_range): a plain
    /// byte store for cached sizes, O(1); a tree update otherwise, O(log n).
    ///
    /// # Errors
    /// [`AllocError::ForeignLease`] if another allocator issued it.
    pub fn into_range(&mut self, lease: IovaLease) -> Result<IovaRange> {
        if !lease.is_from(self.issuer) {
            return Err(AllocError::ForeignLease);
        }
        let range = lease.range();
        match cached_order(range) {
            Some(order) if self.cache.live.mark(range.start_page(), order as u8) => {}
            _ => self.cache.shared.lock().tree.lease_to_range(range)?,
        }
        Ok(range)
    }

    /// Frees a range that [`into_range`](Self::into_range) returned (through
    /// any handle). Cached sizes go to this handle's magazines, O(1), after
    /// one atomic compare-exchange; others to the tree, O(log n).
    ///
    /// # Errors
    /// [`AllocError::NotAllocated`] for a double free, a range never handed
    /// out, of another length or still held as a lease;
    /// [`AllocError::Reserved`] for a reservation. Nothing changes on error.
    #[inline]
    pub fn free_range(&mut self, range: IovaRange) -> Result<()> {
        let Some(order) = cached_order(range) else {
            return self.cache.free_in_tree(range, Kind::Range);
        };
        match self.cache.live.take(range.start_page(), order as u8) {
            Take::Taken => {
                self.push_cached(order, PackedRange::new(range));
                Ok(())
            }
            Take::NotLive => Err(self.cache.refused_free(range)),
            Take::Untracked => self.cache.free_in_tree(range, Kind::Range),
        }
    }

    /// Returns this handle's magazines to the tree.
    pub fn flush(&mut self) {
        let mut shared = self.cache.shared.lock();
        for (loaded, prev) in self.loaded.iter_mut().zip(&mut self.prev) {
            shared.drain_to_tree(loaded);
            shared.drain_to_tree(prev);
        }
    }

    /// The loaded magazine had nothing under the limit: if it is empty,
    /// swap in the previous one or take a full one from the depot, and pop;
    /// failing that, allocate from the tree.
    #[cold]
    fn reload_or_grow(
        &mut self,
        order: usize,
        max: PackedRange,
        dma_limit: Iova,
    ) -> Result<PackedRange> {
        let (loaded, prev) = (&mut self.loaded[order], &mut self.prev[order]);
        if loaded.is_empty() {
            if !prev.is_empty() {
                core::mem::swap(loaded, prev);
            } else if let Some(full) = self.cache.shared.lock().withdraw(order, self.id) {
                *loaded = full;
            }
        }
        match loaded.pop_at_most(max) {
            Some(range) => Ok(range),
            None => self.alloc_from_tree(order, dma_limit),
        }
    }

    /// Allocates a range of order `order` from the tree; on exhaustion,
    /// returns this handle's magazines and the depot to the tree and retries.
    /// If the loaded magazine is empty it also loads it with the rest of a
    /// run (see [`run_len`](IovaCache::run_len)) taken under the same lock.
    #[cold]
    fn alloc_from_tree(&mut self, order: usize, dma_limit: Iova) -> Result<PackedRange> {
        let mut shared = self.cache.shared.lock();
        let run = if self.loaded[order].is_empty() { self.cache.run_len(order) } else { 1 };
        // A run goes into a free block of its size where there is one (found
        // by allocating the block and giving it back under the lock), so it
        // is contiguous even when the top of the tree is full of holes.
        let mut limit = dma_limit;
        if run > 1
            && let Ok(block) = shared.tree.alloc_as((run as u64) << order, dma_limit, Kind::Lease)
        {
            let freed = shared.tree.remove_as(block, Kind::Lease);
            debug_assert!(freed.is_ok(), "a block just allocated was not in the tree");
            limit = block.last();
        }
        let first = match shared.tree.alloc_as(1 << order, limit, Kind::Lease) {
            Err(AllocError::Exhausted) => {
                for (loaded, prev) in self.loaded.iter_mut().zip(&mut self.prev) {
                    shared.drain_to_tree(loaded);
                    shared.drain_to_tree(prev);
                }
                shared.flush_depot();
                shared.tree.alloc_as(1 << order, dma_limit, Kind::Lease)
            }
            other => other,
        }?;
        // Top-down, so the run continues below `first`; pushed lowest first,
        // so the magazine hands it out in address order.
        let mut rest = heapless::Vec::<PackedRange, RUN_PAGES>::new();
        for _ in 1..run {
            let Ok(next) = shared.tree.alloc_as(1 << order, limit, Kind::Lease) else {
                break;
            };
            // A run is at most RUN_PAGES ranges long.
            let _ = rest.push(PackedRange::new(next));
        }
        for &range in rest.iter().rev() {
            self.loaded[order].push(range);
        }
        Ok(PackedRange::new(first))
    }

    /// Allocates a size that is never cached, from the tree.
    #[cold]
    fn alloc_uncached(&mut self, pages: u64, dma_limit: Iova) -> Result<IovaLease> {
        let range = self.cache.shared.lock().tree.alloc_as(pages, dma_limit, Kind::Lease)?;
        Ok(IovaLease::new(PackedRange::new(range), self.issuer))
    }

    /// Caches a freed range of order `order`.
    #[inline]
    fn push_cached(&mut self, order: usize, range: PackedRange) {
        if !self.loaded[order].push(range) {
            self.push_after_swap(order, range);
        }
    }

    /// The loaded magazine is full: swap in the previous one, or hand it to
    /// the depot if that is full too, and push.
    #[cold]
    fn push_after_swap(&mut self, order: usize, range: PackedRange) {
        let (loaded, prev) = (&mut self.loaded[order], &mut self.prev[order]);
        if prev.is_full() {
            let full = core::mem::replace(loaded, Magazine::EMPTY);
            self.cache.shared.lock().deposit(full, order, self.id);
        } else {
            core::mem::swap(loaded, prev);
        }
        let pushed = loaded.push(range);
        debug_assert!(pushed, "a magazine was full after making room");
    }
}

const _: () = {
    type Handle =
        CpuHandle<'static, heapless::Vec<Node, 1>, heapless::Vec<Magazine, 1>, [AtomicU8; 1]>;
    assert!(align_of::<Handle>() == 128 && size_of::<Handle>().is_multiple_of(128));
};

impl<S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>> Drop for CpuHandle<'_, S, D, B> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = FixedIovaCache<1024, 2, 4096>;
    type Handle<'a> =
        CpuHandle<'a, heapless::Vec<Node, 1024>, heapless::Vec<Magazine, 2>, [AtomicU8; 4096]>;
    const NO_LIMIT: Iova = Iova::new(u64::MAX);

    fn cache() -> Cache {
        Cache::new_fixed(Window::from_pages(16, 4095).unwrap())
    }

    /// Allocates through the checked path: a plain range.
    fn alloc_range(h: &mut Handle<'_>, pages: u64, limit: Iova) -> Result<IovaRange> {
        let lease = h.alloc(pages, limit)?;
        h.into_range(lease)
    }

    #[test]
    fn reuses_freed_ranges_lifo() {
        let c = cache();
        let mut h = c.handle();
        let a = h.alloc(1, NO_LIMIT).unwrap();
        let b = h.alloc(3, NO_LIMIT).unwrap();
        let (ra, rb) = (a.range(), b.range());
        // The first page starts a run of 32 (a 64th of the 4080-page window,
        // rounded down to a power of two), 4095 down to 4064; the four pages
        // start a run of eight in the 32 pages below.
        assert_eq!((ra.start_page(), rb.start_page(), rb.pages()), (4095, 4060, 4));
        assert_eq!(c.owner_of(ra.start()), Some(ra), "leased ranges have an owner");
        h.free(a).unwrap();
        let runs = 32 + 8;
        assert_eq!(c.with_tree(|t| t.allocated()), runs, "cached ranges stay allocated");
        assert_eq!(c.owner_of(ra.start()), Some(ra));
        let a = alloc_range(&mut h, 1, NO_LIMIT).unwrap();
        assert_eq!(a, ra);
        assert_eq!(c.owner_of(a.start()), Some(a));
        h.free_range(a).unwrap();
        let a = h.alloc(1, NO_LIMIT).unwrap();
        assert_eq!(a.range(), ra);
        h.free(a).unwrap();
        h.flush();
        assert_eq!(c.owner_of(ra.start()), None, "flushed ranges have no owner");
    }

    /// The pages of `n` single-page allocations through `h`.
    fn pages(h: &mut Handle<'_>, n: usize) -> heapless::Vec<u64, 64> {
        (0..n).map(|_| h.alloc(1, NO_LIMIT).unwrap().range().start_page()).collect()
    }

    #[test]
    fn each_handle_allocates_from_its_own_run() {
        let c = cache();
        let (mut h1, mut h2) = (c.handle(), c.handle());
        let (mut p1, mut p2) = (heapless::Vec::<u64, 64>::new(), heapless::Vec::<u64, 64>::new());
        for _ in 0..32 {
            p1.extend(pages(&mut h1, 1));
            p2.extend(pages(&mut h2, 1));
        }
        // Interleaved calls, yet each handle's pages are one aligned run of
        // 32 handed out top-down: no line of entries holds pages of both.
        assert!(p1.iter().copied().eq((4064..=4095).rev()));
        assert!(p2.iter().copied().eq((4032..=4063).rev()));
        assert_eq!(pages(&mut h1, 1), [4031], "a used-up run is followed by a new one");
    }

    #[test]
    fn a_run_skips_holes_for_a_free_block() {
        let c = cache();
        let mut h1 = c.handle();
        let leases: heapless::Vec<IovaLease, 32> =
            (0..32).map(|_| h1.alloc(1, NO_LIMIT).unwrap()).collect();
        // Every other page of h1's run back in the tree: holes at the top.
        for lease in leases.into_iter().step_by(2) {
            h1.free(lease).unwrap();
        }
        h1.flush();
        let mut h2 = c.handle();
        assert!(pages(&mut h2, 32).iter().copied().eq((4032..=4063).rev()));
    }

    #[test]
    fn a_handle_withdraws_its_own_magazine_first() {
        const N: usize = 2 * crate::MAG_SIZE + 1;
        let c = cache();
        let mut handles = [c.handle(), c.handle()];
        let mut leases = [heapless::Vec::<IovaLease, N>::new(), heapless::Vec::new()];
        for (h, leases) in handles.iter_mut().zip(&mut leases) {
            for _ in 0..N {
                leases.push(h.alloc(1, NO_LIMIT).unwrap()).unwrap();
            }
        }
        let theirs: heapless::Vec<u64, N> =
            leases[1].iter().map(|l| l.range().start_page()).collect();
        // More than two magazines hold: each handle deposits a full one in
        // the depot, h2's on top.
        for (h, leases) in handles.iter_mut().zip(leases) {
            for lease in leases {
                h.free(lease).unwrap();
            }
        }
        for _ in 0..N {
            let page = handles[0].alloc(1, NO_LIMIT).unwrap().range().start_page();
            assert!(!theirs.contains(&page), "h1 took h2's magazine from the depot");
        }
    }

    #[test]
    fn a_cpu_gets_its_magazine_back_through_a_new_handle() {
        const N: usize = 2 * crate::MAG_SIZE + 1;
        let c = cache();
        let mut leases = [heapless::Vec::<IovaLease, N>::new(), heapless::Vec::new()];
        for (cpu, leases) in leases.iter_mut().enumerate() {
            let mut h = c.handle_on(cpu);
            for _ in 0..N {
                leases.push(h.alloc(1, NO_LIMIT).unwrap()).unwrap();
            }
        }
        let theirs: heapless::Vec<u64, N> =
            leases[1].iter().map(|l| l.range().start_page()).collect();
        // Each CPU's handle frees its own and is dropped: one full magazine
        // of each in the depot (CPU 1's on top), the rest back to the tree.
        for (cpu, leases) in leases.into_iter().enumerate() {
            let mut h = c.handle_on(cpu);
            for lease in leases {
                h.free(lease).unwrap();
            }
        }
        let mut again = c.handle_on(0);
        for _ in 0..crate::MAG_SIZE {
            let page = again.alloc(1, NO_LIMIT).unwrap().range().start_page();
            assert!(!theirs.contains(&page), "CPU 0's new handle took CPU 1's magazine");
        }
    }

    #[test]
    fn another_cpus_magazine_only_from_a_crowded_depot() {
        const N: usize = 2 * crate::MAG_SIZE + 1;
        let c = FixedIovaCache::<2048, 4, 4096>::new_fixed(Window::from_pages(16, 4095).unwrap());
        let theirs = |c: &FixedIovaCache<2048, 4, 4096>| {
            // CPU 1 allocates and frees: one full magazine of its own in
            // the depot, the rest back in the tree when its handle drops.
            let mut h = c.handle_on(1);
            let leases: heapless::Vec<IovaLease, N> =
                (0..N).map(|_| h.alloc(1, NO_LIMIT).unwrap()).collect();
            let pages: heapless::Vec<u64, N> =
                leases.iter().map(|l| l.range().start_page()).collect();
            for lease in leases {
                h.free(lease).unwrap();
            }
            pages
        };
        let first = theirs(&c);
        let mut h0 = c.handle_on(0);
        let mut taken = 0;
        for _ in 0..N {
            let page = h0.alloc(1, NO_LIMIT).unwrap().range().start_page();
            taken += usize::from(first.contains(&page));
        }
        // A quarter-full depot: CPU 0 takes runs from the tree, not CPU 1's
        // magazine (at most the pages CPU 1's handle gave back to the tree).
        assert!(taken <= N - crate::MAG_SIZE, "CPU 0 took CPU 1's magazine: {taken}");
    }

    #[test]
    fn a_small_window_is_not_hoarded() {
        let c = Cache::new_fixed(Window::from_pages(16, 31).unwrap());
        let (mut h1, mut h2) = (c.handle(), c.handle());
        let mut held = heapless::Vec::<IovaLease, 16>::new();
        for _ in 0..8 {
            held.push(h1.alloc(1, NO_LIMIT).unwrap()).unwrap();
            held.push(h2.alloc(1, NO_LIMIT).unwrap()).unwrap();
        }
        assert_eq!(h1.alloc(1, NO_LIMIT).map(|l| l.range()), Err(AllocError::Exhausted));
    }

    #[test]
    fn double_and_foreign_free_across_handles() {
        let c = cache();
        let (mut h1, mut h2) = (c.handle(), c.handle());
        let a = alloc_range(&mut h1, 2, NO_LIMIT).unwrap();
        h2.free_range(a).unwrap();
        assert_eq!(h1.free_range(a), Err(AllocError::NotAllocated));
        assert_eq!(h2.free_range(a), Err(AllocError::NotAllocated));
        let never = IovaRange::from_pages(2048, 1).unwrap();
        assert_eq!(h1.free_range(never), Err(AllocError::NotAllocated));
        let b = alloc_range(&mut h1, 4, NO_LIMIT).unwrap();
        assert_eq!(
            h1.free_range(IovaRange::from_pages(b.start_page(), 2).unwrap()),
            Err(AllocError::NotAllocated)
        );
        c.reserve(IovaRange::from_pages(64, 8).unwrap()).unwrap();
        assert_eq!(h2.free_range(IovaRange::from_pages(64, 8).unwrap()), Err(AllocError::Reserved));
        // The range freed into h2 is handed out once, by h2.
        assert_eq!(h2.alloc(2, NO_LIMIT).unwrap().range(), a);
        assert_ne!(h1.alloc(2, NO_LIMIT).unwrap().range(), a);
    }

    #[test]
    fn leases_are_freed_by_lease_only() {
        let c = cache();
        let (mut h1, mut h2) = (c.handle(), c.handle());
        let a = h1.alloc(2, NO_LIMIT).unwrap();
        let big = h1.alloc(40, NO_LIMIT).unwrap();
        // By address, a leased range is not live: refused, nothing changes.
        assert_eq!(h2.free_range(a.range()), Err(AllocError::NotAllocated));
        assert_eq!(h2.free_range(big.range()), Err(AllocError::NotAllocated));
        assert_eq!(c.owner_of(a.range().start()), Some(a.range()));
        let r = a.range();
        h2.free(a).unwrap();
        h2.free(big).unwrap();
        assert_eq!(h2.alloc(2, NO_LIMIT).unwrap().range(), r);
        // A lease of another cache is refused, and frees nothing here.
        let other = cache();
        let mut h3 = other.handle();
        let foreign = h3.alloc(2, NO_LIMIT).unwrap();
        let allocated = c.with_tree(|t| t.allocated());
        assert_eq!(h1.free(foreign), Err(AllocError::ForeignLease));
        assert_eq!(h1.into_range(h3.alloc(1, NO_LIMIT).unwrap()), Err(AllocError::ForeignLease));
        assert_eq!(c.with_tree(|t| t.allocated()), allocated);
    }

    #[test]
    fn limit_skips_cached_ranges_above_it() {
        let c = cache();
        let mut h = c.handle();
        let high = h.alloc(1, NO_LIMIT).unwrap();
        let r = high.range();
        h.free(high).unwrap();
        let low = h.alloc(1, Iova::new((0x800 << 12) - 1)).unwrap();
        assert_eq!(low.range().start_page(), 0x7FF);
        assert_eq!(h.alloc(1, NO_LIMIT).unwrap().range(), r);
    }

    #[test]
    fn flush_returns_everything() {
        let c = cache();
        {
            let mut h1 = c.handle();
            let mut h2 = c.handle();
            let mut live = heapless::Vec::<IovaLease, 700>::new();
            for i in 0..700u64 {
                live.push(h1.alloc(1 + i % 8, NO_LIMIT).unwrap()).unwrap();
            }
            for (i, lease) in live.into_iter().enumerate() {
                if i % 2 == 0 {
                    h2.free(lease).unwrap();
                } else {
                    let r = h1.into_range(lease).unwrap();
                    h2.free_range(r).unwrap();
                }
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
        let mut all: heapless::Vec<_, 32> =
            (0..32).map(|_| h.alloc(1, NO_LIMIT).unwrap()).collect();
        assert_eq!(h.alloc(1, NO_LIMIT).err(), Some(AllocError::Exhausted));
        for lease in all.drain(..2) {
            h.free(lease).unwrap();
        }
        // Two free pages sit in h's magazine: a 2-page request flushes them
        // back to the tree and succeeds.
        assert_eq!(h.alloc(2, NO_LIMIT).unwrap().range().start_page(), 30);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn heap_backed_cache_grows_past_fixed_sizes() {
        let window = Window::new(Iova::new(0), Iova::new((1 << 32) - 1)).unwrap();
        let c = VecIovaCache::with_tracked_pages(window, 1 << 16);
        let mut h = c.handle();
        // 100k ranges: far beyond the map's 64 Ki pages, so the lower ones
        // are untracked and go through the tree.
        let mut live: std::vec::Vec<_> =
            (0..100_000).map(|_| h.alloc(1, NO_LIMIT).unwrap()).collect();
        assert_eq!(live[0].range().start_page(), (1 << 20) - 1);
        assert_eq!(live[99_999].range().start_page(), (1 << 20) - 100_000);
        // Below the map too, a leased range is freed by its lease only.
        assert_eq!(h.free_range(live[99_000].range()), Err(AllocError::NotAllocated));
        let (tracked, untracked) = (live[5].range(), live[99_000].range());
        let mut ranges = std::vec::Vec::new();
        for (i, lease) in live.drain(..).enumerate().rev() {
            if i % 3 == 0 {
                ranges.push(h.into_range(lease).unwrap());
            } else {
                h.free(lease).unwrap();
            }
        }
        for r in ranges {
            h.free_range(r).unwrap();
        }
        assert_eq!(h.free_range(tracked), Err(AllocError::NotAllocated));
        assert_eq!(h.free_range(untracked), Err(AllocError::NotAllocated));
        drop(h);
        c.flush_depot();
        assert_eq!(c.with_tree(|t| t.allocated()), 0);
    }

    #[test]
    fn large_sizes_bypass_the_cache() {
        let c = cache();
        let mut h = c.handle();
        let big = alloc_range(&mut h, 33, NO_LIMIT).unwrap();
        assert_eq!((big.start_page(), big.pages()), (4096 - 64, 33));
        h.free_range(big).unwrap();
        assert_eq!(h.free_range(big), Err(AllocError::NotAllocated));
        assert_eq!(c.with_tree(|t| t.allocated()), 0);
        let big = h.alloc(33, NO_LIMIT).unwrap();
        h.free(big).unwrap();
        assert_eq!(c.with_tree(|t| t.allocated()), 0);
    }
}
