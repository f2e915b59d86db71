//! Magazines: fixed-size stacks of recently freed IOVAs of one size class
//! (Bonwick and Adams' magazine layer, as Linux's `iova_rcache` uses it).

/// Entries per magazine.
pub const MAG_SIZE: usize = 128;

/// A stack of up to [`MAG_SIZE`] start pages of freed ranges of one size
/// class. Opaque; it appears in type signatures only as the item of a
/// depot [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct Magazine {
    pfns: heapless::Vec<u64, MAG_SIZE>,
}

impl Magazine {
    /// An empty magazine.
    pub const EMPTY: Self = Self { pfns: heapless::Vec::new() };

    pub(crate) fn is_empty(&self) -> bool {
        self.pfns.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.pfns.is_full()
    }

    /// Pushes `pfn`; false if full.
    #[inline]
    pub(crate) fn push(&mut self, pfn: u64) -> bool {
        self.pfns.push(pfn).is_ok()
    }

    /// Pops the most recent entry at or below `max_pfn`; scans down (at
    /// most [`MAG_SIZE`] entries) only when the top one is too high for the
    /// caller's DMA limit.
    #[inline]
    pub(crate) fn pop_at_most(&mut self, max_pfn: u64) -> Option<u64> {
        let top = self.pfns.pop()?;
        if top <= max_pfn {
            return Some(top);
        }
        self.pop_below(top, max_pfn)
    }

    /// The top entry, `top`, was too high: puts it back and pops the most
    /// recent entry at or below `max_pfn` instead.
    #[cold]
    fn pop_below(&mut self, top: u64, max_pfn: u64) -> Option<u64> {
        let found = self.pfns.iter().rposition(|&p| p <= max_pfn);
        let restored = self.pfns.push(top);
        debug_assert!(restored.is_ok(), "a magazine was full after a pop");
        Some(self.pfns.swap_remove(found?))
    }

    /// Removes and returns every entry.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = u64> + '_ {
        self.pfns.drain(..)
    }
}

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
        let mut m = Magazine::EMPTY;
        for p in [10, 50, 20, 60] {
            assert!(m.push(p));
        }
        assert_eq!(m.pop_at_most(u64::MAX), Some(60));
        assert_eq!(m.pop_at_most(30), Some(20));
        assert_eq!(m.pop_at_most(5), None);
        assert_eq!(m.drain().collect::<heapless::Vec<_, 4>>(), [10, 50]);
        assert!(m.is_empty());
        for p in 0..MAG_SIZE as u64 {
            assert!(m.push(p));
        }
        assert!(m.is_full() && !m.push(1));
    }
}
