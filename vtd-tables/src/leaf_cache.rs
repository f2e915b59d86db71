//! The mapper's walk cache, for the 4 KiB fast path: the last-level table
//! of the last 4 KiB page mapped or unmapped there, with the level-2 entry
//! that points at it, and the level-2 table of the last 1 GiB region walked.
//! An unmap right after a map, or neighbouring pages, skip the upper levels;
//! pages of the same 1 GiB region read one level-2 entry. Like a unit's
//! paging-structure caches (PDE and PDPE caches, §6.2), but the driver's
//! own and exact: only the general map and unmap paths change non-leaf
//! entries, and they empty the cache first.
//!
//! The cached level-2 entry is written back lazily: its present-entry count
//! (in bits the unit ignores, so the unit never sees a difference) changes
//! only here until the cache is flushed, which the general map and unmap
//! paths do before they touch the table.

use vtd_regs::{Iova, PhysAddr};

use crate::pte::{SlPte, level_shift};

/// The region of IOVAs one last-level table maps.
const REGION_SHIFT: u32 = level_shift(2);
/// The region of IOVAs one level-2 table maps.
const DIRECTORY_SHIFT: u32 = level_shift(3);

/// The narrowest domain whose IOVAs the cache holds: the region of a cached
/// last-level table then never reaches beyond the domain's width, so a hit
/// needs no width check (a miss checks [`LeafTableCache::may_hold`] before
/// it looks at the level-2 table).
const MIN_CACHED_WIDTH: u8 = REGION_SHIFT as u8;

/// A cached last-level table and level-2 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeafTableCache {
    /// `iova >> 21` of the last-level table's region, or `u64::MAX` when
    /// empty (IOVAs are below 2^57, so no region has that number).
    region: u64,
    /// Where the level-2 entry that points at the table lives.
    parent_slot: PhysAddr,
    /// That entry as in memory (its address field is the table).
    parent: SlPte,
    /// The table's present-entry count: newer than the entry in memory.
    pub(crate) count: u16,
    /// `iova >> 30` of the level-2 table's region, or `u64::MAX`.
    directory_region: u64,
    /// The level-2 table of that region.
    directory: PhysAddr,
    /// The IOVAs the cache may hold are those below this: 2^width, or none
    /// in a domain narrower than `MIN_CACHED_WIDTH`.
    limit: u64,
}

impl LeafTableCache {
    /// Nothing cached, for a domain of `width` (at most 57) bits.
    pub(crate) const fn new(width: u8) -> Self {
        Self {
            region: u64::MAX,
            parent_slot: PhysAddr::ZERO,
            parent: SlPte::EMPTY,
            count: 0,
            directory_region: u64::MAX,
            directory: PhysAddr::ZERO,
            limit: if width >= MIN_CACHED_WIDTH { 1 << width } else { 0 },
        }
    }

    /// Whether the cache may hold `iova` (within the domain's width).
    #[inline]
    pub(crate) const fn may_hold(&self, iova: Iova) -> bool {
        iova.as_u64() < self.limit
    }

    /// Whether `iova`'s last-level table is cached.
    #[inline]
    pub(crate) const fn hit(&self, iova: Iova) -> bool {
        self.region == iova.as_u64() >> REGION_SHIFT
    }

    /// The cached last-level table.
    #[inline]
    pub(crate) const fn table(&self) -> PhysAddr {
        self.parent.address()
    }

    /// The level-2 table of `iova`'s 1 GiB region, if cached.
    #[inline]
    pub(crate) fn directory(&self, iova: Iova) -> Option<PhysAddr> {
        (self.directory_region == iova.as_u64() >> DIRECTORY_SHIFT).then_some(self.directory)
    }

    /// Caches `table` as the level-2 table of `iova`'s 1 GiB region.
    #[inline]
    pub(crate) fn set_directory(&mut self, iova: Iova, table: PhysAddr) {
        self.directory_region = iova.as_u64() >> DIRECTORY_SHIFT;
        self.directory = table;
    }

    /// The level-2 entry to write back (with the current count), if the
    /// count changed since it was read. Never for an empty cache, whose
    /// count is the empty entry's.
    #[inline]
    pub(crate) fn dirty(&self) -> Option<(PhysAddr, SlPte)> {
        (self.count != self.parent.count())
            .then(|| (self.parent_slot, self.parent.with_count(self.count)))
    }

    /// Forgets everything (after writing it back).
    #[inline]
    pub(crate) fn clear(&mut self) {
        *self = Self { limit: self.limit, ..Self::new(0) };
    }

    /// Caches `iova`'s last-level table, which the level-2 entry `parent`
    /// at `parent_slot` points at (after the previous one was written back).
    #[inline]
    pub(crate) fn fill(&mut self, iova: Iova, parent_slot: PhysAddr, parent: SlPte) {
        self.region = iova.as_u64() >> REGION_SHIFT;
        self.parent_slot = parent_slot;
        self.parent = parent;
        self.count = parent.count();
    }
}
