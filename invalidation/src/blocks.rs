//! Splitting an IOVA range into page-selective invalidations (VT-d §6.5.2.3,
//! §10.4.8.1): a page-selective request covers 2^AM pages at an address
//! aligned to that size, and AM is capped by CAP.MAMV. A range is covered by
//! the largest aligned power-of-two blocks that fit in it, as many as needed.

use core::ops::Range;

use vtd_regs::scope::AddressMaskOrder;
use vtd_regs::{DomainId, IotlbScope, Iova, PAGE_SHIFT, PAGE_SIZE};

/// The page-selective scopes that exactly cover a range of IOVAs, largest
/// aligned blocks first-fit from the low end.
///
/// The range is widened to whole pages. Every yielded scope is naturally
/// aligned with an order no greater than `max_order` (CAP.MAMV), so each one
/// is valid for the unit.
#[derive(Clone, Debug)]
pub struct PageBlocks {
    domain: DomainId,
    next: u64,
    end: u64,
    max_order: AddressMaskOrder,
    leaf_only: bool,
}

impl PageBlocks {
    /// The blocks covering `range` of `domain`; `leaf_only` is the
    /// invalidation hint (only leaf entries changed).
    pub fn new(
        domain: DomainId,
        range: &Range<Iova>,
        max_order: AddressMaskOrder,
        leaf_only: bool,
    ) -> Self {
        let next = range.start.as_u64() >> PAGE_SHIFT;
        let end = range.end.as_u64().div_ceil(PAGE_SIZE);
        PageBlocks { domain, next, end, max_order: max_order.min(52), leaf_only }
    }

    /// How many scopes [`PageBlocks::new`] would yield, without building
    /// them.
    pub fn count(range: &Range<Iova>, max_order: AddressMaskOrder) -> usize {
        PageBlocks::new(DomainId::new(0), range, max_order, false).len()
    }

    /// The order of the block starting at page `next` that fits before `end`.
    fn order_at(&self) -> AddressMaskOrder {
        let remaining = self.end - self.next;
        let align = if self.next == 0 { 63 } else { self.next.trailing_zeros() };
        let fit = 63 - remaining.leading_zeros();
        align.min(fit).min(u32::from(self.max_order)) as AddressMaskOrder
    }
}

impl Iterator for PageBlocks {
    type Item = IotlbScope;

    fn next(&mut self) -> Option<IotlbScope> {
        if self.next >= self.end {
            return None;
        }
        let order = self.order_at();
        let addr = Iova::new(self.next << PAGE_SHIFT);
        self.next += 1 << order;
        Some(IotlbScope::Pages { domain: self.domain, addr, order, leaf_only: self.leaf_only })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let mut probe = self.clone();
        let mut n = 0;
        while probe.next < probe.end {
            probe.next += 1 << probe.order_at();
            n += 1;
        }
        (n, Some(n))
    }
}

impl ExactSizeIterator for PageBlocks {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn blocks(start: u64, end: u64, max: u8) -> Vec<(u64, u8)> {
        let r = Iova::new(start)..Iova::new(end);
        PageBlocks::new(DomainId::new(1), &r, max, false)
            .map(|s| match s {
                IotlbScope::Pages { addr, order, .. } => (addr.as_u64(), order),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn known_splits() {
        // One page.
        assert_eq!(blocks(0x5000, 0x6000, 18), [(0x5000, 0)]);
        // A partial page widens to the whole page.
        assert_eq!(blocks(0x5010, 0x5020, 18), [(0x5000, 0)]);
        // Pages 1..8: 1, 2-3, 4-7.
        assert_eq!(blocks(0x1000, 0x8000, 18), [(0x1000, 0), (0x2000, 1), (0x4000, 2)]);
        // An aligned 2 MiB range is one block of order 9.
        assert_eq!(blocks(0x20_0000, 0x40_0000, 18), [(0x20_0000, 9)]);
        // ... unless MAMV caps it.
        assert_eq!(blocks(0x20_0000, 0x40_0000, 8), [(0x20_0000, 8), (0x30_0000, 8)]);
        // Empty.
        assert_eq!(blocks(0x5000, 0x5000, 18), []);
        assert_eq!(PageBlocks::count(&(Iova::new(0x1000)..Iova::new(0x8000)), 18), 3);
    }

    proptest! {
        #[test]
        fn blocks_cover_exactly(start in 0u64..1 << 20, pages in 0u64..5000, max in 0u8..20) {
            let (s, e) = (start << PAGE_SHIFT, (start + pages) << PAGE_SHIFT);
            let got = blocks(s, e, max);
            prop_assert_eq!(got.len(), PageBlocks::count(&(Iova::new(s)..Iova::new(e)), max));
            let mut at = s;
            for (addr, order) in got {
                prop_assert_eq!(addr, at);
                prop_assert!(order <= max);
                prop_assert_eq!(addr % (PAGE_SIZE << order), 0);
                at += PAGE_SIZE << order;
            }
            prop_assert_eq!(at, e);
        }
    }
}
