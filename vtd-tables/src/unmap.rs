//! Unmapping (VT-d §6.5.1, §6.5.2): removing translations, splitting a
//! superpage that is unmapped in part, detaching tables that become empty,
//! and the token that keeps their frames until the caches are invalidated.

use vtd_regs::{FrameAllocator, Iova, PAGE_SIZE, PageSize, PhysAddr, PhysMem};

use crate::error::{Error, Result};
use crate::frames::FrameChain;
use crate::pte::{
    ADDR_MASK, PTES_PER_TABLE, SlPte, SlPteFlags, entry_address, index, leaf_size, level_shift,
};
use crate::table::SlPageTable;

/// Translations removed, invalidation owed.
///
/// The unit may keep using the removed translations (IOTLB) and the
/// detached tables (paging-structure caches) until software invalidates
/// them: a page-selective IOTLB invalidation of [`iova`](Self::iova) +
/// [`len`](Self::len) with IH = [`leaf_only`](Self::leaf_only) (§6.5.1.2).
/// Only after that completes may the IOVA range be reused and the token be
/// given to [`SlPageTable::release`], which frees the detached frames.
/// Tokens may be released in any order. Dropping one leaks its frames.
#[derive(Debug)]
#[must_use = "invalidate the IOTLB for the range, then give the token to SlPageTable::release"]
pub struct Unmapped {
    pub(crate) table: PhysAddr,
    iova: Iova,
    pub(crate) len: u64,
    pub(crate) leaf_only: bool,
    pub(crate) frames: FrameChain,
}

impl Unmapped {
    #[inline(always)]
    pub(crate) const fn new(table: PhysAddr, iova: Iova) -> Self {
        Self { table, iova, len: 0, leaf_only: true, frames: FrameChain::EMPTY }
    }

    /// The first IOVA whose translation was removed.
    pub const fn iova(&self) -> Iova {
        self.iova
    }

    /// The length in bytes of the removed range `[iova, iova + len)`.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was removed.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether only leaf entries changed: the invalidation hint (IH) of a
    /// page-selective IOTLB invalidation, which lets the unit keep its
    /// paging-structure caches (§6.5.1.2).
    pub const fn leaf_only(&self) -> bool {
        self.leaf_only
    }

    /// How many page-table frames were detached (freed by
    /// [`SlPageTable::release`]).
    pub const fn detached_frames(&self) -> u32 {
        self.frames.len()
    }
}

/// Why a range unmap stopped: the error, and the token for the part of the
/// range that was unmapped before it.
#[derive(Debug)]
#[must_use = "part of the range may be unmapped: its token is owed an invalidation"]
pub struct PartialUnmap {
    /// The translations removed before the error.
    pub done: Unmapped,
    /// What stopped the unmap.
    pub error: Error,
}

impl<M: PhysMem, A: FrameAllocator> SlPageTable<M, A> {
    /// Removes the translation of the page of `size` at `iova`. The page
    /// may be part of a larger page, which is split into smaller ones first
    /// (allocating a table per level split).
    ///
    /// Errors: `UnsupportedPageSize` (also when a split needs an
    /// unsupported intermediate size), `Misaligned`, `BeyondWidth`,
    /// `NotMapped`, `MappedWithSmallerPages`, `OutOfFrames` (for a split).
    /// On error nothing changed.
    #[inline(always)]
    pub fn unmap(&mut self, iova: Iova, size: PageSize) -> Result<Unmapped> {
        if size == PageSize::Size4KiB && self.unmap_in_cached_table(iova)? {
            // Built whole, not field by field, so it moves without stalls.
            return Ok(Unmapped { len: PAGE_SIZE, ..Unmapped::new(self.root, iova) });
        }
        let mut token = Unmapped::new(self.root, iova);
        self.unmap_one(iova, size, &mut token)?;
        Ok(token)
    }

    /// Removes every translation in `[iova, iova + len)`, which must all be
    /// mapped, whatever the page sizes: superpages that straddle an end are
    /// split. On error, the part before the failing page stays unmapped and
    /// comes back in [`PartialUnmap::done`].
    #[allow(
        clippy::result_large_err,
        reason = "the error must carry the token of the part unmapped"
    )]
    pub fn unmap_range(
        &mut self,
        iova: Iova,
        len: u64,
    ) -> core::result::Result<Unmapped, PartialUnmap> {
        let token = Unmapped::new(self.root, iova);
        if let Err(error) = self.config.check_range(iova, PhysAddr::ZERO, len) {
            return Err(PartialUnmap { done: token, error });
        }
        let mut token = token;
        while token.len < len {
            let pos = Iova::new(iova.as_u64() + token.len);
            let mut result = Err(Error::NotMapped { iova: pos });
            for size in self.sizes_at(pos.as_u64(), len - token.len) {
                result = self.unmap_one(pos, size, &mut token);
                if !matches!(result, Err(Error::MappedWithSmallerPages { .. })) {
                    break;
                }
            }
            if let Err(error) = result {
                return Err(PartialUnmap { done: token, error });
            }
        }
        Ok(token)
    }

    /// Frees the frames of a token whose invalidation has completed. A
    /// token of another table comes back unchanged.
    pub fn release(&mut self, token: Unmapped) -> core::result::Result<(), Unmapped> {
        if token.table != self.root {
            return Err(token);
        }
        token.frames.free(&self.mem, &self.alloc, &mut self.spare);
        Ok(())
    }

    /// The fast path of a 4 KiB unmap: when `iova`'s last-level table is
    /// reachable and keeps other pages, clears the leaf and counts it.
    /// `Ok(false)`: not applicable, nothing changed.
    #[inline(always)]
    fn unmap_in_cached_table(&mut self, iova: Iova) -> Result<bool> {
        // The last page of a table takes the general path, which detaches
        // it, unless the table is kept.
        if !iova.is_aligned(PAGE_SIZE)
            || !self.cache_leaf_table(iova)?
            || (self.cache.count <= 1 && !self.kept.has_room())
        {
            return Ok(false);
        }
        let slot = entry_address(self.cache.table(), index(iova, 1));
        if !SlPte(self.mem.read_u64(slot)?).is_present() {
            return Err(Error::NotMapped { iova });
        }
        self.write_pte(slot, SlPte::EMPTY)?;
        self.cache.count -= 1;
        if self.cache.count == 0 {
            self.kept.keep(iova);
        }
        Ok(true)
    }

    /// Unmaps one page into `token` (whose range it extends): the general
    /// path, kept out of line so the 4 KiB fast path stays small.
    #[inline(never)]
    fn unmap_one(&mut self, iova: Iova, size: PageSize, token: &mut Unmapped) -> Result<()> {
        self.check(iova, PhysAddr::ZERO, size)?;
        self.flush_cache()?;
        let target = size.level();
        let levels = self.config.agaw().levels();
        // path[l - 1]: the entry read at level l, and where it is.
        let mut path = [(PhysAddr::ZERO, SlPte::EMPTY); 5];
        let mut table = self.root;
        let mut level = levels;
        loop {
            let slot = entry_address(table, index(iova, level));
            let e = SlPte(self.mem.read_u64(slot)?);
            if !e.is_present() {
                return Err(Error::NotMapped { iova });
            }
            let leaf = level == 1 || e.is_superpage();
            if level == target {
                if !leaf {
                    return Err(Error::MappedWithSmallerPages { iova });
                }
                self.write_pte(slot, SlPte::EMPTY)?;
                break;
            }
            if leaf {
                self.split(iova, e, level, target, slot)?;
                token.leaf_only = false;
                token.len += size.bytes();
                return Ok(());
            }
            if let Some(p) = path.get_mut(usize::from(level - 1)) {
                *p = (slot, e);
            }
            table = e.address();
            level -= 1;
        }
        token.len += size.bytes();
        let above = path.get(usize::from(target)..usize::from(levels)).unwrap_or(&[]);
        self.uncount(iova, above, target == 1, token)
    }

    /// Counts an entry removed from the table `path[0]` points at, `path`
    /// being the entries on the way to it, lowest first; detaches each
    /// table that became empty into `token`, except a last-level table
    /// (`last_level`) that is kept (see
    /// [`keep_empty_tables`](Self::keep_empty_tables)).
    fn uncount(
        &mut self,
        iova: Iova,
        path: &[(PhysAddr, SlPte)],
        last_level: bool,
        token: &mut Unmapped,
    ) -> Result<()> {
        for (i, &(slot, e)) in path.iter().enumerate() {
            let n = e.count().saturating_sub(1);
            if n == 0 && i == 0 && last_level && self.kept.has_room() {
                self.write_pte(slot, e.with_count(0))?;
                self.kept.keep(iova);
                break;
            }
            if n == 0 {
                self.write_pte(slot, SlPte::EMPTY)?;
                token.frames.push(&self.mem, e.address())?;
                token.leaf_only = false;
            } else {
                self.write_pte(slot, e.with_count(n))?;
                break;
            }
        }
        Ok(())
    }

    /// Detaches the empty last-level tables kept (see
    /// [`keep_empty_tables`](Self::keep_empty_tables)) whose 2 MiB region
    /// lies within `[iova, iova + len)`, so that 2 MiB pages may take their
    /// place. Nothing is unmapped, but the unit may still walk the detached
    /// tables through its paging-structure caches: the token (its range is
    /// `[iova, iova + len)`, not [`leaf_only`](Unmapped::leaf_only) if it
    /// holds a frame) is owed the same invalidation as an unmap's before
    /// [`release`](Self::release), and before a 2 MiB page mapped there is
    /// sure to be used.
    pub fn detach_empty_tables(&mut self, iova: Iova, len: u64) -> Result<Unmapped> {
        let mut token = Unmapped { len, ..Unmapped::new(self.root, iova) };
        if self.kept.len() == 0 {
            return Ok(token);
        }
        self.flush_cache()?;
        let end = iova.as_u64().saturating_add(len);
        let span = PageSize::Size2MiB.bytes();
        let mut regions = [Iova::new(0); crate::MAX_KEPT_TABLES];
        let mut n = 0;
        for (slot, r) in regions.iter_mut().zip(self.kept.iter()) {
            *slot = r;
            n += 1;
        }
        for &r in &regions[..n] {
            if r.as_u64() < iova.as_u64() || r.as_u64().saturating_add(span) > end {
                continue;
            }
            self.kept.forget(r);
            // The entries down to the level-2 one, lowest first.
            let levels = self.config.agaw().levels();
            let mut path = [(PhysAddr::ZERO, SlPte::EMPTY); 4];
            let mut table = self.root;
            let mut found = true;
            for level in (2..=levels).rev() {
                let slot = entry_address(table, index(r, level));
                let e = SlPte(self.mem.read_u64(slot)?);
                if !e.is_table() {
                    found = false;
                    break;
                }
                if let Some(p) = path.get_mut(usize::from(level - 2)) {
                    *p = (slot, e);
                }
                table = e.address();
            }
            let (slot, e) = path[0];
            if !found || e.count() != 0 {
                continue;
            }
            // The level-2 entry as if its table held one entry, so that
            // counting it removed detaches it.
            path[0] = (slot, e.with_count(1));
            self.uncount(r, &path[..usize::from(levels - 1)], false, &mut token)?;
        }
        Ok(token)
    }

    /// Replaces the superpage leaf `e` at `level` (in `slot`) by tables of
    /// smaller leaves mapping the same, down to `target`, without the
    /// target-size page at `iova`. The new tables are complete before one
    /// write of `slot` links them.
    fn split(&mut self, iova: Iova, e: SlPte, level: u8, target: u8, slot: PhysAddr) -> Result<()> {
        for l in target + 1..level {
            if let Some(s) = leaf_size(l).filter(|s| !self.config.page_sizes().supports(*s)) {
                return Err(Error::UnsupportedPageSize(s));
            }
        }
        let mut frames = [PhysAddr::ZERO; 2];
        let chain = frames.get_mut(..usize::from(level - target)).ok_or(Error::OutOfFrames)?;
        self.alloc_chain(chain)?;
        // The superpage's attributes, and the offset of `iova` within it.
        let attrs = SlPte(e.0 & !(ADDR_MASK | SlPteFlags::SUPERPAGE.bits()));
        let offset = iova.as_u64() & ((1u64 << level_shift(level)) - 1);
        let mut below = SlPte::EMPTY;
        // chain[i] is the table at level `level - 1 - i`; build bottom-up.
        for (i, frame) in chain.iter().enumerate().rev() {
            let l = level - 1 - i as u8;
            let step = 1u64 << level_shift(l);
            // The first page of the table: the start of the parent entry's span.
            let first = e.address().as_u64() + (offset & !((1u64 << level_shift(l + 1)) - 1));
            let ps = if l > 1 { SlPteFlags::SUPERPAGE.bits() } else { 0 };
            for k in 0..PTES_PER_TABLE {
                let pte = if k == index(iova, l) {
                    below
                } else {
                    SlPte(attrs.0 | ps | (first + k as u64 * step))
                };
                self.write_pte(entry_address(*frame, k), pte)?;
            }
            let present = if l == target { PTES_PER_TABLE - 1 } else { PTES_PER_TABLE };
            below = self.config.table_entry(*frame).with_count(present as u16);
        }
        self.write_pte(slot, below)
    }
}
