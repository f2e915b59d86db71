//! Table frames: allocating them zeroed, chaining those detached from a
//! table until the caches that may still walk them are invalidated (VT-d
//! §6.5: the unit may use a detached table until then), and keeping a few
//! released ones, still zero, for the table's next allocations.

use vtd_regs::{FrameAllocator, PAGE_SIZE, PhysAddr, PhysMem};

use crate::error::{Error, Result};

/// A new zeroed table frame, flushed for a non-coherent unit (§6.2.1).
pub(crate) fn alloc_table<M: PhysMem, A: FrameAllocator>(mem: &M, alloc: &A) -> Result<PhysAddr> {
    let f = alloc.allocate(0).ok_or(Error::OutOfFrames)?;
    if let Err(e) = mem.zero_frame(f) {
        alloc.deallocate(f, 0);
        return Err(e.into());
    }
    mem.flush_for_device(f, PAGE_SIZE as usize);
    Ok(f)
}

/// Detached table frames, chained through the frames themselves: the first
/// word of each holds the address of the next. A detached table is empty
/// (every entry R = W = 0), and a frame address has bits 11:0 clear, so the
/// link is a not-present entry to a unit that still walks the table. No
/// capacity limit and no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameChain {
    head: Option<PhysAddr>,
    len: u32,
}

impl FrameChain {
    /// No frames.
    pub(crate) const EMPTY: Self = Self { head: None, len: 0 };

    /// Prepends the empty table frame `frame`.
    #[inline]
    pub(crate) fn push<M: PhysMem>(&mut self, mem: &M, frame: PhysAddr) -> Result<()> {
        mem.write_u64(frame, self.head.map_or(0, PhysAddr::as_u64))?;
        self.head = Some(frame);
        self.len += 1;
        Ok(())
    }

    /// How many frames are chained.
    #[inline]
    pub(crate) const fn len(&self) -> u32 {
        self.len
    }

    /// Gives every frame to `spare`, or back to `alloc` once `spare` is
    /// full, clearing the links so the frames are zeroed again (every other
    /// entry of a detached table is empty, 0). Bounded by the count,
    /// whatever the links say.
    pub(crate) fn free<M: PhysMem, A: FrameAllocator>(
        self,
        mem: &M,
        alloc: &A,
        spare: &mut SpareFrames,
    ) {
        let mut next = self.head;
        for _ in 0..self.len {
            let Some(f) = next else { break };
            next = mem.read_u64(f).ok().map(PhysAddr::new);
            if mem.write_u64(f, 0).is_ok() {
                mem.flush_for_device(f, 8);
                if spare.keep(f) {
                    continue;
                }
            }
            alloc.deallocate(f, 0);
        }
    }
}

/// The most released table frames a table keeps.
pub const MAX_SPARE_FRAMES: u8 = 8;

/// Released table frames, all zero, that the table allocates before it asks
/// its allocator (and zeroes a frame): a table whose pages come and go in
/// one region (a shadow of a guest that maps and unmaps one buffer) then
/// detaches and rebuilds its last-level table without zeroing 4 KiB each
/// time. A frame enters only through [`FrameChain::free`], that is once
/// the invalidation of the token that detached it completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpareFrames {
    frames: [PhysAddr; MAX_SPARE_FRAMES as usize],
    len: u8,
    /// How many it keeps (at most [`MAX_SPARE_FRAMES`]; 0: none).
    limit: u8,
}

impl SpareFrames {
    /// None kept, keeping up to `limit` (capped at [`MAX_SPARE_FRAMES`]).
    pub(crate) const fn new(limit: u8) -> Self {
        let limit = if limit < MAX_SPARE_FRAMES { limit } else { MAX_SPARE_FRAMES };
        Self { frames: [PhysAddr::ZERO; MAX_SPARE_FRAMES as usize], len: 0, limit }
    }

    /// Keeps the zeroed frame `f`; `false` when full.
    #[inline]
    fn keep(&mut self, f: PhysAddr) -> bool {
        let Some(slot) =
            self.frames.get_mut(usize::from(self.len)).filter(|_| self.len < self.limit)
        else {
            return false;
        };
        *slot = f;
        self.len += 1;
        true
    }

    /// A zeroed frame, if one is kept.
    #[inline]
    pub(crate) fn take(&mut self) -> Option<PhysAddr> {
        let f = *self.frames.get(usize::from(self.len.checked_sub(1)?))?;
        self.len -= 1;
        Some(f)
    }

    /// Changes the limit; the frames beyond it go back to `alloc`.
    pub(crate) fn set_limit<A: FrameAllocator>(&mut self, limit: u8, alloc: &A) {
        self.limit = limit.min(MAX_SPARE_FRAMES);
        while self.len > self.limit {
            if let Some(f) = self.take() {
                alloc.deallocate(f, 0);
            }
        }
    }

    /// How many are kept.
    pub(crate) const fn len(&self) -> u8 {
        self.len
    }
}
