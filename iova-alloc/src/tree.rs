//! The range allocator: an augmented AVL tree of the live allocations and
//! reservations of one IOVA window.
//!
//! # Structure
//! Each node holds one occupied range (an allocation or a reservation), keyed
//! by its start page. Besides the AVL height, every node summarises its
//! subtree: its lowest start, its highest end, the longest free gap *between*
//! two of its ranges, and the largest order `k` such that some gap holds a
//! 2^k-aligned block of 2^k pages. These summaries depend only on the node
//! and its two children, so they are repaired on the way back up from an
//! insert or delete and after each rotation, in O(1) per node.
//!
//! # Complexity (n = live allocations + reservations)
//! - `alloc` of a power-of-two size: O(log n). The search walks top-down
//!   (highest addresses first, as Linux's `alloc_iova` does, so low
//!   addresses stay free for 32-bit devices) and skips every subtree whose
//!   summary says no aligned block fits; for a power-of-two size the
//!   summary is exact, so the only subtrees it enters without success lie on
//!   the one path cut by the caller's address limit. Other sizes are aligned
//!   to the next power of two; their search uses necessary conditions (the
//!   longest gap and half the alignment) and is O(log n) unless many gaps are
//!   just too short once aligned.
//! - `free`, `reserve` (per range it overlaps), `owner_of`: O(log n).
//!
//! `alloc` and `free` each make one pass down the tree: the search inserts
//! the new node below the gap it found and rebalances on the way back up,
//! and a free checks the node it reaches before unlinking it.
//!
//! Linux keeps an rbtree of allocations and scans it linearly from a cached
//! node for a gap (O(n) when the space is fragmented); the per-subtree gap
//! summaries make the search logarithmic instead.

use crate::lease::{IovaLease, Issuer};
use crate::range::{IovaRange, PFN_END, PackedRange, Window, order_of};
use crate::store::Store;
use crate::{AllocError, Result};
use vtd_regs::Iova;

/// "No node" in the index links of the arena.
const NIL: u32 = u32::MAX;

/// What occupies a range of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An allocation held as an [`IovaLease`]: freed by giving the lease back.
    Lease,
    /// An allocation held as a plain [`IovaRange`]: freed by address, checked.
    Range,
    /// A reservation: never handed out, never freed.
    Reserved,
}

/// One node of the tree, stored in a [`Store`]. Opaque: only the allocator
/// reads or writes its fields.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    /// First page of the occupied range.
    start: u64,
    /// Last page of the occupied range (inclusive).
    end: u64,
    /// Lowest start in the subtree.
    min_start: u64,
    /// Highest end in the subtree.
    max_end: u64,
    /// Longest gap between two ranges of the subtree, in pages.
    max_gap: u64,
    /// Left child, or the next free node while on the free list.
    left: u32,
    /// Right child.
    right: u32,
    /// AVL height (a leaf is 1).
    height: u8,
    /// 1 + the largest order of an aligned block inside a gap of the
    /// subtree, or 0 if the subtree has no gap.
    fit: u8,
    /// What occupies the range.
    kind: Kind,
}

impl Node {
    const fn new(start: u64, end: u64, kind: Kind) -> Self {
        Self {
            start,
            end,
            min_start: start,
            max_end: end,
            max_gap: 0,
            left: NIL,
            right: NIL,
            height: 1,
            fit: 0,
            kind,
        }
    }
}

/// Length and encoded fit order (see [`Node::fit`]) of the gap `lo..hi_excl`.
fn gap_summary(lo: u64, hi_excl: u64) -> (u64, u8) {
    let len = hi_excl.saturating_sub(lo);
    if len == 0 {
        return (0, 0);
    }
    // A gap of length L holds an aligned block of order floor(log2 L) or,
    // failing that, always one of the order below.
    let k = 63 - len.leading_zeros();
    let block = 1u64 << k;
    let start = (lo + block - 1) & !(block - 1);
    let order = if start + block <= hi_excl { k } else { k - 1 };
    (len, order as u8 + 1)
}

/// One allocation request: `pages` pages, aligned to 2^`order`, ending at
/// or below page `hi`.
#[derive(Clone, Copy)]
struct Request {
    pages: u64,
    align: u64,
    hi: u64,
    /// Subtrees with an encoded fit below this cannot hold the request.
    min_fit: u8,
}

impl Request {
    fn new(pages: u64, hi: u64) -> Self {
        let order = order_of(pages);
        let align = 1u64 << order;
        let min_fit = if pages == align { order as u8 + 1 } else { order as u8 };
        Self { pages, align, hi, min_fit }
    }

    /// Whether a subtree with this summary can possibly hold the request.
    fn may_fit(&self, max_gap: u64, fit: u8) -> bool {
        max_gap >= self.pages && fit >= self.min_fit
    }

    /// The highest placement inside the gap `lo..hi_excl`, if any.
    fn place(&self, lo: u64, hi_excl: u64) -> Option<u64> {
        let top = hi_excl.min(self.hi + 1);
        if top < lo + self.pages {
            return None;
        }
        let start = (top - self.pages) & !(self.align - 1);
        (start >= lo).then_some(start)
    }
}

/// A top-down, size-aligned range allocator over one [`Window`], with
/// reservations and owner lookup; all operations O(log n).
///
/// [`alloc`](Self::alloc) hands out an [`IovaLease`], freed by value with
/// [`free`](Self::free); [`into_range`](Self::into_range) turns a lease into
/// a plain [`IovaRange`] for callers that free by address, through
/// [`free_range`](Self::free_range).
///
/// Generic over its node [`Store`]: `heapless::Vec<Node, N>` for a fixed
/// capacity of `N` ranges without a heap, or `Vec<Node>` with the `alloc`
/// feature.
///
/// ```
/// use iova_alloc::{AllocError, IovaRange, IovaTree, Node, Window};
/// use vtd_regs::Iova;
///
/// let window = Window::new(Iova::new(0x1000), Iova::new((1 << 39) - 1))?;
/// let mut tree = IovaTree::new(window, heapless::Vec::<Node, 64>::new());
/// // Keep the MSI window out of the allocator's hands.
/// tree.reserve(IovaRange::new(Iova::new(0xFEE0_0000), 256)?)?;
/// // A device with a 32-bit DMA mask gets the highest 16-page-aligned
/// // block of 16 pages below 4 GiB.
/// let lease = tree.alloc(16, Iova::new(0xFFFF_FFFF))?;
/// let r = lease.range();
/// assert_eq!(r.start(), Iova::new(0xFFFF_0000));
/// assert_eq!(tree.owner_of(Iova::new(0xFFFF_1234)), Some(r));
/// // Only the lease frees it...
/// assert_eq!(tree.free_range(r), Err(AllocError::NotAllocated));
/// tree.free(lease)?;
/// // ...or, once turned into a range, the range, once.
/// let lease = tree.alloc(16, Iova::new(0xFFFF_FFFF))?;
/// let r = tree.into_range(lease)?;
/// tree.free_range(r)?;
/// assert_eq!(tree.free_range(r), Err(AllocError::NotAllocated));
/// # Ok::<(), AllocError>(())
/// ```
#[derive(Debug)]
pub struct IovaTree<S> {
    store: S,
    root: u32,
    /// Head of the list of recycled nodes, linked through `left`.
    free_head: u32,
    window: Window,
    allocated: usize,
    reserved: usize,
    /// The identity put in the leases this tree hands out, drawn on the
    /// first lease.
    issuer: Option<Issuer>,
}

impl<const N: usize> IovaTree<heapless::Vec<Node, N>> {
    /// An empty allocator over `window` with room for `N` ranges, inline and
    /// without a heap. A `const fn`, so it can initialise a `static`.
    pub const fn new_fixed(window: Window) -> Self {
        Self {
            store: heapless::Vec::new(),
            root: NIL,
            free_head: NIL,
            window,
            allocated: 0,
            reserved: 0,
            issuer: None,
        }
    }
}

impl<S: Store<Node>> IovaTree<S> {
    /// An empty allocator over `window`, keeping its nodes in `store`
    /// (whose current contents are discarded).
    pub fn new(window: Window, mut store: S) -> Self {
        while store.pop().is_some() {}
        Self { store, root: NIL, free_head: NIL, window, allocated: 0, reserved: 0, issuer: None }
    }

    /// The window this allocator manages.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The number of live allocations (leases and ranges).
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// The number of reserved ranges (after merging overlapping ones).
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Allocates `pages` pages, aligned to `pages` rounded up to a power of
    /// two, at the highest address that lies in the window and entirely at
    /// or below the byte address `dma_limit` (the device's DMA mask, e.g.
    /// `0xFFFF_FFFF`; `Iova::new(u64::MAX)` for no limit). O(log n) for
    /// power-of-two sizes.
    ///
    /// # Errors
    /// [`AllocError::Empty`] for zero pages, [`AllocError::Exhausted`] if no
    /// such range is free, [`AllocError::OutOfNodes`] if the store is full.
    pub fn alloc(&mut self, pages: u64, dma_limit: Iova) -> Result<IovaLease> {
        let range = self.alloc_as(pages, dma_limit, Kind::Lease)?;
        let issuer = *self.issuer.get_or_insert_with(Issuer::fresh);
        Ok(IovaLease::new(PackedRange::new(range), issuer))
    }

    /// Frees a lease this tree handed out. O(log n).
    ///
    /// # Errors
    /// [`AllocError::ForeignLease`] if another allocator issued it (this
    /// tree is unchanged).
    pub fn free(&mut self, lease: IovaLease) -> Result<()> {
        if !self.issued(&lease) {
            return Err(AllocError::ForeignLease);
        }
        self.remove_as(lease.range(), Kind::Lease)
    }

    /// Turns a lease this tree handed out into a plain range, to be freed
    /// by address with [`free_range`](Self::free_range). O(log n).
    ///
    /// # Errors
    /// [`AllocError::ForeignLease`] if another allocator issued it.
    pub fn into_range(&mut self, lease: IovaLease) -> Result<IovaRange> {
        if !self.issued(&lease) {
            return Err(AllocError::ForeignLease);
        }
        self.lease_to_range(lease.range())?;
        Ok(lease.range())
    }

    /// Frees a range that [`into_range`](Self::into_range) returned; `range`
    /// must be exactly that range. O(log n).
    ///
    /// # Errors
    /// [`AllocError::NotAllocated`] for a double free, a range never handed
    /// out, one of another length or one still held as a lease;
    /// [`AllocError::Reserved`] for a reservation. The allocator is unchanged
    /// on error.
    pub fn free_range(&mut self, range: IovaRange) -> Result<()> {
        self.remove_as(range, Kind::Range)
    }

    /// Whether this tree issued `lease`.
    fn issued(&self, lease: &IovaLease) -> bool {
        self.issuer.is_some_and(|issuer| lease.is_from(issuer))
    }

    /// Allocates as [`alloc`](Self::alloc) does, recording the range as
    /// `kind`.
    pub(crate) fn alloc_as(
        &mut self,
        pages: u64,
        dma_limit: Iova,
        kind: Kind,
    ) -> Result<IovaRange> {
        if pages == 0 {
            return Err(AllocError::Empty);
        }
        if pages >= PFN_END {
            return Err(AllocError::Exhausted);
        }
        let hi = self.window.last_page_below(dma_limit).ok_or(AllocError::Exhausted)?;
        let new = self.new_node(Node::new(0, 0, kind))?;
        match self.place(&Request::new(pages, hi), new) {
            Some(start) => {
                self.allocated += 1;
                Ok(IovaRange::from_parts(start, pages))
            }
            None => {
                self.release_node(new);
                Err(AllocError::Exhausted)
            }
        }
    }

    /// Frees the allocation `range`, which must be recorded as `kind`.
    ///
    /// # Errors
    /// As [`free_range`](Self::free_range), `kind` taking the place of
    /// [`Kind::Range`].
    pub(crate) fn remove_as(&mut self, range: IovaRange, kind: Kind) -> Result<()> {
        let expect = Some((range.last_page(), kind));
        self.root = self.remove(self.root, range.start_page(), expect)?;
        self.allocated -= 1;
        Ok(())
    }

    /// Records the allocation `range`, recorded as a lease, as a plain
    /// range: [`into_range`](Self::into_range) without the issuer check.
    pub(crate) fn lease_to_range(&mut self, range: IovaRange) -> Result<()> {
        let i = self.floor(range.start_page()).ok_or(AllocError::NotAllocated)?;
        let node = self.node_mut(i);
        if node.start != range.start_page()
            || node.end != range.last_page()
            || node.kind != Kind::Lease
        {
            return Err(AllocError::NotAllocated);
        }
        node.kind = Kind::Range;
        Ok(())
    }

    /// Reserves `range` so that it is never handed out: a Reserved Memory
    /// Region of the DMAR table (RMRR, VT-d §8.4), which must stay
    /// identity-mapped for its devices, or the interrupt address range
    /// `0xFEE0_0000..=0xFEEF_FFFF`, where a request is an interrupt message
    /// and is never translated (VT-d "Handling Requests to Interrupt Address
    /// Range"). Reservations that overlap merge; a reservation cannot be
    /// freed. O(log n) per range it overlaps.
    ///
    /// # Errors
    /// [`AllocError::OutOfWindow`] if `range` is not inside the window,
    /// [`AllocError::Overlap`] if it overlaps a live allocation,
    /// [`AllocError::OutOfNodes`] if the store is full. Unchanged on error.
    pub fn reserve(&mut self, range: IovaRange) -> Result<()> {
        if !self.window.contains(range) {
            return Err(AllocError::OutOfWindow);
        }
        let (mut lo, mut hi) = (range.start_page(), range.last_page());
        // First pass: every overlapping range must be a reservation.
        let mut below = Some(hi);
        let mut overlaps = 0usize;
        while let Some(i) = below.and_then(|p| self.floor(p)) {
            let node = self.node(i);
            if node.end < range.start_page() {
                break;
            }
            if node.kind != Kind::Reserved {
                return Err(AllocError::Overlap);
            }
            lo = lo.min(node.start);
            hi = hi.max(node.end);
            overlaps += 1;
            below = node.start.checked_sub(1);
        }
        if overlaps == 0 {
            self.insert(lo, hi, Kind::Reserved)?;
        } else {
            // Second pass: replace them by their union; the freed nodes
            // guarantee room for it.
            for _ in 0..overlaps {
                if let Some(i) = self.floor(range.last_page()) {
                    let start = self.node(i).start;
                    self.root = self.remove(self.root, start, None)?;
                }
            }
            self.insert(lo, hi, Kind::Reserved)?;
            self.reserved -= overlaps;
        }
        self.reserved += 1;
        Ok(())
    }

    /// The live allocation or reservation that contains `iova`, if any.
    /// O(log n).
    pub fn owner_of(&self, iova: Iova) -> Option<IovaRange> {
        self.lookup(iova.page_number()).map(|(range, _)| range)
    }

    /// The occupied range containing page `pfn`, and what occupies it.
    pub(crate) fn lookup(&self, pfn: u64) -> Option<(IovaRange, Kind)> {
        let node = self.node(self.floor(pfn)?);
        (node.end >= pfn)
            .then(|| (IovaRange::from_parts(node.start, node.end - node.start + 1), node.kind))
    }

    // ---- search -------------------------------------------------------

    /// Places `req` at its highest fitting position and records it in the
    /// free node `new`, in one pass down the tree; the start page, or `None`
    /// (tree unchanged) if nothing fits.
    fn place(&mut self, req: &Request, new: u32) -> Option<u64> {
        let (base, top) = (self.window.base(), self.window.limit() + 1);
        if self.root == NIL {
            let start = req.place(base, top)?;
            let kind = self.node(new).kind;
            *self.node_mut(new) = Node::new(start, start + req.pages - 1, kind);
            self.root = new;
            return Some(start);
        }
        let root = self.node(self.root);
        let (min_start, max_end) = (root.min_start, root.max_end);
        let (start, root) = match req.place(max_end + 1, top) {
            Some(start) => (start, self.insert_at(self.root, new, start, req.pages)),
            None => match self.search_insert(self.root, req, new) {
                Some(found) => found,
                None => {
                    let start = req.place(base, min_start)?;
                    (start, self.insert_at(self.root, new, start, req.pages))
                }
            },
        };
        self.root = root;
        Some(start)
    }

    /// Finds the highest placement in the gaps between the ranges of
    /// subtree `i` and inserts `new` there: (start, new subtree root). Only
    /// the path to the gap is rebalanced; subtrees that cannot hold the
    /// request are skipped by their summaries.
    fn search_insert(&mut self, i: u32, req: &Request, new: u32) -> Option<(u64, u32)> {
        if i == NIL {
            return None;
        }
        let node = self.node(i);
        if node.min_start > req.hi || !req.may_fit(node.max_gap, node.fit) {
            return None;
        }
        let (start, end, left, right) = (node.start, node.end, node.left, node.right);
        if right != NIL {
            if let Some((s, r)) = self.search_insert(right, req, new) {
                self.node_mut(i).right = r;
                return Some((s, self.rebalance(i)));
            }
            if let Some(s) = req.place(end + 1, self.node(right).min_start) {
                return Some((s, self.insert_at(i, new, s, req.pages)));
            }
        }
        if left == NIL {
            return None;
        }
        if let Some(s) = req.place(self.node(left).max_end + 1, start) {
            return Some((s, self.insert_at(i, new, s, req.pages)));
        }
        let (s, l) = self.search_insert(left, req, new)?;
        self.node_mut(i).left = l;
        Some((s, self.rebalance(i)))
    }

    /// The node with the highest start at or below `pfn`.
    fn floor(&self, pfn: u64) -> Option<u32> {
        let (mut i, mut best) = (self.root, None);
        while i != NIL {
            let node = self.node(i);
            if node.start <= pfn {
                best = Some(i);
                i = node.right;
            } else {
                i = node.left;
            }
        }
        best
    }

    // ---- arena --------------------------------------------------------

    fn node(&self, i: u32) -> &Node {
        &self.store.as_slice()[i as usize]
    }

    fn node_mut(&mut self, i: u32) -> &mut Node {
        &mut self.store.as_mut_slice()[i as usize]
    }

    fn new_node(&mut self, node: Node) -> Result<u32> {
        if self.free_head != NIL {
            let i = self.free_head;
            self.free_head = self.node(i).left;
            *self.node_mut(i) = node;
            return Ok(i);
        }
        let i = u32::try_from(self.store.as_slice().len()).map_err(|_| AllocError::OutOfNodes)?;
        if i == NIL {
            return Err(AllocError::OutOfNodes);
        }
        self.store.push(node).map_err(|_| AllocError::OutOfNodes)?;
        Ok(i)
    }

    fn release_node(&mut self, i: u32) {
        let head = self.free_head;
        self.node_mut(i).left = head;
        self.free_head = i;
    }

    // ---- AVL ----------------------------------------------------------

    fn height(&self, i: u32) -> u8 {
        if i == NIL { 0 } else { self.node(i).height }
    }

    /// Recomputes the height and gap summaries of `i` from its children;
    /// returns the children's heights.
    #[inline]
    fn pull(&mut self, i: u32) -> (u8, u8) {
        let node = self.node(i);
        let (start, end, left, right) = (node.start, node.end, node.left, node.right);
        let (mut min_start, mut max_end, mut max_gap, mut fit) = (start, end, 0, 0);
        let (mut hl, mut hr) = (0, 0);
        if left != NIL {
            let l = self.node(left);
            let (gap, gap_fit) = gap_summary(l.max_end + 1, start);
            min_start = l.min_start;
            max_gap = l.max_gap.max(gap);
            fit = l.fit.max(gap_fit);
            hl = l.height;
        }
        if right != NIL {
            let r = self.node(right);
            let (gap, gap_fit) = gap_summary(end + 1, r.min_start);
            max_end = r.max_end;
            max_gap = max_gap.max(r.max_gap).max(gap);
            fit = fit.max(r.fit).max(gap_fit);
            hr = r.height;
        }
        let out = self.node_mut(i);
        out.min_start = min_start;
        out.max_end = max_end;
        out.max_gap = max_gap;
        out.fit = fit;
        out.height = hl.max(hr) + 1;
        (hl, hr)
    }

    fn rotate_right(&mut self, i: u32) -> u32 {
        let l = self.node(i).left;
        let lr = self.node(l).right;
        self.node_mut(i).left = lr;
        self.node_mut(l).right = i;
        self.pull(i);
        self.pull(l);
        l
    }

    fn rotate_left(&mut self, i: u32) -> u32 {
        let r = self.node(i).right;
        let rl = self.node(r).left;
        self.node_mut(i).right = rl;
        self.node_mut(r).left = i;
        self.pull(i);
        self.pull(r);
        r
    }

    /// Restores the AVL invariant at `i` (children already balanced) and
    /// returns the subtree's new root.
    fn rebalance(&mut self, i: u32) -> u32 {
        let (hl, hr) = self.pull(i);
        let (l, r) = (self.node(i).left, self.node(i).right);
        if hl > hr + 1 {
            if self.height(self.node(l).left) < self.height(self.node(l).right) {
                let nl = self.rotate_left(l);
                self.node_mut(i).left = nl;
            }
            self.rotate_right(i)
        } else if hr > hl + 1 {
            if self.height(self.node(r).right) < self.height(self.node(r).left) {
                let nr = self.rotate_right(r);
                self.node_mut(i).right = nr;
            }
            self.rotate_left(i)
        } else {
            i
        }
    }

    /// Records the occupied range `start..=end` (free of overlap).
    fn insert(&mut self, start: u64, end: u64, kind: Kind) -> Result<()> {
        let new = self.new_node(Node::new(start, end, kind))?;
        self.root = self.link(self.root, new, start);
        Ok(())
    }

    /// Records `pages` pages at `start` (free of overlap) as an allocation
    /// in the free node `new`, inside subtree `i`; returns its new root.
    fn insert_at(&mut self, i: u32, new: u32, start: u64, pages: u64) -> u32 {
        let kind = self.node(new).kind;
        *self.node_mut(new) = Node::new(start, start + pages - 1, kind);
        self.link(i, new, start)
    }

    /// Links the node `new`, starting at `start`, into subtree `i`.
    fn link(&mut self, i: u32, new: u32, start: u64) -> u32 {
        if i == NIL {
            return new;
        }
        if start < self.node(i).start {
            let l = self.link(self.node(i).left, new, start);
            self.node_mut(i).left = l;
        } else {
            let r = self.link(self.node(i).right, new, start);
            self.node_mut(i).right = r;
        }
        self.rebalance(i)
    }

    /// Removes the node starting at `start` from subtree `i`, in one pass;
    /// returns the subtree's new root. With `expect` set to `(last, kind)`,
    /// the node must end at page `last` and be a `kind`; otherwise nothing
    /// changes and the error says why.
    fn remove(&mut self, i: u32, start: u64, expect: Option<(u64, Kind)>) -> Result<u32> {
        if i == NIL {
            return Err(AllocError::NotAllocated);
        }
        let node = self.node(i);
        let (here, left, right) = (node.start, node.left, node.right);
        if start < here {
            let l = self.remove(left, start, expect)?;
            self.node_mut(i).left = l;
        } else if start > here {
            let r = self.remove(right, start, expect)?;
            self.node_mut(i).right = r;
        } else {
            if let Some((last, kind)) = expect {
                if node.end != last {
                    return Err(AllocError::NotAllocated);
                }
                if node.kind != kind {
                    return Err(match node.kind {
                        Kind::Reserved => AllocError::Reserved,
                        Kind::Lease | Kind::Range => AllocError::NotAllocated,
                    });
                }
            }
            self.release_node(i);
            if left == NIL {
                return Ok(right);
            }
            if right == NIL {
                return Ok(left);
            }
            let (right, succ) = self.take_min(right);
            let s = self.node_mut(succ);
            s.left = left;
            s.right = right;
            return Ok(self.rebalance(succ));
        }
        Ok(self.rebalance(i))
    }

    /// Unlinks the lowest node of subtree `i`: (new subtree root, that node).
    fn take_min(&mut self, i: u32) -> (u32, u32) {
        let left = self.node(i).left;
        if left == NIL {
            return (self.node(i).right, i);
        }
        let (l, min) = self.take_min(left);
        self.node_mut(i).left = l;
        (self.rebalance(i), min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tree = IovaTree<heapless::Vec<Node, 256>>;

    fn tree(base: u64, limit: u64) -> Tree {
        IovaTree::new(Window::from_pages(base, limit).unwrap(), heapless::Vec::new())
    }

    const NO_LIMIT: Iova = Iova::new(u64::MAX);

    /// Allocates through the checked path: a plain range.
    fn alloc_range(t: &mut Tree, pages: u64, limit: Iova) -> Result<IovaRange> {
        let lease = t.alloc(pages, limit)?;
        t.into_range(lease)
    }

    /// Checks the AVL and summary invariants of every node.
    fn check(t: &Tree, i: u32) -> u8 {
        if i == NIL {
            return 0;
        }
        let n = *t.node(i);
        let (hl, hr) = (check(t, n.left), check(t, n.right));
        assert!(hl.abs_diff(hr) <= 1);
        let mut t2 = IovaTree { store: t.store.clone(), ..*t };
        t2.pull(i);
        let c = *t2.node(i);
        assert_eq!(
            (c.height, c.max_gap, c.fit, c.min_start, c.max_end),
            (n.height, n.max_gap, n.fit, n.min_start, n.max_end)
        );
        n.height
    }

    #[test]
    fn gap_summaries() {
        assert_eq!(gap_summary(5, 5), (0, 0));
        assert_eq!(gap_summary(5, 6), (1, 1));
        assert_eq!(gap_summary(3, 7), (4, 2)); // 4..6 holds an order-1 block, not order 2
        assert_eq!(gap_summary(4, 8), (4, 3));
        assert_eq!(gap_summary(1, 8), (7, 3));
    }

    #[test]
    fn top_down_aligned_and_limited() {
        let mut t = tree(1, 0xF_FFFF);
        let a = t.alloc(1, NO_LIMIT).unwrap();
        assert_eq!(a.range().start_page(), 0xF_FFFF);
        let b = alloc_range(&mut t, 4, NO_LIMIT).unwrap();
        assert_eq!(b.start_page(), 0xF_FFF8);
        let c = t.alloc(2, NO_LIMIT).unwrap();
        assert_eq!(c.range().start_page(), 0xF_FFFC, "fills the gap left by alignment");
        let d = alloc_range(&mut t, 3, NO_LIMIT).unwrap();
        assert_eq!((d.start_page(), d.pages()), (0xF_FFF4, 3));
        let e = t.alloc(2, Iova::new(0x7FFF_FFFF)).unwrap();
        assert_eq!(e.range().start_page(), 0x7_FFFE);
        assert_eq!(t.allocated(), 5);
        for lease in [a, c, e] {
            t.free(lease).unwrap();
        }
        for r in [b, d] {
            t.free_range(r).unwrap();
        }
        assert_eq!(t.root, NIL);
    }

    #[test]
    fn exhaustion_and_recovery() {
        let mut t = tree(0, 15);
        let all: heapless::Vec<_, 16> =
            (0..16).map(|_| alloc_range(&mut t, 1, NO_LIMIT).unwrap()).collect();
        assert_eq!(t.alloc(1, NO_LIMIT).err(), Some(AllocError::Exhausted));
        t.free_range(all[3]).unwrap();
        assert_eq!(t.alloc(2, NO_LIMIT).err(), Some(AllocError::Exhausted));
        assert_eq!(t.alloc(1, NO_LIMIT).unwrap().range(), all[3]);
        assert_eq!(t.alloc(0, NO_LIMIT).err(), Some(AllocError::Empty));
    }

    #[test]
    fn free_errors_leave_state() {
        let mut t = tree(0, 1023);
        let r = alloc_range(&mut t, 4, NO_LIMIT).unwrap();
        assert_eq!(
            t.free_range(IovaRange::from_pages(r.start_page(), 2).unwrap()),
            Err(AllocError::NotAllocated)
        );
        assert_eq!(
            t.free_range(IovaRange::from_pages(5, 1).unwrap()),
            Err(AllocError::NotAllocated)
        );
        t.free_range(r).unwrap();
        assert_eq!(t.free_range(r), Err(AllocError::NotAllocated));
        let res = IovaRange::from_pages(100, 10).unwrap();
        t.reserve(res).unwrap();
        assert_eq!(t.free_range(res), Err(AllocError::Reserved));
        // A leased range is freed by its lease only.
        let lease = t.alloc(2, NO_LIMIT).unwrap();
        assert_eq!(t.free_range(lease.range()), Err(AllocError::NotAllocated));
        assert_eq!(t.allocated(), 1);
        t.free(lease).unwrap();
        assert_eq!(t.allocated(), 0);
        assert_eq!(t.owner_of(Iova::new(105 << 12)), Some(res));
    }

    #[test]
    fn reserve_merges_and_refuses_live() {
        let mut t = tree(0, 0xF_FFFF);
        let msi = IovaRange::new(Iova::new(0xFEE0_0000), 256).unwrap();
        t.reserve(msi).unwrap();
        t.reserve(IovaRange::new(Iova::new(0xFEF0_0000), 16).unwrap()).unwrap();
        t.reserve(IovaRange::new(Iova::new(0xFED0_0000), 0x201).unwrap()).unwrap();
        assert_eq!(t.reserved(), 1, "the third one bridges the first two");
        assert_eq!(
            t.owner_of(Iova::new(0xFEE0_0000)),
            Some(IovaRange::new(Iova::new(0xFED0_0000), 0x210).unwrap())
        );
        let a = t.alloc(1, NO_LIMIT).unwrap();
        assert_eq!(t.reserve(a.range()), Err(AllocError::Overlap));
        assert_eq!(
            t.reserve(IovaRange::from_pages(0xF_FFFF, 2).unwrap()),
            Err(AllocError::OutOfWindow)
        );
        // Allocations flow around the reservation.
        let mut t = tree(0xFEE00, 0xFEEFF + 4);
        t.reserve(IovaRange::from_pages(0xFEE00, 256).unwrap()).unwrap();
        for _ in 0..4 {
            alloc_range(&mut t, 1, NO_LIMIT).unwrap();
        }
        assert_eq!(t.alloc(1, NO_LIMIT).err(), Some(AllocError::Exhausted));
    }

    #[test]
    fn foreign_leases_are_refused() {
        let (mut t1, mut t2) = (tree(0, 1023), tree(0, 1023));
        let a = t1.alloc(1, NO_LIMIT).unwrap();
        let _b = t2.alloc(1, NO_LIMIT).unwrap();
        assert_eq!(t2.free(a), Err(AllocError::ForeignLease));
        assert_eq!(t2.allocated(), 1, "the foreign lease freed nothing");
        let a = t1.alloc(1, NO_LIMIT).unwrap();
        assert_eq!(t2.into_range(a), Err(AllocError::ForeignLease));
        let mut fresh = tree(0, 1023);
        assert_eq!(fresh.free(t1.alloc(1, NO_LIMIT).unwrap()), Err(AllocError::ForeignLease));
    }

    #[test]
    fn out_of_nodes_is_typed() {
        let mut t: IovaTree<heapless::Vec<Node, 2>> =
            IovaTree::new(Window::from_pages(0, 100).unwrap(), heapless::Vec::new());
        let a = t.alloc(1, NO_LIMIT).unwrap();
        let _b = t.alloc(1, NO_LIMIT).unwrap();
        assert_eq!(t.alloc(1, NO_LIMIT).err(), Some(AllocError::OutOfNodes));
        t.free(a).unwrap();
        let _c = t.alloc(1, NO_LIMIT).unwrap();
    }

    #[test]
    fn stays_balanced() {
        let mut t = tree(0, 1 << 20);
        let mut live = heapless::Vec::<IovaLease, 256>::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if live.len() < 200 && (!x.is_multiple_of(3) || live.is_empty()) {
                live.push(t.alloc(1 + x % 9, NO_LIMIT).unwrap()).unwrap();
            } else {
                let r = live.swap_remove((x as usize / 3) % live.len());
                t.free(r).unwrap();
            }
            if step.is_multiple_of(97) {
                check(&t, t.root);
            }
        }
    }
}
