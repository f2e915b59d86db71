//! Table frames: allocating them zeroed, and chaining those detached from a
//! table until the caches that may still walk them are invalidated (VT-d
//! §6.5: the unit may use a detached table until then).

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

    /// Gives every frame back to `alloc`, clearing the links so the frames
    /// are zeroed again. Bounded by the count, whatever the links say.
    pub(crate) fn free<M: PhysMem, A: FrameAllocator>(self, mem: &M, alloc: &A) {
        let mut next = self.head;
        for _ in 0..self.len {
            let Some(f) = next else { break };
            next = mem.read_u64(f).ok().map(PhysAddr::new);
            let _ = mem.write_u64(f, 0);
            alloc.deallocate(f, 0);
        }
    }
}
