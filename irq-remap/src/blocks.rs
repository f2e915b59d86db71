//! Which table entries are in use: a bitmap of `64 * WORDS` entries with
//! first-fit allocation of naturally aligned power-of-two blocks (what a
//! multi-vector MSI needs: its vectors are `handle + subhandle`, and one
//! index-selective invalidation with IM = order covers an aligned block,
//! §6.5.2.7).

/// The entries in use (allocated, or freed and awaiting invalidation).
#[derive(Clone, Debug)]
pub(crate) struct Blocks<const WORDS: usize> {
    used: [u64; WORDS],
}

impl<const WORDS: usize> Blocks<WORDS> {
    /// Entries tracked.
    pub(crate) const ENTRIES: u32 = 64 * WORDS as u32;

    /// Nothing in use.
    pub(crate) const fn new() -> Self {
        Self { used: [0; WORDS] }
    }

    /// The mask of entries `index..index + count` within their word, for
    /// blocks smaller than a word.
    fn word_mask(index: u32, count: u32) -> u64 {
        let bits = if count >= 64 { u64::MAX } else { (1u64 << count) - 1 };
        bits << (index % 64)
    }

    /// Whether any entry of the aligned block `index..index + count` is in
    /// use.
    fn any_used(&self, index: u32, count: u32) -> bool {
        if count >= 64 {
            let (w, n) = ((index / 64) as usize, (count / 64) as usize);
            self.used[w..w + n].iter().any(|&u| u != 0)
        } else {
            self.used[(index / 64) as usize] & Self::word_mask(index, count) != 0
        }
    }

    /// Marks the aligned block used (`true`) or free.
    pub(crate) fn set(&mut self, index: u32, count: u32, used: bool) {
        if count >= 64 {
            let (w, n) = ((index / 64) as usize, (count / 64) as usize);
            self.used[w..w + n].fill(if used { u64::MAX } else { 0 });
        } else {
            let w = &mut self.used[(index / 64) as usize];
            let m = Self::word_mask(index, count);
            *w = if used { *w | m } else { *w & !m };
        }
    }

    /// The first free aligned block of `2^order` entries, marked used.
    pub(crate) fn allocate(&mut self, order: u8) -> Option<u32> {
        let count = 1u32.checked_shl(u32::from(order)).filter(|&c| c <= Self::ENTRIES)?;
        let index =
            (0..Self::ENTRIES).step_by(count as usize).find(|&i| !self.any_used(i, count))?;
        self.set(index, count, true);
        Some(index)
    }

    /// Entries in use.
    pub(crate) fn in_use(&self) -> u32 {
        self.used.iter().map(|u| u.count_ones()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_first_fit() {
        let mut b = Blocks::<2>::new();
        assert_eq!(b.allocate(0), Some(0));
        assert_eq!(b.allocate(2), Some(4)); // 1..4 would not be aligned
        assert_eq!(b.allocate(0), Some(1));
        assert_eq!(b.allocate(6), Some(64));
        assert_eq!(b.allocate(6), None);
        assert_eq!(b.allocate(7), None);
        assert_eq!(b.allocate(8), None);
        assert_eq!(b.in_use(), 2 + 4 + 64);
        b.set(64, 64, false);
        assert!(!b.any_used(64, 64) && b.any_used(5, 1));
        assert_eq!(b.allocate(7), None);
        assert_eq!(b.allocate(5), Some(32));
        b.set(0, 1, false);
        assert_eq!(b.allocate(0), Some(0));
    }
}
