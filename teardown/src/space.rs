//! Where IOVAs come from: the allocators of `iova-alloc` behind one small
//! interface, so the mapping layer runs on the tree alone or on a
//! per-CPU magazine handle.

use core::sync::atomic::AtomicU8;

use iova_alloc::{AllocError, CpuHandle, IovaRange, IovaTree, Magazine, Node, Store};
use vtd_regs::Iova;

/// An IOVA allocator the mapping layer draws from.
pub trait IovaSpace {
    /// `pages` pages (or more: the range returned says) below `limit`.
    fn alloc(&mut self, pages: u64, limit: Iova) -> Result<IovaRange, AllocError>;
    /// Gives back a range [`alloc`](Self::alloc) returned.
    fn free(&mut self, range: IovaRange) -> Result<(), AllocError>;
}

impl<S: Store<Node>> IovaSpace for IovaTree<S> {
    #[inline]
    fn alloc(&mut self, pages: u64, limit: Iova) -> Result<IovaRange, AllocError> {
        IovaTree::alloc(self, pages, limit)
    }
    #[inline]
    fn free(&mut self, range: IovaRange) -> Result<(), AllocError> {
        IovaTree::free(self, range)
    }
}

impl<S, D, B> IovaSpace for CpuHandle<'_, S, D, B>
where
    S: Store<Node>,
    D: Store<Magazine>,
    B: AsRef<[AtomicU8]>,
{
    #[inline]
    fn alloc(&mut self, pages: u64, limit: Iova) -> Result<IovaRange, AllocError> {
        CpuHandle::alloc(self, pages, limit)
    }
    #[inline]
    fn free(&mut self, range: IovaRange) -> Result<(), AllocError> {
        CpuHandle::free(self, range)
    }
}

/// No space at all: every IOVA of the mapper is chosen by its caller
/// ([`Mapper::map_at`](crate::Mapper::map_at)), as a vIOMMU does when it
/// installs a guest's own IOVAs. [`Mapper::map`](crate::Mapper::map) fails
/// with [`AllocError::Exhausted`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PlacedOnly;

impl IovaSpace for PlacedOnly {
    #[inline]
    fn alloc(&mut self, _pages: u64, _limit: Iova) -> Result<IovaRange, AllocError> {
        Err(AllocError::Exhausted)
    }
    #[inline]
    fn free(&mut self, _range: IovaRange) -> Result<(), AllocError> {
        Err(AllocError::NotAllocated)
    }
}
