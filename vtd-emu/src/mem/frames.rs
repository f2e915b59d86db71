//! `SimFrameAllocator`: frames for tables and queues out of a region of
//! simulated memory.
//!
//! A bump pointer hands out fresh memory; freed blocks go to one free list
//! per order, threaded through the first word of each free block (so the
//! allocator needs no heap). The list links are read back through
//! [`PhysMem`] and checked, so a block overwritten after it was freed costs
//! at most the rest of that list, never an out-of-region allocation.

use vtd_regs::{FrameAllocator, PAGE_SHIFT, PhysAddr, PhysMem};

/// The largest block order served: 2^10 frames (4 MiB), more than the
/// largest invalidation queue (2^7 frames, §10.4.23).
pub const MAX_ORDER: u8 = 10;

const ORDERS: usize = MAX_ORDER as usize + 1;

/// Encodes a free-list link in a free block's first word: `addr | 1`, so that
/// 0 (e.g. a zeroed or wiped block) reads as the end of the list.
const LINK_TAG: u64 = 1;

#[derive(Debug)]
struct State {
    /// Next never-allocated byte.
    bump: u64,
    /// Head of the free list of each order.
    free: [Option<PhysAddr>; ORDERS],
    /// Frames allocated and not yet freed.
    live_frames: u64,
}

/// A frame allocator over `[start, end)` of a [`PhysMem`], for simulated
/// memory.
#[derive(Debug)]
pub struct SimFrameAllocator<M> {
    mem: M,
    start: u64,
    end: u64,
    state: spin::Mutex<State>,
}

impl<M: PhysMem> SimFrameAllocator<M> {
    /// An allocator of the frames in `[start, end)` of `mem` (both rounded
    /// inwards to 4 KiB).
    pub fn new(mem: M, start: PhysAddr, end: PhysAddr) -> Self {
        let page = 1u64 << PAGE_SHIFT;
        let start = start.as_u64().checked_next_multiple_of(page).unwrap_or(!(page - 1));
        let end = (end.as_u64() & !(page - 1)).max(start);
        Self {
            mem,
            start,
            end,
            state: spin::Mutex::new(State { bump: start, free: [None; ORDERS], live_frames: 0 }),
        }
    }

    /// The memory the frames live in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Frames currently allocated (for leak tests: 0 after everything built
    /// on this allocator has been torn down).
    pub fn live_frames(&self) -> u64 {
        self.state.lock().live_frames
    }

    /// Whether `[addr, addr + 2^order frames)` is a naturally aligned block of
    /// the region.
    fn is_block(&self, addr: u64, order: u8) -> bool {
        let size = block_bytes(order);
        addr.is_multiple_of(size)
            && addr >= self.start
            && addr.checked_add(size).is_some_and(|e| e <= self.end)
    }

    fn push(&self, st: &mut State, addr: u64, order: u8) {
        let next = st.free[usize::from(order)].map_or(0, |a| a.as_u64() | LINK_TAG);
        if self.mem.write_u64(PhysAddr::new(addr), next).is_ok() {
            st.free[usize::from(order)] = Some(PhysAddr::new(addr));
        }
    }

    fn pop(&self, st: &mut State, order: u8) -> Option<u64> {
        let head = st.free[usize::from(order)]?.as_u64();
        let link = self.mem.read_u64(PhysAddr::new(head)).unwrap_or(0);
        let next = link & !LINK_TAG;
        st.free[usize::from(order)] = (link & LINK_TAG == LINK_TAG && self.is_block(next, order))
            .then_some(PhysAddr::new(next));
        Some(head)
    }

    fn take(&self, st: &mut State, order: u8) -> Option<u64> {
        if let Some(a) = self.pop(st, order) {
            return Some(a);
        }
        // Split the smallest larger free block, keeping the upper halves.
        for bigger in order + 1..=MAX_ORDER {
            if let Some(a) = self.pop(st, bigger) {
                for o in (order..bigger).rev() {
                    self.push(st, a + block_bytes(o), o);
                }
                return Some(a);
            }
        }
        // Fresh memory: the alignment gap below the block becomes free
        // blocks of smaller orders.
        let size = block_bytes(order);
        let aligned = st.bump.checked_next_multiple_of(size)?;
        if aligned.checked_add(size)? > self.end {
            return None;
        }
        while st.bump < aligned {
            let o = (st.bump.trailing_zeros() - PAGE_SHIFT).min(u32::from(order)) as u8;
            self.push(st, st.bump, o);
            st.bump += block_bytes(o);
        }
        st.bump = aligned + size;
        Some(aligned)
    }
}

const fn block_bytes(order: u8) -> u64 {
    1u64 << (PAGE_SHIFT + order as u32)
}

// SAFETY: blocks are carved from `[start, end)` without overlap: the bump
// pointer only grows, and a block is on a free list only after `deallocate`
// returned it (links are validated to be aligned blocks of the region), so
// no block is handed out twice unless a caller breaks `deallocate`'s
// contract. Nothing in this crate keeps Rust references into the memory.
#[allow(unsafe_code)]
unsafe impl<M: PhysMem> FrameAllocator for SimFrameAllocator<M> {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        if order > MAX_ORDER {
            return None;
        }
        let mut st = self.state.lock();
        let a = self.take(&mut st, order)?;
        st.live_frames += 1 << order;
        Some(PhysAddr::new(a))
    }

    fn deallocate(&self, addr: PhysAddr, order: u8) {
        if order > MAX_ORDER || !self.is_block(addr.as_u64(), order) {
            return;
        }
        let mut st = self.state.lock();
        if addr.as_u64() >= st.bump {
            return;
        }
        st.live_frames = st.live_frames.saturating_sub(1 << order);
        self.push(&mut st, addr.as_u64(), order);
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::mem::HeapMemory;

    fn dealloc(a: &SimFrameAllocator<&HeapMemory>, addr: PhysAddr, order: u8) {
        a.deallocate(addr, order)
    }

    #[test]
    fn allocates_aligned_disjoint_blocks_and_reuses_freed_ones() {
        let mem = HeapMemory::new(64 << 12);
        let fa = SimFrameAllocator::new(&mem, PhysAddr::new(0x1000), PhysAddr::new(64 << 12));
        let a = fa.allocate(0).unwrap();
        assert_eq!(a, PhysAddr::new(0x1000));
        // Order 2 must be 16 KiB aligned: frames 2 and 3 become free blocks.
        let b = fa.allocate(2).unwrap();
        assert_eq!(b, PhysAddr::new(0x4000));
        assert_eq!(fa.live_frames(), 5);
        assert_eq!(fa.allocate(0), Some(PhysAddr::new(0x2000)));
        assert_eq!(fa.allocate(0), Some(PhysAddr::new(0x3000)));
        dealloc(&fa, b, 2);
        assert_eq!(fa.live_frames(), 3);
        // The freed order-2 block is split for smaller requests.
        assert_eq!(fa.allocate(0), Some(PhysAddr::new(0x4000)));
        assert_eq!(fa.allocate(1), Some(PhysAddr::new(0x6000)));
        assert_eq!(fa.allocate(0), Some(PhysAddr::new(0x5000)));
        assert_eq!(fa.allocate(MAX_ORDER + 1), None);
        // Bogus frees are ignored.
        dealloc(&fa, PhysAddr::new(0x1800), 0);
        dealloc(&fa, PhysAddr::new(0x100_0000), 0);
        dealloc(&fa, PhysAddr::new(0x3_0000), 0);
        assert_eq!(fa.live_frames(), 7);
    }

    #[test]
    fn exhaustion_and_corrupted_free_list() {
        let mem = HeapMemory::new(4 << 12);
        let fa = SimFrameAllocator::new(&mem, PhysAddr::new(0), PhysAddr::new(4 << 12));
        let all: Vec<_> = (0..4).map(|_| fa.allocate(0).unwrap()).collect();
        assert_eq!(fa.allocate(0), None);
        for &a in &all {
            dealloc(&fa, a, 0);
        }
        assert_eq!(fa.live_frames(), 0);
        // A stray write into a free block cuts its list, never escapes the region.
        mem.write_u64(all[3], 0x7fff_f001).unwrap();
        assert_eq!(fa.allocate(0), Some(all[3]));
        assert_eq!(fa.allocate(0), None);
    }
}
