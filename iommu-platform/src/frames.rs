//! [`RegionFrames`]: a frame allocator for kernels and unikernels, over one
//! region of physical memory the OS sets aside for IOMMU tables and queues.
//!
//! No heap, no use of the region itself for bookkeeping (a stray DMA or
//! software write into a free frame cannot corrupt the allocator), and a
//! bounded cost: one bit per frame in a fixed bitmap, a first-fit scan of at
//! most the whole bitmap per allocation. A block is handed out only when
//! every one of its bits is clear, and a free clears bits only of a block
//! that is wholly allocated, so no frame is ever handed out twice, whatever
//! the callers do.

use core::fmt;

use crate::addr::{PAGE_SHIFT, PhysAddr};
use crate::mem::FrameAllocator;

/// Frames one bitmap word covers.
const BITS: u64 = u64::BITS as u64;

/// The largest block order served: 2^20 frames (4 GiB).
pub const MAX_ORDER: u8 = 20;

/// Why a region cannot be managed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegionError {
    /// The region holds no whole frame.
    Empty,
    /// The region holds more frames than the bitmap covers.
    TooLarge {
        /// Whole frames in the region.
        frames: u64,
        /// Frames the allocator can track (64 per bitmap word).
        capacity: u64,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::Empty => f.write_str("the frame region holds no whole frame"),
            RegionError::TooLarge { frames, capacity } => write!(
                f,
                "the frame region holds {frames} frames, more than the {capacity} \
                 the allocator tracks (raise WORDS)"
            ),
        }
    }
}

impl core::error::Error for RegionError {}

#[derive(Debug)]
struct Bitmap<const WORDS: usize> {
    /// Bit `i` set: frame `base + i` is handed out.
    used: [u64; WORDS],
    /// Bit `i` set: frame `base + i` is the first of a block handed out.
    starts: [u64; WORDS],
    in_use: u64,
    /// Frees refused: double, foreign or misaligned.
    refused: u64,
}

/// A frame allocator over the physical region `[start, end)`, tracking up
/// to `64 * WORDS` frames (64 words: 4096 frames, 16 MiB) in a bitmap of
/// `WORDS` words. `const`-constructible, so it can live in a `static`.
///
/// Blocks of 2^order frames are naturally aligned by physical address, as
/// [`FrameAllocator`] requires. Frees of anything that is not a live block
/// (a double free, a wrong order, an address outside the region) are
/// ignored and counted ([`refused_frees`](Self::refused_frees)).
///
/// ```
/// use iommu_platform::{FrameAllocator, PhysAddr, RegionFrames};
///
/// // 1 MiB of RAM the kernel set aside for IOMMU tables.
/// static FRAMES: RegionFrames<4> =
///     match RegionFrames::new(PhysAddr::new(0x20_0000), PhysAddr::new(0x30_0000)) {
///         Ok(frames) => frames,
///         Err(_) => panic!("the region does not fit the bitmap"),
///     };
///
/// let table = FRAMES.allocate(0).unwrap();
/// let queue = FRAMES.allocate(2).unwrap(); // 16 KiB, 16 KiB aligned
/// assert!(queue.is_aligned(4 << 12) && queue != table);
/// FRAMES.deallocate(queue, 2);
/// FRAMES.deallocate(queue, 2); // a double free is refused, not obeyed
/// assert_eq!((FRAMES.in_use(), FRAMES.refused_frees()), (1, 1));
/// ```
///
/// A bitmap of no word is refused when the allocator is built:
///
/// ```compile_fail,E0080
/// use iommu_platform::{PhysAddr, RegionFrames};
///
/// let frames = RegionFrames::<0>::new(PhysAddr::new(0), PhysAddr::new(0x1000));
/// ```
#[derive(Debug)]
pub struct RegionFrames<const WORDS: usize = 64> {
    /// Page number of the first frame.
    base: u64,
    /// Frames in the region (at most `64 * WORDS`).
    frames: u64,
    bitmap: spin::Mutex<Bitmap<WORDS>>,
}

impl<const WORDS: usize> RegionFrames<WORDS> {
    /// An allocator of the whole frames in `[start, end)` (both rounded
    /// inwards to 4 KiB).
    ///
    /// # Errors
    /// [`RegionError::Empty`] if no whole frame lies in the range,
    /// [`RegionError::TooLarge`] if more than `64 * WORDS` do.
    pub const fn new(start: PhysAddr, end: PhysAddr) -> Result<Self, RegionError> {
        const {
            assert!(
                WORDS > 0,
                "RegionFrames<WORDS>: WORDS (bitmap words, 64 frames each) must be at least 1"
            );
        }
        let first = start.as_u64().div_ceil(1 << PAGE_SHIFT);
        let last = end.page_number();
        if last <= first {
            return Err(RegionError::Empty);
        }
        let frames = last - first;
        let capacity = WORDS as u64 * BITS;
        if frames > capacity {
            return Err(RegionError::TooLarge { frames, capacity });
        }
        Ok(Self {
            base: first,
            frames,
            bitmap: spin::Mutex::new(Bitmap {
                used: [0; WORDS],
                starts: [0; WORDS],
                in_use: 0,
                refused: 0,
            }),
        })
    }

    /// The region managed: its first frame and the end of its last.
    pub fn region(&self) -> (PhysAddr, PhysAddr) {
        let at = |pfn: u64| PhysAddr::new(pfn << PAGE_SHIFT);
        (at(self.base), at(self.base + self.frames))
    }

    /// Frames in the region.
    pub const fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames handed out and not given back.
    pub fn in_use(&self) -> u64 {
        self.bitmap.lock().in_use
    }

    /// Frees that were ignored because they did not give back a live block.
    pub fn refused_frees(&self) -> u64 {
        self.bitmap.lock().refused
    }

    /// The bitmap index range of the block of `order` at `addr`, if it is a
    /// naturally aligned block inside the region.
    fn block(&self, addr: PhysAddr, order: u8) -> Option<(u64, u64)> {
        let size = 1u64.checked_shl(order.into())?;
        if order > MAX_ORDER || !addr.is_aligned(size << PAGE_SHIFT) {
            return None;
        }
        let first = addr.page_number().checked_sub(self.base)?;
        (first.checked_add(size)? <= self.frames).then_some((first, size))
    }
}

impl<const WORDS: usize> Bitmap<WORDS> {
    /// The bits of word `w` that lie in `[first, first + size)`.
    fn word_mask(w: u64, first: u64, size: u64) -> u64 {
        let lo = first.max(w * BITS) - w * BITS;
        let hi = (first + size).min((w + 1) * BITS) - w * BITS;
        if hi - lo == BITS { u64::MAX } else { ((1u64 << (hi - lo)) - 1) << lo }
    }

    /// The words `[first, first + size)` spans.
    fn words(first: u64, size: u64) -> core::ops::Range<u64> {
        first / BITS..(first + size).div_ceil(BITS)
    }

    /// Whether every frame of `[first, first + size)` is free.
    fn all_free(&self, first: u64, size: u64) -> bool {
        Self::words(first, size).all(|w| {
            let bits = self.used.get(w as usize).copied().unwrap_or(u64::MAX);
            bits & Self::word_mask(w, first, size) == 0
        })
    }

    /// Bit `i` of `map` (out of range: clear).
    fn bit(map: &[u64; WORDS], i: u64) -> bool {
        map.get((i / BITS) as usize).is_some_and(|w| w >> (i % BITS) & 1 == 1)
    }

    /// Whether `[first, first + size)` is exactly one block handed out: it
    /// starts a block, every frame is handed out, no other block starts
    /// inside, and the frame after it is free or starts another block.
    fn is_block(&self, first: u64, size: u64) -> bool {
        if !Self::bit(&self.starts, first) {
            return false;
        }
        let whole = Self::words(first, size).all(|w| {
            let mask = Self::word_mask(w, first, size);
            let used = self.used.get(w as usize).copied().unwrap_or(0);
            let mut inner = self.starts.get(w as usize).copied().unwrap_or(0) & mask;
            if w == first / BITS {
                inner &= !(1 << (first % BITS));
            }
            used & mask == mask && inner == 0
        });
        let end = first + size;
        whole && (!Self::bit(&self.used, end) || Self::bit(&self.starts, end))
    }

    /// Hands out (`on`) or takes back the block `[first, first + size)`.
    fn mark(&mut self, first: u64, size: u64, on: bool) {
        let set = |bits: &mut u64, mask: u64| *bits = if on { *bits | mask } else { *bits & !mask };
        for w in Self::words(first, size) {
            if let Some(bits) = self.used.get_mut(w as usize) {
                set(bits, Self::word_mask(w, first, size));
            }
        }
        if let Some(bits) = self.starts.get_mut((first / BITS) as usize) {
            set(bits, 1 << (first % BITS));
        }
    }
}

// SAFETY: a block is handed out only when all of its frames are free, and
// they are marked handed out before the lock is released; a free takes back
// only exactly a block handed out and not yet given back (its start bit,
// its frames, no other start inside, its end), so the blocks handed out
// never overlap, whatever `deallocate` is called with. The allocator never
// touches the region's memory.
#[allow(unsafe_code)]
unsafe impl<const WORDS: usize> FrameAllocator for RegionFrames<WORDS> {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        if order > MAX_ORDER {
            return None;
        }
        let size = 1u64 << order;
        // The first index whose frame number is a multiple of the size.
        let mut first = self.base.next_multiple_of(size) - self.base;
        let mut map = self.bitmap.lock();
        while first + size <= self.frames {
            // A full word cannot start a free block: skip it whole.
            let word = map.used.get((first / BITS) as usize).copied().unwrap_or(u64::MAX);
            if size < BITS && word == u64::MAX {
                first = ((first / BITS + 1) * BITS).next_multiple_of(size);
                first = (self.base + first).next_multiple_of(size) - self.base;
                continue;
            }
            if map.all_free(first, size) {
                map.mark(first, size, true);
                map.in_use += size;
                return PhysAddr::from_page_number(self.base + first);
            }
            first += size;
        }
        None
    }

    fn deallocate(&self, addr: PhysAddr, order: u8) {
        let mut map = self.bitmap.lock();
        match self.block(addr, order) {
            Some((first, size)) if map.is_block(first, size) => {
                map.mark(first, size, false);
                map.in_use -= size;
            }
            _ => map.refused += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn frames<const W: usize>(start: u64, end: u64) -> RegionFrames<W> {
        RegionFrames::new(PhysAddr::new(start), PhysAddr::new(end)).unwrap()
    }

    #[test]
    fn region_bounds() {
        let r = frames::<1>(0x1800, 0x5fff);
        assert_eq!(r.region(), (PhysAddr::new(0x2000), PhysAddr::new(0x5000)));
        assert_eq!(r.frames(), 3);
        let new = |a, b| RegionFrames::<1>::new(PhysAddr::new(a), PhysAddr::new(b)).map(|_| ());
        assert_eq!(new(0x1001, 0x2000), Err(RegionError::Empty));
        assert_eq!(new(0, 65 << 12), Err(RegionError::TooLarge { frames: 65, capacity: 64 }));
        assert_eq!(new(0, 64 << 12), Ok(()));
        assert!(RegionError::TooLarge { frames: 65, capacity: 64 }.to_string().contains("WORDS"));
    }

    #[test]
    fn aligned_blocks_from_an_unaligned_region() {
        // Frames 3..=130: the first order-2 block starts at frame 4.
        let r = frames::<4>(3 << 12, 131 << 12);
        assert_eq!(r.allocate(0), Some(PhysAddr::new(3 << 12)));
        assert_eq!(r.allocate(2), Some(PhysAddr::new(4 << 12)));
        assert_eq!(r.allocate(6), Some(PhysAddr::new(64 << 12)));
        assert_eq!(r.allocate(6), None, "frames 128..=130 hold no 64-frame block");
        assert_eq!(r.allocate(0), Some(PhysAddr::new(8 << 12)));
        assert_eq!(r.in_use(), 70);
        r.deallocate(PhysAddr::new(64 << 12), 5);
        r.deallocate(PhysAddr::new(5 << 12), 2);
        r.deallocate(PhysAddr::new(200 << 12), 0);
        assert_eq!((r.in_use(), r.refused_frees()), (70, 3));
        r.deallocate(PhysAddr::new(64 << 12), 6);
        assert_eq!(r.allocate(MAX_ORDER + 1), None);
        assert_eq!(r.allocate(6), Some(PhysAddr::new(64 << 12)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u8),
        /// Free the n-th live block (modulo), with its order or a wrong one.
        Free(usize, bool),
        /// Free something arbitrary.
        Bogus(u64, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..8).prop_map(Op::Alloc),
            3 => (any::<usize>(), any::<bool>()).prop_map(|(n, right)| Op::Free(n, right)),
            1 => (0u64..200, 0u8..8).prop_map(|(f, o)| Op::Bogus(f, o)),
        ]
    }

    proptest! {
        /// Against a model of the live blocks: every block handed out is
        /// naturally aligned, inside the region and disjoint from every
        /// live one (no frame is ever handed out twice); an allocation
        /// fails only when no aligned free block exists; only a free of
        /// exactly a live block (start and size) changes anything.
        #[test]
        fn never_hands_out_a_frame_twice(
            start in 0u64..40,
            len in 1u64..180,
            ops in prop::collection::vec(op(), 1..300),
        ) {
            let r = frames::<3>(start << 12, (start + len.min(192)) << 12);
            let (base, count) = (start, len.min(192));
            let mut live: BTreeMap<u64, u64> = BTreeMap::new(); // first frame -> size
            let free_at = |live: &BTreeMap<u64, u64>, f: u64, size: u64| {
                live.iter().all(|(&s, &n)| f + size <= s || s + n <= f)
            };
            for op in ops {
                match op {
                    Op::Alloc(order) => {
                        let size = 1u64 << order;
                        match r.allocate(order) {
                            Some(a) => {
                                let f = a.page_number();
                                prop_assert!(f % size == 0, "misaligned {a:?}");
                                prop_assert!(f >= base && f + size <= base + count);
                                prop_assert!(free_at(&live, f, size), "{a:?} overlaps a live block");
                                live.insert(f, size);
                            }
                            None => {
                                let fits = (base.next_multiple_of(size)..)
                                    .step_by(size as usize)
                                    .take_while(|f| f + size <= base + count)
                                    .any(|f| free_at(&live, f, size));
                                prop_assert!(!fits, "order {order} refused with room left");
                            }
                        }
                    }
                    Op::Free(n, right) => {
                        let Some((&f, &size)) = live.iter().nth(n % live.len().max(1)) else { continue };
                        let order = size.trailing_zeros() as u8;
                        // A wrong order (two buddies as one, or half a
                        // block) is refused like any other bad free.
                        let given = if right { order } else if order > 0 && n % 2 == 0 { order - 1 } else { order + 1 };
                        r.deallocate(PhysAddr::new(f << 12), given);
                        if given == order {
                            live.remove(&f);
                        }
                    }
                    Op::Bogus(frame, order) => {
                        let f = base.saturating_sub(2) + frame;
                        let size = 1u64 << order;
                        r.deallocate(PhysAddr::new(f << 12), order);
                        if live.get(&f) == Some(&size) {
                            live.remove(&f);
                        }
                    }
                }
                prop_assert_eq!(r.in_use(), live.values().sum::<u64>());
            }
        }
    }
}
