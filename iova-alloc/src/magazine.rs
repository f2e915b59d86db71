//! Magazines: fixed-size stacks of recently freed IOVAs of one size class
//! (Bonwick and Adams' magazine layer, as Linux's `iova_rcache` uses it).

/// Entries per magazine.
pub const MAG_SIZE: usize = 128;

/// A stack of up to [`MAG_SIZE`] start pages of freed ranges of one size
/// class. Opaque; it appears in type signatures only as the item of a
/// depot [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct Magazine {
    len: usize,
    pfns: [u64; MAG_SIZE],
}

impl Magazine {
    /// An empty magazine.
    pub const EMPTY: Self = Self { len: 0, pfns: [0; MAG_SIZE] };

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == MAG_SIZE
    }

    /// Pushes `pfn`; false if full.
    #[inline]
    pub(crate) fn push(&mut self, pfn: u64) -> bool {
        match self.pfns.get_mut(self.len) {
            Some(slot) => {
                *slot = pfn;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Pops the most recent entry at or below `max_pfn`; scans down (at
    /// most [`MAG_SIZE`] entries) only when the top one is too high for the
    /// caller's DMA limit.
    #[inline]
    pub(crate) fn pop_at_most(&mut self, max_pfn: u64) -> Option<u64> {
        let last = self.len.checked_sub(1)?;
        let top = *self.pfns.get(last)?;
        if top <= max_pfn {
            self.len = last;
            return Some(top);
        }
        self.pop_below_top(max_pfn)
    }

    #[cold]
    fn pop_below_top(&mut self, max_pfn: u64) -> Option<u64> {
        let live = self.pfns.get_mut(..self.len)?;
        let i = live.iter().rposition(|&p| p <= max_pfn)?;
        let last = live.len() - 1;
        live.swap(i, last);
        self.len = last;
        Some(live[last])
    }

    /// Removes and returns every entry.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = u64> + '_ {
        let n = core::mem::take(&mut self.len);
        self.pfns.iter().take(n).copied()
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
