//! Magazines: fixed-size stacks of recently freed IOVAs of one size class
//! (Bonwick and Adams' magazine layer, as Linux's `iova_rcache` uses it).

use crate::range::{IovaRange, PackedRange};

/// Entries per magazine: 127, as Linux's `IOVA_MAG_SIZE` (its entries and
/// length fill 1 KiB; the depositor's tag follows).
pub const MAG_SIZE: usize = 127;

/// A stack of up to [`MAG_SIZE`] freed ranges of one size class, packed as
/// leases hold them, and the tag of the CPU (or handle) that deposited it. Opaque; it appears in
/// type signatures only as the item of a depot [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct Magazine {
    ranges: heapless::Vec<PackedRange, MAG_SIZE>,
    /// The tag of the CPU (or handle) that last deposited it in the depot.
    owner: u16,
}

impl Magazine {
    /// An empty magazine.
    pub const EMPTY: Self = Self { ranges: heapless::Vec::new(), owner: 0 };

    /// The tag of its depositor.
    pub(crate) fn owner(&self) -> u16 {
        self.owner
    }

    /// Records `owner` as the tag of its depositor.
    pub(crate) fn set_owner(&mut self, owner: u16) {
        self.owner = owner;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.ranges.is_full()
    }

    /// Pushes `range`; false if full.
    #[inline]
    pub(crate) fn push(&mut self, range: PackedRange) -> bool {
        self.ranges.push(range).is_ok()
    }

    /// Pops the most recent entry at or below `max` (of the magazine's size
    /// class, so: starting at or below the start of `max`); scans down (at
    /// most [`MAG_SIZE`] entries) only when the top one is too high for the
    /// caller's DMA limit.
    #[inline]
    pub(crate) fn pop_at_most(&mut self, max: PackedRange) -> Option<PackedRange> {
        let top = self.ranges.pop()?;
        if top <= max {
            return Some(top);
        }
        self.pop_below(top, max)
    }

    /// The top entry, `top`, was too high: puts it back and pops the most
    /// recent entry at or below `max` instead.
    #[cold]
    fn pop_below(&mut self, top: PackedRange, max: PackedRange) -> Option<PackedRange> {
        let found = self.ranges.iter().rposition(|&r| r <= max);
        let restored = self.ranges.push(top);
        debug_assert!(restored.is_ok(), "a magazine was full after a pop");
        Some(self.ranges.swap_remove(found?))
    }

    /// Removes and returns every entry.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = IovaRange> + '_ {
        self.ranges.drain(..).map(PackedRange::range)
    }
}

const _: () = assert!(size_of::<Magazine>() == 1024 + 8);

impl Default for Magazine {
    fn default() -> Self {
        Self::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_with_limit() {
        let at = |p| PackedRange::of_order(p, 1);
        let mut m = Magazine::EMPTY;
        for p in [10, 50, 20, 60] {
            assert!(m.push(at(p)));
        }
        assert_eq!(m.pop_at_most(PackedRange::MAX), Some(at(60)));
        assert_eq!(m.pop_at_most(at(30)), Some(at(20)));
        assert_eq!(m.pop_at_most(at(4)), None);
        let left: heapless::Vec<_, 4> = m.drain().map(IovaRange::start_page).collect();
        assert_eq!(left, [10, 50]);
        assert!(m.is_empty());
        for p in 0..MAG_SIZE as u64 {
            assert!(m.push(at(2 * p)));
        }
        assert!(m.is_full() && !m.push(at(0)));
    }
}
