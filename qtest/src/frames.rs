//! [`GuestFrames`]: a frame allocator over a region of guest RAM, for
//! translation tables, invalidation queues and DMA buffers.

use std::cell::RefCell;
use std::rc::Rc;

use vtd_regs::{FrameAllocator, PAGE_SHIFT, PAGE_SIZE, PhysAddr};

/// The default region: 16 MiB .. 128 MiB of the 256 MiB guest, clear of the
/// low megabyte and of anything QEMU places at the top of RAM.
pub const DEFAULT_REGION: (PhysAddr, PhysAddr) =
    (PhysAddr::new(16 << 20), PhysAddr::new(128 << 20));

/// The largest block handed out: 2^20 frames (4 GiB) is beyond any region.
const MAX_ORDER: u8 = 20;

/// First-fit allocator of naturally aligned blocks of 2^order frames over
/// `[start, end)`, one flag per frame.
///
/// Clones share one pool, so a context manager and each page table can own
/// a handle to the same frames. Not `Send`: one test thread, one QEMU.
#[derive(Clone)]
pub struct GuestFrames {
    start: PhysAddr,
    used: Rc<RefCell<Vec<bool>>>,
}

impl GuestFrames {
    /// An allocator over `[start, end)`; both ends are rounded inwards to
    /// whole frames.
    pub fn new(start: PhysAddr, end: PhysAddr) -> Self {
        let first = start.as_u64().div_ceil(PAGE_SIZE);
        let last = end.page_number();
        let frames = last.saturating_sub(first) as usize;
        GuestFrames {
            start: PhysAddr::new(first << PAGE_SHIFT),
            used: Rc::new(RefCell::new(vec![false; frames])),
        }
    }

    /// How many frames are in use.
    pub fn in_use(&self) -> usize {
        self.used.borrow().iter().filter(|u| **u).count()
    }

    /// The frame index range of the block at `addr` of `order`, if it lies in
    /// the region.
    fn block(&self, addr: PhysAddr, order: u8) -> Option<std::ops::Range<usize>> {
        let first = addr.as_u64().checked_sub(self.start.as_u64())? >> PAGE_SHIFT;
        let first = usize::try_from(first).ok()?;
        let end = first.checked_add(1usize.checked_shl(order.into())?)?;
        (end <= self.used.borrow().len()).then_some(first..end)
    }
}

impl Default for GuestFrames {
    fn default() -> Self {
        GuestFrames::new(DEFAULT_REGION.0, DEFAULT_REGION.1)
    }
}

// SAFETY: every block handed out is marked used until it is given back, and
// blocks never overlap, so no block is in use twice. The region is guest RAM
// that nothing else in the test allocates from.
unsafe impl FrameAllocator for GuestFrames {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        if order > MAX_ORDER {
            return None;
        }
        let size = 1usize << order;
        // Natural alignment is of the physical address, not of the index.
        let base = self.start.page_number() as usize;
        let skew = base.next_multiple_of(size) - base;
        let mut used = self.used.borrow_mut();
        let total = used.len();
        let first = (skew..total)
            .step_by(size)
            .take_while(|i| i + size <= total)
            .find(|i| used[*i..*i + size].iter().all(|u| !*u))?;
        used[first..first + size].fill(true);
        self.start.checked_add((first as u64) << PAGE_SHIFT)
    }

    /// A block that is not one of this allocator's is ignored.
    fn deallocate(&self, addr: PhysAddr, order: u8) {
        if let Some(range) = self.block(addr, order) {
            self.used.borrow_mut()[range].fill(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_disjoint_and_reusable() {
        // A region starting off a 16 KiB boundary.
        let f = GuestFrames::new(PhysAddr::new(0x1_1000), PhysAddr::new(0x2_0000));
        let a = f.allocate(0).unwrap();
        assert_eq!(a, PhysAddr::new(0x1_1000));
        let b = f.allocate(2).unwrap();
        assert!(b.is_aligned(4 * PAGE_SIZE));
        assert_eq!(b, PhysAddr::new(0x1_4000));
        let c = f.allocate(0).unwrap();
        assert_eq!(c, PhysAddr::new(0x1_2000));
        assert_eq!(f.in_use(), 6);
        // Only 0x18000..0x20000 is left for an order-3 block: it fits once.
        assert_eq!(f.allocate(3), Some(PhysAddr::new(0x1_8000)));
        assert_eq!(f.allocate(3), None);
        assert_eq!(f.allocate(MAX_ORDER + 1), None);
        f.deallocate(b, 2);
        assert_eq!(f.allocate(2), Some(b));
        // Giving back something foreign is ignored.
        f.deallocate(PhysAddr::new(0), 0);
        assert_eq!(f.in_use(), 14);
        // A clone allocates from the same pool.
        let g = f.clone();
        g.deallocate(b, 2);
        assert_eq!(f.in_use(), 10);
    }
}
