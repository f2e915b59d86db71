//! The context cache: context entries by source id, tagged with the domain
//! id they carry so domain-selective invalidation can find them (VT-d §6.2.1,
//! §6.5.2.1).
//!
//! Like the IOTLB, a cached entry keeps being used after software changes
//! the context entry in memory, until a context-cache invalidation covering
//! it (global, domain-selective, or device-selective with a function mask).

use vtd_regs::{ContextScope, DomainId, SourceId};

use crate::cache::{CacheKey, CacheStats, SetAssoc, mix};

impl CacheKey for SourceId {
    fn hash(&self) -> u64 {
        mix(u64::from(self.raw()))
    }
}

/// A context cache of at most `N` entries of type `C` (the decoded context
/// entry).
#[derive(Debug)]
pub struct ContextCache<C, const N: usize> {
    cache: SetAssoc<SourceId, (DomainId, C), N>,
}

impl<C: Copy, const N: usize> ContextCache<C, N> {
    /// A context cache using `entries` (at most `N`) slots in sets of `ways`.
    pub fn new(entries: usize, ways: usize) -> Self {
        Self { cache: SetAssoc::new(entries, ways) }
    }

    /// Entries it can hold.
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// Entries it holds.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached context of `source`, counting a hit or a miss.
    pub fn lookup(&mut self, source: SourceId) -> Option<C> {
        self.cache.get(&source).map(|(_, c)| c)
    }

    /// Caches the context of `source`, which belongs to `domain`.
    pub fn insert(&mut self, source: SourceId, domain: DomainId, context: C) {
        self.cache.insert(source, (domain, context));
    }

    /// Drops the entries `scope` covers; returns how many. A device-selective
    /// scope matches by source id under its function mask.
    pub fn invalidate(&mut self, scope: ContextScope) -> usize {
        self.cache.invalidate(|sid, (did, _)| match scope {
            ContextScope::Global => true,
            ContextScope::Domain(d) => *did == d,
            ContextScope::Device { source, function_mask, .. } => {
                function_mask.matches(source, *sid)
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
    use vtd_regs::FunctionMask;

    use super::*;

    fn sid(bus: u8, dev: u8, f: u8) -> SourceId {
        SourceId::new(bus, dev, f).unwrap()
    }

    #[test]
    fn scopes() {
        let mut c = ContextCache::<u32, 32>::new(32, 4);
        for f in 0..8 {
            c.insert(sid(0, 1, f), DomainId::new(1), u32::from(f));
        }
        c.insert(sid(0, 2, 0), DomainId::new(2), 20);
        c.insert(sid(1, 0, 0), DomainId::new(3), 30);
        assert_eq!(c.lookup(sid(0, 1, 3)), Some(3));
        let dev = |source, function_mask| ContextScope::Device {
            domain: DomainId::new(1),
            source,
            function_mask,
        };
        assert_eq!(c.invalidate(dev(sid(0, 1, 3), FunctionMask::None)), 1);
        assert_eq!(c.lookup(sid(0, 1, 3)), None);
        // Ignoring function bits 2:1 of function 0 covers 0, 2, 4, 6.
        assert_eq!(c.invalidate(dev(sid(0, 1, 0), FunctionMask::Bits2To1)), 4);
        assert_eq!(c.len(), 5);
        assert_eq!(c.invalidate(ContextScope::Domain(DomainId::new(1))), 3);
        assert_eq!(c.lookup(sid(0, 2, 0)), Some(20));
        assert_eq!(c.invalidate(ContextScope::Global), 2);
        assert!(c.is_empty());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.invalidated), (2, 1, 10));
    }
}
