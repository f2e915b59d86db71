//! The mapper's one-entry walk cache: the last-level table of the last
//! 4 KiB page mapped or unmapped through the fast path, and the level-2
//! entry that points at it, so an unmap right after a map, or neighbouring
//! pages, skip the upper levels. Like a unit's paging-structure cache
//! (§6.2.4), but the driver's own and exact.
//!
//! The cached level-2 entry is written back lazily: its present-entry count
//! (in bits the unit ignores, so the unit never sees a difference) changes
//! only here until the cache is flushed, which the general map and unmap
//! paths do before they touch the table.

use vtd_regs::{Iova, PhysAddr};

use crate::pte::{SlPte, level_shift};

/// The region of IOVAs one last-level table maps.
const REGION_SHIFT: u32 = level_shift(2);

/// A cached last-level table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeafTableCache {
    /// `iova >> 21` of the region, or `u64::MAX` when empty (IOVAs are
    /// below 2^57, so no region has that number).
    region: u64,
    /// Where the level-2 entry that points at the table lives.
    parent_slot: PhysAddr,
    /// That entry as in memory, but for its count.
    parent: SlPte,
    /// The table: the entry's address field.
    pub(crate) table: PhysAddr,
    /// The table's present-entry count: newer than the entry in memory.
    pub(crate) count: u16,
    /// The count the entry in memory holds.
    stored_count: u16,
}

impl LeafTableCache {
    /// Nothing cached.
    pub(crate) const EMPTY: Self = Self {
        region: u64::MAX,
        parent_slot: PhysAddr::ZERO,
        parent: SlPte::EMPTY,
        table: PhysAddr::ZERO,
        count: 0,
        stored_count: 0,
    };

    /// Whether `iova`'s region is cached.
    #[inline]
    pub(crate) const fn hit(&self, iova: Iova) -> bool {
        self.region == iova.as_u64() >> REGION_SHIFT
    }

    /// The level-2 entry to write back (with the current count), if the
    /// count changed since it was read.
    #[inline]
    pub(crate) fn dirty(&self) -> Option<(PhysAddr, SlPte)> {
        (self.region != u64::MAX && self.count != self.stored_count)
            .then(|| (self.parent_slot, self.parent.with_count(self.count)))
    }

    /// Forgets the cached table (after writing it back).
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.region = u64::MAX;
    }

    /// Caches `iova`'s region, whose last-level table the level-2 entry
    /// `parent` at `parent_slot` points at.
    #[inline]
    pub(crate) fn fill(&mut self, iova: Iova, parent_slot: PhysAddr, parent: SlPte) {
        *self = Self {
            region: iova.as_u64() >> REGION_SHIFT,
            parent_slot,
            parent,
            table: parent.address(),
            count: parent.count(),
            stored_count: parent.count(),
        };
    }
}
