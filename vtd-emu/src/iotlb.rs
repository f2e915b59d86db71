//! The IOTLB: cached second-level translations, tagged with the domain id
//! and the page size of the leaf that mapped them (VT-d §6.2.2, §6.5.2.3).
//!
//! A cached translation outlives the paging entry it was read from: after
//! software clears a PTE, requests keep translating through the cached copy
//! until an invalidation whose scope covers it (global, domain-selective or
//! page-selective with an address mask) drops it. The model caches only
//! leaf translations, not paging-structure entries, so the invalidation hint
//! (IH), which permits keeping non-leaf entries, changes nothing here.

use vtd_regs::{DomainId, IotlbScope, Iova, PageSize};

use crate::cache::{CacheKey, CacheStats, SetAssoc, mix};

/// What an IOTLB entry is found by: domain, page size and the IOVA's page
/// number at that size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tag {
    domain: DomainId,
    size: PageSize,
    page: u64,
}

impl Tag {
    fn of(domain: DomainId, iova: Iova, size: PageSize) -> Self {
        Self { domain, size, page: iova.as_u64() >> size.shift() }
    }

    /// First IOVA of the page.
    fn base(self) -> Iova {
        Iova::new(self.page << self.size.shift())
    }
}

impl CacheKey for Tag {
    fn hash(&self) -> u64 {
        mix(self.page ^ (u64::from(self.domain.raw()) << 48) ^ ((self.size as u64) << 62))
    }
}

/// The widest page-selective invalidation (2^order pages) the IOTLB drops
/// by looking its pages up rather than walking every entry.
pub const PROBED_ORDER: u8 = 4;

/// An IOTLB of at most `N` translations of type `T` (what the walk produced
/// for a page: output address and permissions).
#[derive(Debug)]
pub struct Iotlb<T, const N: usize> {
    cache: SetAssoc<Tag, T, N>,
}

impl<T: Copy, const N: usize> Iotlb<T, N> {
    /// An IOTLB using `entries` (at most `N`) slots in sets of `ways`.
    pub fn new(entries: usize, ways: usize) -> Self {
        Self { cache: SetAssoc::new(entries, ways) }
    }

    /// Translations it can hold.
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// Translations it holds.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached translation of the page of `iova` in `domain`, of any page
    /// size, counting a hit or a miss.
    pub fn lookup(&mut self, domain: DomainId, iova: Iova) -> Option<(PageSize, T)> {
        let found = PageSize::ALL
            .into_iter()
            .find_map(|size| self.cache.probe(&Tag::of(domain, iova, size)).map(|t| (size, t)));
        self.cache.count(found.is_some());
        found
    }

    /// Caches the translation of the `size` page containing `iova`.
    pub fn insert(&mut self, domain: DomainId, iova: Iova, size: PageSize, translation: T) {
        self.cache.insert(Tag::of(domain, iova, size), translation);
    }

    /// Drops every translation `scope` covers: for a page-selective scope,
    /// every cached page overlapping its range (a superpage entry containing
    /// the range as well as the 4 KiB entries inside it). Returns how many.
    ///
    /// A page-selective scope of at most [`PROBED_ORDER`] (16 pages) looks
    /// up the sets of the pages it names; a wider one walks every entry.
    pub fn invalidate(&mut self, scope: IotlbScope) -> usize {
        if let IotlbScope::Pages { domain, addr, order, .. } = scope
            && order <= PROBED_ORDER
        {
            // An aligned block of at most 16 pages lies in one 2 MiB (and
            // one 1 GiB) page: the one containing its start.
            let pages = (0..1u64 << order)
                .map(|i| Tag::of(domain, Iova::new(addr.as_u64() + (i << 12)), PageSize::Size4KiB));
            let large = [PageSize::Size2MiB, PageSize::Size1GiB].map(|s| Tag::of(domain, addr, s));
            return pages.chain(large).map(|t| self.cache.remove(&t)).sum();
        }
        self.cache.invalidate(|tag, _| match scope {
            IotlbScope::Global | IotlbScope::Domain(_) => scope.covers(tag.domain, tag.base()),
            IotlbScope::Pages { domain, addr, .. } => {
                scope.covers(tag.domain, tag.base())
                    || (tag.domain == domain && Tag::of(domain, addr, tag.size) == *tag)
            }
        })
    }

    /// Hits, misses, evictions and invalidated entries so far.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats
    }

    /// Zeroes the statistics (the cached entries stay).
    pub fn reset_stats(&mut self) {
        self.cache.stats = CacheStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: DomainId = DomainId::new(1);
    const D2: DomainId = DomainId::new(2);

    fn pages(d: DomainId, addr: u64, order: u8) -> IotlbScope {
        IotlbScope::pages(d, Iova::new(addr), order, false).unwrap()
    }

    #[test]
    fn lookup_finds_any_page_size() {
        let mut t = Iotlb::<u64, 16>::new(16, 4);
        t.insert(D1, Iova::new(0x1234), PageSize::Size4KiB, 0xa000);
        t.insert(D1, Iova::new(0x4020_0000), PageSize::Size2MiB, 0xb000);
        assert_eq!(t.lookup(D1, Iova::new(0x1fff)), Some((PageSize::Size4KiB, 0xa000)));
        assert_eq!(t.lookup(D1, Iova::new(0x403f_ffff)), Some((PageSize::Size2MiB, 0xb000)));
        assert_eq!(t.lookup(D2, Iova::new(0x1000)), None);
        assert_eq!(t.lookup(D1, Iova::new(0x2000)), None);
        let s = t.stats();
        assert_eq!((s.hits, s.misses), (2, 2));
    }

    #[test]
    fn invalidation_scopes() {
        let mut t = Iotlb::<u64, 64>::new(64, 64);
        for i in 0..8u64 {
            t.insert(D1, Iova::new(i << 12), PageSize::Size4KiB, i);
            t.insert(D2, Iova::new(i << 12), PageSize::Size4KiB, i);
        }
        t.insert(D1, Iova::new(0x20_0000), PageSize::Size2MiB, 99);
        // 4 pages at 0x4000 of D1 only.
        assert_eq!(t.invalidate(pages(D1, 0x4000, 2)), 4);
        assert!(t.lookup(D1, Iova::new(0x3000)).is_some());
        assert!(t.lookup(D1, Iova::new(0x4000)).is_none());
        assert!(t.lookup(D2, Iova::new(0x4000)).is_some());
        // A 4 KiB invalidation inside a cached 2 MiB page drops the superpage.
        assert_eq!(t.invalidate(pages(D1, 0x20_5000, 0)), 1);
        assert!(t.lookup(D1, Iova::new(0x20_0000)).is_none());
        // A wide invalidation covering the small pages.
        assert_eq!(t.invalidate(pages(D2, 0, 9)), 8);
        assert_eq!(t.invalidate(IotlbScope::Domain(D2)), 0);
        assert_eq!(t.invalidate(IotlbScope::Domain(D1)), 4);
        t.insert(D2, Iova::new(0), PageSize::Size1GiB, 1);
        assert_eq!(t.invalidate(IotlbScope::Global), 1);
        assert!(t.is_empty());
        assert_eq!(t.stats().invalidated, 18);
    }
}

#[cfg(test)]
mod model {
    //! The IOTLB against a reference model: an unbounded map of everything
    //! inserted and not yet invalidated. The bounded IOTLB may have evicted
    //! entries, but never returns one the model does not hold (a translation
    //! that an invalidation should have dropped), and holds no more than its
    //! capacity.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert { domain: u16, page: u64, size: PageSize, value: u32 },
        Lookup { domain: u16, addr: u64 },
        Invalidate(IotlbScope),
    }

    fn size() -> impl Strategy<Value = PageSize> {
        prop::sample::select(PageSize::ALL.to_vec())
    }

    /// Small domain and address spaces so operations collide.
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3u16, 0..8u64, size(), any::<u32>())
                .prop_map(|(domain, page, size, value)| Op::Insert { domain, page, size, value }),
            (0..3u16, 0..8u64, size(), any::<u64>()).prop_map(|(domain, page, size, off)| {
                Op::Lookup { domain, addr: (page << size.shift()) + off % size.bytes() }
            }),
            Just(Op::Invalidate(IotlbScope::Global)),
            (0..3u16).prop_map(|d| Op::Invalidate(IotlbScope::Domain(DomainId::new(d)))),
            (0..3u16, 0..8u64, size(), 0..20u8, any::<bool>()).prop_map(
                |(d, page, size, order, ih)| {
                    let addr = Iova::new(page << size.shift()).align_down(1 << (12 + order));
                    Op::Invalidate(IotlbScope::pages(DomainId::new(d), addr, order, ih).unwrap())
                }
            ),
        ]
    }

    /// Whether a page of `size` at `base` in `domain` overlaps `scope`.
    fn overlaps(scope: IotlbScope, domain: DomainId, base: u64, size: PageSize) -> bool {
        match scope {
            IotlbScope::Global => true,
            IotlbScope::Domain(d) => d == domain,
            IotlbScope::Pages { domain: d, addr, order, .. } => {
                let (s, e) = (addr.as_u64(), addr.as_u64() + (1u64 << (12 + order)));
                d == domain && base < e && s < base + size.bytes()
            }
        }
    }

    proptest! {
        #[test]
        fn never_stale_never_over_capacity(
            ops in prop::collection::vec(op(), 1..200),
            entries in 0..16usize,
            ways in 1..5usize,
        ) {
            let mut t = Iotlb::<u32, 16>::new(entries, ways);
            let mut model: BTreeMap<(u16, u64, PageSize), u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert { domain, page, size, value } => {
                        let base = page << size.shift();
                        t.insert(DomainId::new(domain), Iova::new(base), size, value);
                        model.insert((domain, base, size), value);
                    }
                    Op::Lookup { domain, addr } => {
                        if let Some((size, v)) = t.lookup(DomainId::new(domain), Iova::new(addr)) {
                            let base = addr & !(size.bytes() - 1);
                            prop_assert_eq!(model.get(&(domain, base, size)), Some(&v));
                        }
                    }
                    Op::Invalidate(scope) => {
                        t.invalidate(scope);
                        model.retain(|&(d, base, size), _| !overlaps(scope, DomainId::new(d), base, size));
                    }
                }
                prop_assert!(t.len() <= t.capacity() && t.capacity() <= entries);
            }
        }
    }
}
