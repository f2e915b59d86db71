//! Empty last-level tables a table keeps linked (opt-in): unmapping the last
//! 4 KiB page of a last-level table then clears one leaf instead of
//! detaching the table (no invalidation of the paging-structure caches owed,
//! no frame to free), and the next map in its 2 MiB region writes one leaf
//! instead of building the table again. A table of a hypervisor's shadow,
//! whose guest maps and unmaps a buffer at the same IOVAs over and over,
//! works at that rhythm.
//!
//! A kept table is an empty table the unit may walk (every entry not
//! present, VT-d §9.8): what it translates is what a missing table
//! translates. It takes the place a 2 MiB page would have: until it is
//! detached ([`SlPageTable::detach_empty_tables`]), its region is mapped
//! with 4 KiB pages.

use vtd_regs::Iova;

use crate::pte::level_shift;

/// The most empty last-level tables a table keeps.
pub const MAX_KEPT_TABLES: usize = 16;

/// The regions (IOVA >> 21) of the empty last-level tables kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeptTables {
    regions: [u64; MAX_KEPT_TABLES],
    len: u8,
    limit: u8,
}

/// The bits of an IOVA above a last-level table's region.
const REGION_SHIFT: u32 = level_shift(2);

impl KeptTables {
    /// None kept, none to keep.
    pub(crate) const NONE: Self = Self { regions: [0; MAX_KEPT_TABLES], len: 0, limit: 0 };

    /// Whether one more may be kept.
    #[inline]
    pub(crate) const fn has_room(&self) -> bool {
        self.len < self.limit
    }

    /// How many are kept.
    pub(crate) const fn len(&self) -> usize {
        self.len as usize
    }

    /// The limit (at most [`MAX_KEPT_TABLES`]).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_KEPT_TABLES) as u8;
    }

    /// Records that the last-level table of `iova`'s region is kept empty
    /// (the caller checked [`has_room`](Self::has_room)).
    #[inline]
    pub(crate) fn keep(&mut self, iova: Iova) {
        if let Some(slot) = self.regions.get_mut(usize::from(self.len)) {
            *slot = iova.as_u64() >> REGION_SHIFT;
            self.len += 1;
        }
    }

    /// Records that the table of `iova`'s region holds a page again (or was
    /// detached); nothing if it was not kept.
    #[inline]
    pub(crate) fn forget(&mut self, iova: Iova) {
        let region = iova.as_u64() >> REGION_SHIFT;
        let kept = &mut self.regions[..usize::from(self.len)];
        if let Some(i) = kept.iter().position(|r| *r == region) {
            kept.swap(i, kept.len() - 1);
            self.len -= 1;
        }
    }

    /// The first IOVA of each kept table's region.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Iova> + '_ {
        self.regions[..usize::from(self.len)].iter().map(|r| Iova::new(r << REGION_SHIFT))
    }
}
