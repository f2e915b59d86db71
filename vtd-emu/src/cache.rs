//! A bounded set-associative cache, the storage of the context cache and the
//! IOTLB (VT-d §6.1: hardware caches are finite and may evict any entry at
//! any time; software must not rely on an entry staying cached).
//!
//! `N` slots are allocated inline; a run-time geometry uses `entries <= N` of
//! them in sets of `ways`, so a benchmark can vary the cache size without a
//! new type. Within a set the least recently used entry is evicted.

/// A key with a well-mixed hash, selecting the set.
pub(crate) trait CacheKey: Copy + Eq {
    /// A hash of the key; the set is `hash % sets`.
    fn hash(&self) -> u64;
}

/// Multiplicative mixing (Fibonacci hashing) of a packed key.
pub(crate) const fn mix(x: u64) -> u64 {
    let h = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

#[derive(Clone, Copy, Debug)]
struct Slot<K, V> {
    key: K,
    value: V,
    /// Last use, for LRU within the set.
    stamp: u64,
}

/// Hit, miss and eviction counts of one cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found their entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Valid entries displaced by an insertion into a full set.
    pub evictions: u64,
    /// Entries dropped by invalidations.
    pub invalidated: u64,
}

/// Inline storage for up to `N` entries, used as `sets x ways`.
#[derive(Debug)]
pub(crate) struct SetAssoc<K, V, const N: usize> {
    slots: [Option<Slot<K, V>>; N],
    /// Slots holding an entry.
    valid: usize,
    sets: usize,
    ways: usize,
    clock: u64,
    pub(crate) stats: CacheStats,
}

impl<K: CacheKey, V: Copy, const N: usize> SetAssoc<K, V, N> {
    /// A cache of `entries` (clamped to `N`) in sets of `ways` (clamped to
    /// `1..=entries`); 0 entries disables caching.
    pub(crate) fn new(entries: usize, ways: usize) -> Self {
        let entries = entries.min(N);
        let ways = ways.clamp(1, entries.max(1));
        Self {
            slots: [const { None }; N],
            valid: 0,
            sets: entries / ways,
            ways,
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    /// Entries in use at most (sets x ways).
    pub(crate) fn capacity(&self) -> usize {
        self.sets * self.ways
    }

    fn set_of(&self, key: &K) -> core::ops::Range<usize> {
        let set = (key.hash() % self.sets as u64) as usize;
        set * self.ways..(set + 1) * self.ways
    }

    /// Looks `key` up without counting a hit or miss.
    fn find(&mut self, key: &K) -> Option<&mut Slot<K, V>> {
        if self.sets == 0 {
            return None;
        }
        let r = self.set_of(key);
        self.slots[r].iter_mut().flatten().find(|s| s.key == *key)
    }

    /// Looks up `key` without counting; a caller that probes several keys
    /// for one request counts once with [`count`](Self::count).
    pub(crate) fn probe(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let now = self.clock;
        self.find(key).map(|s| {
            s.stamp = now;
            s.value
        })
    }

    /// Counts one lookup as a hit or a miss.
    pub(crate) fn count(&mut self, hit: bool) {
        if hit {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
    }

    /// Looks up and counts.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let v = self.probe(key);
        self.count(v.is_some());
        v
    }

    /// Inserts or replaces the entry of `key`, evicting the set's least
    /// recently used entry if the set is full.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.sets == 0 {
            return;
        }
        self.clock += 1;
        let stamp = self.clock;
        if let Some(s) = self.find(&key) {
            s.value = value;
            s.stamp = stamp;
            return;
        }
        let r = self.set_of(&key);
        let set = &mut self.slots[r];
        let victim = match set.iter().position(Option::is_none) {
            Some(free) => {
                self.valid += 1;
                free
            }
            None => {
                self.stats.evictions += 1;
                set.iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.as_ref().map_or(0, |s| s.stamp))
                    .map_or(0, |(i, _)| i)
            }
        };
        set[victim] = Some(Slot { key, value, stamp });
    }

    /// Drops every entry for which `drop` holds; returns how many.
    pub(crate) fn invalidate(&mut self, mut drop: impl FnMut(&K, &V) -> bool) -> usize {
        if self.valid == 0 {
            return 0;
        }
        let mut n = 0;
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|e| drop(&e.key, &e.value)) {
                *s = None;
                n += 1;
            }
        }
        self.dropped(n)
    }

    /// Drops the entry of `key`, if cached; returns how many (0 or 1).
    pub(crate) fn remove(&mut self, key: &K) -> usize {
        if self.valid == 0 {
            return 0;
        }
        let r = self.set_of(key);
        let n = match self.slots[r].iter_mut().find(|s| s.as_ref().is_some_and(|e| e.key == *key)) {
            Some(slot) => {
                *slot = None;
                1
            }
            None => 0,
        };
        self.dropped(n)
    }

    /// Counts `n` entries dropped by an invalidation.
    fn dropped(&mut self, n: usize) -> usize {
        self.valid -= n;
        self.stats.invalidated += n as u64;
        n
    }

    /// Entries currently cached.
    pub(crate) fn len(&self) -> usize {
        self.valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    struct K(u64);
    impl CacheKey for K {
        fn hash(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn lru_within_a_set() {
        // 2 sets of 2 ways; keys with equal parity share a set.
        let mut c = SetAssoc::<K, u32, 8>::new(4, 2);
        assert_eq!(c.capacity(), 4);
        c.insert(K(0), 0);
        c.insert(K(2), 2);
        assert_eq!(c.get(&K(0)), Some(0)); // K(2) is now the LRU
        c.insert(K(4), 4);
        assert_eq!(c.stats.evictions, 1);
        assert_eq!(c.get(&K(2)), None);
        assert_eq!(c.get(&K(0)), Some(0));
        assert_eq!(c.get(&K(4)), Some(4));
        c.insert(K(1), 1); // the other set is untouched
        assert_eq!(c.len(), 3);
        c.insert(K(4), 40); // replacement, not eviction
        assert_eq!(c.get(&K(4)), Some(40));
        assert_eq!(c.stats, CacheStats { hits: 4, misses: 1, evictions: 1, invalidated: 0 });
        assert_eq!(c.invalidate(|k, _| k.0 % 2 == 0), 2);
        assert_eq!(c.len(), 1);
        assert_eq!(c.stats.invalidated, 2);
        assert_eq!(c.remove(&K(3)), 0);
        assert_eq!(c.remove(&K(1)), 1);
        assert_eq!((c.len(), c.slots.iter().flatten().count()), (0, 0));
        assert_eq!(c.invalidate(|_, _| true), 0);
        assert_eq!(c.stats.invalidated, 3);
    }

    #[test]
    fn zero_entries_disable_and_sizes_clamp() {
        let mut c = SetAssoc::<K, u32, 4>::new(0, 4);
        c.insert(K(1), 1);
        assert_eq!(c.get(&K(1)), None);
        assert_eq!(c.capacity(), 0);
        let c = SetAssoc::<K, u32, 4>::new(100, 0);
        assert_eq!(c.capacity(), 4);
        let c = SetAssoc::<K, u32, 4>::new(3, 2);
        assert_eq!(c.capacity(), 2);
    }
}
