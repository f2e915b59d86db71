//! The mapper's one-entry walk cache: the last-level table (and the entry
//! that points at it) of the last 4 KiB page mapped or unmapped, so an
//! unmap right after a map, or neighbouring pages, skip the upper levels.
//! Like a unit's paging-structure cache (§6.2.4), but the driver's own and
//! kept exact: every change that detaches a table clears it.

use vtd_regs::{Iova, PhysAddr};

use crate::pte::level_shift;

/// The region of IOVAs one last-level table maps.
const REGION_SHIFT: u32 = level_shift(2);

/// A cached last-level table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeafTableCache {
    /// `iova >> 21` of the region, or `u64::MAX` when empty (IOVAs are
    /// below 2^57, so no region has that number).
    region: u64,
    /// The last-level table of the region.
    table: PhysAddr,
    /// The level-2 entry that points at it (and holds its count).
    parent_slot: PhysAddr,
}

impl LeafTableCache {
    /// Nothing cached.
    pub(crate) const EMPTY: Self =
        Self { region: u64::MAX, table: PhysAddr::ZERO, parent_slot: PhysAddr::ZERO };

    /// The last-level table and its parent entry's address, if `iova`'s
    /// region is cached.
    #[inline]
    pub(crate) fn lookup(&self, iova: Iova) -> Option<(PhysAddr, PhysAddr)> {
        (self.region == iova.as_u64() >> REGION_SHIFT).then_some((self.table, self.parent_slot))
    }

    /// Caches `iova`'s last-level table `table`, pointed at from `parent_slot`.
    #[inline]
    pub(crate) fn fill(&mut self, iova: Iova, table: PhysAddr, parent_slot: PhysAddr) {
        *self = Self { region: iova.as_u64() >> REGION_SHIFT, table, parent_slot };
    }

    /// Forgets the cached table (it, or a table above it, was detached).
    #[inline]
    pub(crate) fn clear(&mut self) {
        *self = Self::EMPTY;
    }
}
