//! What a mapper has done: the numbers the paper's cost breakdown needs.

/// Counts of a [`Mapper`](crate::Mapper)'s work.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MapperCounters {
    /// Successful maps.
    pub maps: u64,
    /// Successful unmaps.
    pub unmaps: u64,
    /// Maps served by an existing (live, idle or stale) mapping.
    pub reuse_hits: u64,
    /// Page-table updates: a map or unmap of a range in the table.
    pub table_updates: u64,
    /// Mappings torn down (their invalidation then owed).
    pub teardowns: u64,
    /// Optimistic reclaims (each a batch of stale teardowns).
    pub reclaims: u64,
    /// Invalidations posted after a map because of caching mode (CAP.CM).
    pub map_invalidations: u64,
    /// Pages pinned.
    pub pins: u64,
    /// Pages unpinned.
    pub unpins: u64,
    /// Frees of IOVAs or table frames that the allocator or the table
    /// refused after an invalidation (a bug if ever non-zero).
    pub release_errors: u64,
}

impl MapperCounters {
    /// Adds `other`'s counts to these (the handles' counters of a shared
    /// mapper, summed).
    pub fn add(&mut self, other: &MapperCounters) {
        let MapperCounters {
            maps,
            unmaps,
            reuse_hits,
            table_updates,
            teardowns,
            reclaims,
            map_invalidations,
            pins,
            unpins,
            release_errors,
        } = *other;
        self.maps += maps;
        self.unmaps += unmaps;
        self.reuse_hits += reuse_hits;
        self.table_updates += table_updates;
        self.teardowns += teardowns;
        self.reclaims += reclaims;
        self.map_invalidations += map_invalidations;
        self.pins += pins;
        self.unpins += unpins;
        self.release_errors += release_errors;
    }
}
