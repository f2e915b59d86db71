//! Table frames: allocating them zeroed, and those detached from a table, waiting for the IOTLB and
//! paging-structure caches to be invalidated before they may be freed
//! (VT-d §6.5: the unit may still walk them until then).

use vtd_regs::{FrameAllocator, PAGE_SIZE, PhysAddr, PhysMem};

use crate::error::{Error, Result};

/// How many frames one token holds without the `alloc` feature. When it is
/// full, further tables that become empty stay attached (empty, reused by
/// later maps, freed by [`destroy`](crate::SlPageTable::destroy)).
#[cfg(not(feature = "alloc"))]
pub const FIXED_CAPACITY: usize = 8;

/// A list of detached frames: a `Vec` with `alloc`, a fixed array without.
#[derive(Debug, Default)]
pub(crate) struct DetachedFrames {
    #[cfg(feature = "alloc")]
    frames: alloc::vec::Vec<PhysAddr>,
    #[cfg(not(feature = "alloc"))]
    frames: [PhysAddr; FIXED_CAPACITY],
    #[cfg(not(feature = "alloc"))]
    len: usize,
}

impl DetachedFrames {
    /// Whether one more frame fits.
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        #[cfg(feature = "alloc")]
        return true;
        #[cfg(not(feature = "alloc"))]
        return self.len < FIXED_CAPACITY;
    }

    /// Adds a frame; the caller checked [`has_room`](Self::has_room).
    #[inline]
    pub(crate) fn push(&mut self, frame: PhysAddr) {
        #[cfg(feature = "alloc")]
        self.frames.push(frame);
        #[cfg(not(feature = "alloc"))]
        if let Some(slot) = self.frames.get_mut(self.len) {
            *slot = frame;
            self.len += 1;
        }
    }

    /// The frames.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[PhysAddr] {
        #[cfg(feature = "alloc")]
        return &self.frames;
        #[cfg(not(feature = "alloc"))]
        return self.frames.get(..self.len).unwrap_or(&[]);
    }
}

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
