//! A domain's second-level page table (VT-d §3.7, §9.8): 3, 4 or 5 levels,
//! 4 KiB, 2 MiB and 1 GiB pages, built through [`PhysMem`] in frames from a
//! [`FrameAllocator`]. Unmapping is in [`crate::unmap`].

use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::{Cap, Sagaw, SecondLevelPageSizes};
use vtd_regs::{FrameAllocator, Iova, PAGE_SIZE, PageSize, PhysAddr, PhysMem};

use crate::error::{Error, Result};
use crate::fl_pte::FlPte;
use crate::frames::{SpareFrames, alloc_table};
use crate::kept::KeptTables;
use crate::leaf_cache::LeafTableCache;
use crate::perm::Perm;
use crate::pte::{ADDR_MASK, PTES_PER_TABLE, SlPte, SlPteFlags, entry_address, index, leaf_size};
use crate::translation::Translation;

/// The shape of a domain's table: depth, usable width, page sizes, leaf
/// attributes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TableConfig {
    agaw: Agaw,
    width: u8,
    sllps: SecondLevelPageSizes,
    /// The flags every leaf gets: SNP when snooping is on.
    leaf_flags: SlPteFlags,
    /// Which entry format the table is built in.
    stage: Stage,
}

/// The entry format of a table: second stage (§9.8), or first stage
/// (§9.7, the processor's paging format) for scalable-mode PASID entries
/// with PGTT first-stage or nested.
///
/// Both formats keep the present bit in bit 0, a write bit in bit 1, PS in
/// bit 7, the address in bits 51:12 and ignore bits 61:52, so the same
/// table code (and the same [`Unmapped`](crate::Unmapped) tokens, and
/// `teardown` above it) serves both: only the entries it writes differ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Second-stage entries: R and W.
    Second,
    /// First-stage entries: P, R/W, A (D for writable leaves), XD, and U/S
    /// when `user`. A first-stage page is always readable, so a write-only
    /// mapping cannot be expressed ([`Error::WriteOnly`]).
    First {
        /// Set U/S in every entry: requests without a PASID are user
        /// requests (§3.6), so tables they use must allow user access.
        user: bool,
    },
}

impl TableConfig {
    /// A table for a domain of `width` address bits on a unit with these
    /// SAGAW and SLLPS: the narrowest supported depth that covers `width`
    /// (§3.6). Pages that reach 2^`width` or beyond are refused.
    pub fn new(sagaw: Sagaw, sllps: SecondLevelPageSizes, width: u8) -> Result<Self> {
        let agaw = sagaw.choose(width).ok_or(Error::UnsupportedWidth { bits: width })?;
        Ok(Self { agaw, width, sllps, leaf_flags: SlPteFlags::empty(), stage: Stage::Second })
    }

    /// A first-stage table (§3.6, §9.7): 4 levels, or 5 with `five_level`
    /// (CAP.FL5LP); 4 KiB and 2 MiB pages, and 1 GiB ones with `large`
    /// (CAP.FL1GP); user entries when `user`. A first-stage input address
    /// must be canonical, and a table maps the lower half only, so `width`
    /// is at most 47 bits (4 levels) or 56 (5 levels).
    pub fn first_stage(five_level: bool, large: bool, width: u8, user: bool) -> Result<Self> {
        let (agaw, widest) = if five_level { (Agaw::Bits57, 56) } else { (Agaw::Bits48, 47) };
        if width > widest || width < 12 {
            return Err(Error::UnsupportedWidth { bits: width });
        }
        let sllps =
            if large { SecondLevelPageSizes::all() } else { SecondLevelPageSizes::SIZE_2MIB };
        let stage = Stage::First { user };
        Ok(Self { agaw, width, sllps, leaf_flags: SlPteFlags::empty(), stage })
    }

    /// The entry format.
    pub const fn stage(&self) -> Stage {
        self.stage
    }

    /// The leaf entry (as a raw entry word) for `size` at `phys`.
    #[inline]
    pub(crate) const fn leaf_entry(&self, phys: PhysAddr, perm: Perm, size: PageSize) -> SlPte {
        match self.stage {
            Stage::Second => SlPte::leaf(phys, perm, size).with_flags(self.leaf_flags, true),
            Stage::First { user } => SlPte(FlPte::leaf(phys, perm, size, user).0),
        }
    }

    /// The non-leaf entry (as a raw entry word) pointing at `table`.
    #[inline]
    pub(crate) const fn table_entry(&self, table: PhysAddr) -> SlPte {
        match self.stage {
            Stage::Second => SlPte::table(table),
            Stage::First { user } => SlPte(FlPte::table(table, user).0),
        }
    }

    /// Whether a mapping may have `perm`: not empty, and not write-only in
    /// a first-stage table.
    #[inline]
    pub(crate) const fn check_perm(&self, perm: Perm) -> Result<()> {
        if perm.is_empty() {
            return Err(Error::NoPermission);
        }
        if matches!(self.stage, Stage::First { .. }) && !perm.contains(Perm::READ) {
            return Err(Error::WriteOnly);
        }
        Ok(())
    }

    /// [`new`](Self::new) with SAGAW and SLLPS from the unit's CAP.
    pub fn from_cap(cap: Cap, width: u8) -> Result<Self> {
        Self::new(cap.sagaw(), cap.sllps(), width)
    }

    /// This configuration with SNP set in every leaf (only when ECAP.SC).
    #[must_use]
    pub const fn with_snoop(self, on: bool) -> Self {
        let leaf_flags = if on { SlPteFlags::SNOOP } else { SlPteFlags::empty() };
        Self { leaf_flags, ..self }
    }

    /// The table depth and the AW value of context entries that use it.
    pub const fn agaw(&self) -> Agaw {
        self.agaw
    }

    /// The usable IOVA width in bits.
    pub const fn width(&self) -> u8 {
        self.width
    }

    /// The page sizes that may be mapped.
    pub const fn page_sizes(&self) -> SecondLevelPageSizes {
        self.sllps
    }

    /// 2^width: the first IOVA beyond the domain.
    #[inline]
    pub(crate) const fn width_limit(&self) -> u64 {
        1 << self.width
    }

    /// The supported page sizes, largest first, that an address with bits
    /// `addr_bits` may start and that fit in `remaining` bytes.
    pub(crate) fn sizes_at(
        &self,
        addr_bits: u64,
        remaining: u64,
    ) -> impl Iterator<Item = PageSize> + use<> {
        let sllps = self.sllps;
        LARGEST_FIRST.into_iter().filter(move |s| {
            sllps.supports(*s) && addr_bits & (s.bytes() - 1) == 0 && s.bytes() <= remaining
        })
    }

    /// The checks every single-page operation makes first.
    #[inline]
    pub(crate) fn check(&self, iova: Iova, phys: PhysAddr, size: PageSize) -> Result<()> {
        if !self.sllps.supports(size) {
            return Err(Error::UnsupportedPageSize(size));
        }
        if !iova.is_aligned(size.bytes()) || !phys.is_aligned(size.bytes()) {
            return Err(Error::Misaligned { iova, phys, size });
        }
        // The whole page, whose last byte is `iova | (size - 1)` once aligned.
        if iova.as_u64() | (size.bytes() - 1) >= self.width_limit() {
            return Err(Error::BeyondWidth { iova });
        }
        if phys.as_u64() & !ADDR_MASK != 0 {
            return Err(Error::PhysBeyondWidth { phys });
        }
        Ok(())
    }

    /// The checks of a range operation: `iova`, `phys` and `len` multiples
    /// of 4 KiB, the range within the width.
    #[inline]
    pub(crate) fn check_range(&self, iova: Iova, phys: PhysAddr, len: u64) -> Result<()> {
        if !iova.is_aligned(PAGE_SIZE)
            || !phys.is_aligned(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
        {
            return Err(Error::Misaligned { iova, phys, size: PageSize::Size4KiB });
        }
        if iova.checked_add(len).is_none_or(|end| end.as_u64() > self.width_limit()) {
            return Err(Error::BeyondWidth { iova });
        }
        Ok(())
    }

    /// The flags every leaf gets.
    #[inline]
    pub(crate) const fn leaf_flags(&self) -> SlPteFlags {
        self.leaf_flags
    }
}

/// A second-level page table that this driver builds and owns.
///
/// Non-leaf entries are always R+W, so a leaf's permission is the page's.
/// Each non-leaf entry also holds, in its ignored bits 61:52 (§9.8), the
/// number of present entries of the table it points at, so unmapping the
/// last page of a table detaches that table without scanning it. For the
/// last-level table the 4 KiB fast path last used, the count is kept in the
/// walk cache and written back lazily; the unit ignores those bits, so what
/// it reads is the same either way. The walk cache also remembers the
/// level-2 table of the last 1 GiB region, so the fast path reads one entry
/// to reach another last-level table there.
///
/// Dropping the table leaks its frames (the unit may still walk them): call
/// [`destroy`](Self::destroy) once no context entry uses it any more and
/// the caches have been invalidated.
#[derive(Debug)]
pub struct SlPageTable<M: PhysMem, A: FrameAllocator> {
    pub(crate) mem: M,
    pub(crate) alloc: A,
    pub(crate) root: PhysAddr,
    pub(crate) config: TableConfig,
    pub(crate) cache: LeafTableCache,
    pub(crate) spare: SpareFrames,
    pub(crate) kept: KeptTables,
}

/// Why a range map stopped: the error, and how many bytes from the start
/// were mapped before it (they stay mapped).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "part of the range may be mapped"]
pub struct PartialMap {
    /// Bytes mapped from the start of the range.
    pub mapped: u64,
    /// What stopped the map.
    pub error: Error,
}

/// The page sizes, largest first.
pub(crate) const LARGEST_FIRST: [PageSize; 3] =
    [PageSize::Size1GiB, PageSize::Size2MiB, PageSize::Size4KiB];

impl<M: PhysMem, A: FrameAllocator> SlPageTable<M, A> {
    /// An empty table: allocates and zeroes its root frame.
    pub fn new(mem: M, alloc: A, config: TableConfig) -> Result<Self> {
        let root = alloc_table(&mem, &alloc)?;
        let cache = LeafTableCache::new(config.width);
        let (spare, kept) = (SpareFrames::new(0), KeptTables::NONE);
        Ok(Self { mem, alloc, root, config, cache, spare, kept })
    }

    /// Keeps up to `frames` (at most [`MAX_SPARE_FRAMES`](crate::MAX_SPARE_FRAMES)) released table
    /// frames for the next tables this table builds, instead of giving them
    /// back to the allocator: they are zero already (a detached table is
    /// empty), so building a table on one skips zeroing 4 KiB. A table
    /// whose pages come and go in one region, as a hypervisor's shadow of a
    /// guest's mappings does, detaches and rebuilds its last-level tables
    /// at that rhythm. A frame is kept only when its token is
    /// [released](Self::release), that is after the invalidation that
    /// covers it completed, so no unit still walks it. 0 (the default)
    /// keeps none; lowering the limit gives back what is above it.
    pub fn keep_spare_frames(&mut self, frames: u8) {
        self.spare.set_limit(frames, &self.alloc);
    }

    /// Keeps up to `tables` (at most [`MAX_KEPT_TABLES`](crate::MAX_KEPT_TABLES)) last-level tables
    /// linked when their last page is unmapped, instead of detaching them:
    /// such an unmap changes one leaf (its token is
    /// [`leaf_only`](crate::Unmapped::leaf_only), no frame to release) and
    /// the next 4 KiB map in the table's 2 MiB region writes one leaf. An
    /// empty table translates nothing, as a missing one. A kept table takes
    /// the place of a 2 MiB page: [`map`](Self::map) of a 2 MiB page there
    /// fails with `AlreadyMapped` and [`map_range`](Self::map_range) maps
    /// the region with 4 KiB pages, until
    /// [`detach_empty_tables`](Self::detach_empty_tables) detaches it. 0
    /// (the default) keeps none; the limit applies to the tables emptied
    /// from then on.
    pub fn keep_empty_tables(&mut self, tables: usize) {
        self.kept.set_limit(tables);
    }

    /// The first IOVA of the 2 MiB region of each empty last-level table
    /// kept (see [`keep_empty_tables`](Self::keep_empty_tables)).
    pub fn empty_tables(&self) -> impl Iterator<Item = Iova> + '_ {
        self.kept.iter()
    }

    /// How many released frames are kept (see
    /// [`keep_spare_frames`](Self::keep_spare_frames)).
    pub const fn spare_frames(&self) -> u8 {
        self.spare.len()
    }

    /// The root frame: the SLPTPTR of context entries for this domain.
    pub const fn root(&self) -> PhysAddr {
        self.root
    }

    /// The configuration.
    pub const fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The memory the table lives in.
    pub const fn mem(&self) -> &M {
        &self.mem
    }

    /// The allocator its frames come from.
    pub const fn frames(&self) -> &A {
        &self.alloc
    }

    /// Maps the page of `size` at `iova` to `phys` with `perm`.
    ///
    /// Errors: `UnsupportedPageSize`, `Misaligned`, `BeyondWidth`,
    /// `PhysBeyondWidth`, `NoPermission`, `AlreadyMapped` (a translation,
    /// or a table of smaller pages, is in the page's place), `OutOfFrames`.
    /// On error nothing changed.
    #[inline(always)]
    pub fn map(&mut self, iova: Iova, phys: PhysAddr, size: PageSize, perm: Perm) -> Result<()> {
        if size == PageSize::Size4KiB && self.cache_leaf_table(iova)? {
            return self.map_in_cached_table(iova, phys, perm);
        }
        match self.map_one(iova, phys, size, perm)? {
            true => Ok(()),
            false => Err(Error::AlreadyMapped { iova }),
        }
    }

    /// Maps `[iova, iova + len)` to `[phys, phys + len)` with `perm`, each
    /// piece with the largest supported page that the alignment of both
    /// addresses and the remaining length allow and that no table of
    /// smaller pages is in the place of.
    pub fn map_range(
        &mut self,
        iova: Iova,
        phys: PhysAddr,
        len: u64,
        perm: Perm,
    ) -> core::result::Result<(), PartialMap> {
        let fail = |mapped, error| Err(PartialMap { mapped, error });
        if let Err(e) = self.config.check_range(iova, phys, len) {
            return fail(0, e);
        }
        let mut done = 0;
        while done < len {
            let (i, p) = (Iova::new(iova.as_u64() + done), PhysAddr::new(phys.as_u64() + done));
            let mut mapped = None;
            for size in self.sizes_at(i.as_u64() | p.as_u64(), len - done) {
                match self.map_one(i, p, size, perm) {
                    Ok(true) => {
                        mapped = Some(size);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => return fail(done, e),
                }
            }
            match mapped {
                Some(size) => done += size.bytes(),
                None => return fail(done, Error::AlreadyMapped { iova: i }),
            }
        }
        Ok(())
    }

    /// The translation of `iova`: `None` when it is not mapped or beyond
    /// the domain's width.
    #[inline]
    pub fn translate(&self, iova: Iova) -> Option<Translation> {
        translate(&self.mem, self.root, &self.config, iova)
    }

    /// Frees every frame of the table and gives back the memory and the
    /// allocator. Call it only when no context entry points at the table
    /// and the unit's caches were invalidated.
    pub fn destroy(mut self) -> (M, A) {
        self.free_subtree(self.root, self.config.agaw.levels());
        self.spare.set_limit(0, &self.alloc);
        (self.mem, self.alloc)
    }

    /// The supported page sizes, largest first, that an address with bits
    /// `addr_bits` may start and that fit in `remaining` bytes.
    pub(crate) fn sizes_at(
        &self,
        addr_bits: u64,
        remaining: u64,
    ) -> impl Iterator<Item = PageSize> + use<M, A> {
        self.config.sizes_at(addr_bits, remaining)
    }

    /// The checks every single-page operation makes first.
    #[inline]
    pub(crate) fn check(&self, iova: Iova, phys: PhysAddr, size: PageSize) -> Result<()> {
        self.config.check(iova, phys, size)
    }

    /// The fast path's walk: makes the walk cache hold `iova`'s last-level
    /// table. `false` when some level is missing or a superpage (or `iova`
    /// is beyond the width, or the domain too narrow to cache), for the
    /// general path to handle.
    #[inline(always)]
    pub(crate) fn cache_leaf_table(&mut self, iova: Iova) -> Result<bool> {
        // Only IOVAs within the width are ever cached, and a cached region
        // does not reach beyond it, so a hit is in range.
        if self.cache.hit(iova) {
            return Ok(true);
        }
        self.fill_cache(iova)
    }

    /// [`cache_leaf_table`](Self::cache_leaf_table) on a miss: reads the
    /// level-2 entry from the cached level-2 table of `iova`'s 1 GiB region,
    /// or from a read-only descent.
    #[inline(always)]
    fn fill_cache(&mut self, iova: Iova) -> Result<bool> {
        if !self.cache.may_hold(iova) {
            return Ok(false);
        }
        let directory = match self.cache.directory(iova) {
            Some(table) => table,
            None => {
                let found = match self.config.agaw {
                    Agaw::Bits39 => self.level2_table::<3>(iova)?,
                    Agaw::Bits48 => self.level2_table::<4>(iova)?,
                    Agaw::Bits57 => self.level2_table::<5>(iova)?,
                };
                let Some(table) = found else { return Ok(false) };
                self.cache.set_directory(iova, table);
                table
            }
        };
        let slot = entry_address(directory, index(iova, 2));
        let e = SlPte(self.mem.read_u64(slot)?);
        if !e.is_table() {
            return Ok(false);
        }
        self.write_back_cache()?;
        self.cache.fill(iova, slot, e);
        Ok(true)
    }

    /// The level-2 table on `iova`'s path in a `LEVELS`-deep table, if
    /// every entry above it points at a table. A constant depth lets the
    /// compiler unroll the descent.
    #[inline]
    fn level2_table<const LEVELS: u8>(&self, iova: Iova) -> Result<Option<PhysAddr>> {
        let mut table = self.root;
        for level in (3..=LEVELS).rev() {
            let e = SlPte(self.mem.read_u64(entry_address(table, index(iova, level)))?);
            if !e.is_table() {
                return Ok(None);
            }
            table = e.address();
        }
        Ok(Some(table))
    }

    /// Writes the walk cache's level-2 entry back to memory.
    #[inline]
    fn write_back_cache(&mut self) -> Result<()> {
        match self.cache.dirty() {
            Some((slot, e)) => self.write_pte(slot, e),
            None => Ok(()),
        }
    }

    /// Writes the walk cache back and empties it: the general paths call it
    /// before they read or change counts.
    #[inline]
    pub(crate) fn flush_cache(&mut self) -> Result<()> {
        self.write_back_cache()?;
        self.cache.clear();
        Ok(())
    }

    /// Maps the 4 KiB page at `iova` into the cached last-level table.
    #[inline(always)]
    fn map_in_cached_table(&mut self, iova: Iova, phys: PhysAddr, perm: Perm) -> Result<()> {
        // The width was checked on the way to the cache.
        if !iova.is_aligned(PAGE_SIZE) || !phys.is_aligned(PAGE_SIZE) {
            return Err(Error::Misaligned { iova, phys, size: PageSize::Size4KiB });
        }
        if phys.as_u64() & !ADDR_MASK != 0 {
            return Err(Error::PhysBeyondWidth { phys });
        }
        self.config.check_perm(perm)?;
        let slot = entry_address(self.cache.table(), index(iova, 1));
        if SlPte(self.mem.read_u64(slot)?).is_present() {
            return Err(Error::AlreadyMapped { iova });
        }
        let leaf = self.config.leaf_entry(phys, perm, PageSize::Size4KiB);
        self.write_pte(slot, leaf)?;
        if self.cache.count == 0 {
            self.kept.forget(iova);
        }
        self.cache.count += 1;
        Ok(())
    }

    /// Maps one page; `Ok(false)` when a table of smaller pages is where the
    /// leaf would go (nothing changed). The general path, kept out of line
    /// so the 4 KiB fast path stays small.
    #[inline(never)]
    fn map_one(&mut self, iova: Iova, phys: PhysAddr, size: PageSize, perm: Perm) -> Result<bool> {
        self.check(iova, phys, size)?;
        self.config.check_perm(perm)?;
        self.flush_cache()?;
        let leaf = self.config.leaf_entry(phys, perm, size);
        let target = size.level();
        let mut table = self.root;
        let mut parent = None;
        let mut level = self.config.agaw.levels();
        loop {
            let slot = entry_address(table, index(iova, level));
            let e = SlPte(self.mem.read_u64(slot)?);
            if level == target {
                if e.is_present() {
                    return if level == 1 || e.is_superpage() {
                        Err(Error::AlreadyMapped { iova })
                    } else {
                        Ok(false)
                    };
                }
                self.write_pte(slot, leaf)?;
                break;
            }
            if !e.is_present() {
                self.map_new_tables(iova, leaf, level, target, slot)?;
                break;
            }
            if e.is_superpage() {
                return Err(Error::AlreadyMapped { iova });
            }
            parent = Some((slot, e));
            table = e.address();
            level -= 1;
        }
        if let Some((slot, e)) = parent {
            if target == 1 && e.count() == 0 {
                self.kept.forget(iova);
            }
            self.write_pte(slot, e.with_count(e.count() + 1))?;
        }
        Ok(true)
    }

    /// Builds the missing tables below the empty entry `slot` at `level`
    /// down to `target`, with `leaf` at the bottom, and links the chain by
    /// one write of `slot` once it is complete. Frames are allocated first,
    /// so running out changes nothing.
    fn map_new_tables(
        &mut self,
        iova: Iova,
        leaf: SlPte,
        level: u8,
        target: u8,
        slot: PhysAddr,
    ) -> Result<()> {
        let mut frames = [PhysAddr::ZERO; 4];
        let n = usize::from(level - target);
        let chain = frames.get_mut(..n).ok_or(Error::OutOfFrames)?;
        self.alloc_chain(chain)?;
        // chain[i] is the table at level `level - 1 - i`.
        let mut below = leaf;
        for (i, frame) in chain.iter().enumerate().rev() {
            let l = level - 1 - i as u8;
            self.write_pte(entry_address(*frame, index(iova, l)), below)?;
            below = self.config.table_entry(*frame).with_count(1);
        }
        self.write_pte(slot, below)
    }

    /// Fills `frames` with zeroed frames, spare ones first, or frees those
    /// it got and fails.
    pub(crate) fn alloc_chain(&mut self, frames: &mut [PhysAddr]) -> Result<()> {
        for i in 0..frames.len() {
            let frame = match self.spare.take() {
                Some(f) => Ok(f),
                None => alloc_table(&self.mem, &self.alloc),
            };
            match frame {
                Ok(f) => frames[i] = f,
                Err(e) => {
                    for f in &frames[..i] {
                        self.alloc.deallocate(*f, 0);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Writes one entry and flushes it for a non-coherent unit (§6.2.1).
    #[inline]
    pub(crate) fn write_pte(&self, slot: PhysAddr, pte: SlPte) -> Result<()> {
        self.mem.write_u64(slot, pte.0)?;
        self.mem.flush_for_device(slot, 8);
        Ok(())
    }

    /// Frees the table at `table` (at `level`) and every table below it.
    fn free_subtree(&self, table: PhysAddr, level: u8) {
        if level > 1 {
            for i in 0..PTES_PER_TABLE {
                if let Ok(e) = self.mem.read_u64(entry_address(table, i)).map(SlPte)
                    && e.is_present()
                    && !e.is_superpage()
                {
                    self.free_subtree(e.address(), level - 1);
                }
            }
        }
        self.alloc.deallocate(table, 0);
    }
}

/// The translation of `iova` in the table rooted at `root` of shape
/// `config`: `None` when it is not mapped or beyond the domain's width.
#[inline]
pub(crate) fn translate<M: PhysMem>(
    mem: &M,
    root: PhysAddr,
    config: &TableConfig,
    iova: Iova,
) -> Option<Translation> {
    if iova.as_u64() >= config.width_limit() {
        return None;
    }
    match config.agaw {
        Agaw::Bits39 => translate_in::<M, 3>(mem, root, iova),
        Agaw::Bits48 => translate_in::<M, 4>(mem, root, iova),
        Agaw::Bits57 => translate_in::<M, 5>(mem, root, iova),
    }
}

/// [`translate`] in a `LEVELS`-deep table (a constant, so the compiler
/// unrolls the walk).
#[inline]
fn translate_in<M: PhysMem, const LEVELS: u8>(
    mem: &M,
    root: PhysAddr,
    iova: Iova,
) -> Option<Translation> {
    let mut table = root;
    for level in (1..=LEVELS).rev() {
        let e = SlPte(mem.read_u64(entry_address(table, index(iova, level))).ok()?);
        if !e.is_present() {
            return None;
        }
        if let Some(size) = leaf_size(level).filter(|_| level == 1 || e.is_superpage()) {
            let phys = PhysAddr::new(e.address().as_u64() | (iova.as_u64() & (size.bytes() - 1)));
            return Some(Translation { phys, perm: e.perm(), size });
        }
        table = e.address();
    }
    None
}
