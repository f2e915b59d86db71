//! Where IOVAs come from: the allocators of `iova-alloc` behind one small
//! interface, so the mapping layer runs on the tree alone or on a
//! per-CPU magazine handle, or on a device queue's own ring
//! ([`IovaRing`], [`RingHandle`]: per-ring contiguous allocation, so a
//! batched unmap of the ring's buffers is invalidated as one range).
//!
//! The mapping layer holds each mapping's allocation as the allocator's
//! lease until the invalidation of its teardown completes, and frees it by
//! value: with the magazine cache, the fast path of a teardown's release is
//! a magazine push, with no check left to make.

use core::sync::atomic::AtomicU8;

use iova_alloc::{
    AllocError, CpuHandle, IovaLease, IovaRange, IovaRing, IovaTree, Magazine, Node, RingHandle,
    RingLease, Store,
};
use vtd_regs::Iova;

/// An IOVA allocator the mapping layer draws from.
pub trait IovaSpace {
    /// What an allocation is held as until it is freed.
    type Lease;
    /// `pages` pages (or more: the lease's range says) below `limit`.
    fn alloc(&mut self, pages: u64, limit: Iova) -> Result<Self::Lease, AllocError>;
    /// The range `lease` holds.
    fn range(lease: &Self::Lease) -> IovaRange;
    /// Gives back a lease [`alloc`](Self::alloc) returned.
    fn free(&mut self, lease: Self::Lease) -> Result<(), AllocError>;
}

/// [`IovaSpace`] for allocators whose own `alloc`, `free` and lease
/// `range` are the trait's.
macro_rules! iova_space {
    ($([$($generics:tt)*] $space:ty => $lease:ty;)*) => {$(
        impl<$($generics)*> IovaSpace for $space {
            type Lease = $lease;
            #[inline]
            fn alloc(&mut self, pages: u64, limit: Iova) -> Result<$lease, AllocError> {
                <$space>::alloc(self, pages, limit)
            }
            #[inline]
            fn range(lease: &$lease) -> IovaRange {
                lease.range()
            }
            #[inline]
            fn free(&mut self, lease: $lease) -> Result<(), AllocError> {
                <$space>::free(self, lease)
            }
        }
    )*};
}

iova_space! {
    [S: Store<Node>] IovaTree<S> => IovaLease;
    [S: Store<Node>, D: Store<Magazine>, B: AsRef<[AtomicU8]>] CpuHandle<'_, S, D, B> => IovaLease;
    [const N: usize] IovaRing<N> => RingLease;
    [const R: usize, const N: usize] RingHandle<'_, R, N> => RingLease;
}

/// No space at all: every IOVA of the mapper is chosen by its caller
/// ([`Mapper::map_at`](crate::Mapper::map_at)), as a vIOMMU does when it
/// installs a guest's own IOVAs. [`Mapper::map`](crate::Mapper::map) fails
/// with [`AllocError::Exhausted`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PlacedOnly;

impl IovaSpace for PlacedOnly {
    /// It never hands out a range.
    type Lease = core::convert::Infallible;
    #[inline]
    fn alloc(&mut self, _pages: u64, _limit: Iova) -> Result<Self::Lease, AllocError> {
        Err(AllocError::Exhausted)
    }
    #[inline]
    fn range(lease: &Self::Lease) -> IovaRange {
        match *lease {}
    }
    #[inline]
    fn free(&mut self, lease: Self::Lease) -> Result<(), AllocError> {
        match lease {}
    }
}
