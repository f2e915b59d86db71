//! The interrupt entry cache: interrupt remapping table entries by
//! interrupt index, as read from the table (VT-d §6.4; invalidated by the
//! interrupt entry cache invalidate descriptor, §6.5.2.7).
//!
//! Like the IOTLB, a cached entry keeps being used after software changes
//! it in memory, until an invalidation covering its index (global, or
//! index-selective: 2^IM entries from an aligned IIDX) drops it, or an
//! eviction does. That is what makes a driver that changes an interrupt's
//! affinity without invalidating observable. Entries are cached as the
//! 128 bits read, so a hit decodes exactly what the miss read.

use vtd_regs::desc::IecScope;
use vtd_regs::irq::RawIrte;

use crate::cache::{CacheKey, CacheStats, SetAssoc, mix};

/// Entries the interrupt entry cache holds, in sets of [`IEC_WAYS`].
pub const IEC_ENTRIES: usize = 16;
/// Ways per set of the interrupt entry cache.
pub const IEC_WAYS: usize = 4;

/// An interrupt index, the cache's key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Index(u16);

impl CacheKey for Index {
    fn hash(&self) -> u64 {
        mix(u64::from(self.0))
    }
}

/// An interrupt entry cache of at most [`IEC_ENTRIES`] entries.
#[derive(Debug)]
pub(crate) struct InterruptEntryCache {
    cache: SetAssoc<Index, [u64; 2], IEC_ENTRIES>,
}

impl InterruptEntryCache {
    /// An empty cache of [`IEC_ENTRIES`] entries in sets of [`IEC_WAYS`].
    pub(crate) fn new() -> Self {
        Self { cache: SetAssoc::new(IEC_ENTRIES, IEC_WAYS) }
    }

    /// The cached entry at `index`, counting a hit or a miss.
    pub(crate) fn lookup(&mut self, index: u16) -> Option<RawIrte> {
        self.cache.get(&Index(index)).map(|[lo, hi]| RawIrte::new(lo, hi))
    }

    /// Caches the entry read at `index`.
    pub(crate) fn insert(&mut self, index: u16, entry: RawIrte) {
        self.cache.insert(Index(index), [entry.lo(), entry.hi()]);
    }

    /// Drops the entries `scope` covers; returns how many.
    pub(crate) fn invalidate(&mut self, scope: IecScope) -> usize {
        match scope {
            IecScope::Global => self.cache.invalidate(|_, _| true),
            IecScope::Entries { index, mask } => {
                let first = u32::from(index);
                let end = first + (1u32 << mask.min(16));
                self.cache.invalidate(|i, _| (first..end).contains(&u32::from(i.0)))
            }
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    /// Hits, misses, evictions and invalidated entries so far.
    pub(crate) fn stats(&self) -> CacheStats {
        self.cache.stats
    }

    /// Zeroes the statistics (the cached entries stay).
    pub(crate) fn reset_stats(&mut self) {
        self.cache.stats = CacheStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let mut c = InterruptEntryCache::new();
        for i in 0..8u16 {
            c.insert(0x40 + i, RawIrte::new(u64::from(i), 0));
        }
        assert_eq!(c.lookup(0x43), Some(RawIrte::new(3, 0)));
        // IM 2 from 0x44: 0x44..0x48.
        assert_eq!(c.invalidate(IecScope::entries(0x44, 2).unwrap()), 4);
        assert_eq!(c.lookup(0x44), None);
        assert_eq!(c.invalidate(IecScope::entries(0x40, 0).unwrap()), 1);
        assert_eq!(c.len(), 3);
        // A mask beyond the index width covers everything.
        assert_eq!(c.invalidate(IecScope::Entries { index: 0, mask: 31 }), 3);
        c.insert(1, RawIrte::ZERO);
        assert_eq!(c.invalidate(IecScope::Global), 1);
        assert_eq!(c.len(), 0);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.invalidated), (1, 1, 9));
    }
}
