//! A domain's second-level table that several CPUs update at once (VT-d
//! §3.7, §9.8), each through `&self`, as Linux's IOMMU page-table code
//! does: no lock, because concurrent callers work on disjoint IOVA ranges
//! (the IOVA allocator hands each range to one owner).
//!
//! What two CPUs can share is a table on both their paths. Entries are
//! written with single-word stores and read with single-word loads; a
//! missing intermediate table is installed with one compare-exchange on
//! its parent entry, and the CPU that loses the race frees its own frame
//! (which nobody else ever saw) and walks on through the winner's. A table
//! is detached by an unmap only when the range covers its whole span: no
//! other range can reach it then. So the non-leaf entries carry no count
//! of present entries (which every CPU mapping under the same table would
//! have to update), and a table that a range leaves partly used stays,
//! empty or not, until it is covered whole or the table is destroyed.
//!
//! Overlapping concurrent calls break the contract; they cannot cause
//! undefined behaviour (every access goes through [`PhysMem`]) but give
//! wrong translations, as a wrong entry written through `PhysMem` would.

use vtd_regs::{AtomicPhysMem, FrameAllocator, Iova, PAGE_SHIFT, PageSize, PhysAddr, PhysMem};

use crate::error::{Error, Result};
use crate::frames::{SpareFrames, alloc_table};
use crate::kept::KeptTables;
use crate::leaf_cache::LeafTableCache;
use crate::perm::Perm;
use crate::pte::{ADDR_MASK, PTES_PER_TABLE, SlPte, entry_address, index, leaf_size, level_shift};
use crate::table::{PartialMap, SlPageTable, TableConfig, translate};
use crate::translation::Translation;
use crate::unmap::{PartialUnmap, Unmapped};

/// Entries of a last-level run read or written at once (a 512-byte
/// buffer on the stack, small enough for a kernel stack).
const CHUNK: usize = 64;

/// A second-level table shared by CPUs: `Sync` when its memory and frame
/// allocator are, mapped and unmapped through `&self` by callers that
/// work on disjoint IOVA ranges (see the module documentation).
///
/// The memory must make [`PhysMem::compare_exchange_u64`] atomic (it
/// implements [`AtomicPhysMem`]); a memory that does not is refused at
/// compile time:
///
/// ```compile_fail,E0277
/// # use vtd_regs::{AtomicPhysMem, FrameAllocator, MemError, PhysAddr, PhysMem};
/// # use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
/// # use vtd_tables::{SharedSlTable, TableConfig};
/// struct Plain;
/// impl PhysMem for Plain {
///     fn read_u64(&self, a: PhysAddr) -> Result<u64, MemError> { Ok(0) }
///     fn write_u64(&self, a: PhysAddr, _: u64) -> Result<(), MemError> { Ok(()) }
///     fn read_bytes(&self, a: PhysAddr, _: &mut [u8]) -> Result<(), MemError> { Ok(()) }
///     fn write_bytes(&self, a: PhysAddr, _: &[u8]) -> Result<(), MemError> { Ok(()) }
/// }
/// struct NoFrames;
/// unsafe impl FrameAllocator for NoFrames {
///     fn allocate(&self, _: u8) -> Option<PhysAddr> { None }
///     fn deallocate(&self, _: PhysAddr, _: u8) {}
/// }
/// let config = TableConfig::new(Sagaw::BITS39_L3, SecondLevelPageSizes::empty(), 39).unwrap();
/// let _ = SharedSlTable::new(Plain, NoFrames, config);
/// ```
///
/// Dropping the table leaks its frames (the unit may still walk them):
/// call [`destroy`](Self::destroy) once no context entry uses it any more
/// and the caches have been invalidated.
#[derive(Debug)]
pub struct SharedSlTable<M: PhysMem, A: FrameAllocator> {
    mem: M,
    alloc: A,
    root: PhysAddr,
    config: TableConfig,
}

impl<M: AtomicPhysMem, A: FrameAllocator> SharedSlTable<M, A> {
    /// An empty table: allocates and zeroes its root frame.
    pub fn new(mem: M, alloc: A, config: TableConfig) -> Result<Self> {
        let root = alloc_table(&mem, &alloc)?;
        Ok(Self { mem, alloc, root, config })
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

    /// The translation of `iova`: `None` when it is not mapped or beyond
    /// the domain's width.
    #[inline]
    pub fn translate(&self, iova: Iova) -> Option<Translation> {
        translate(&self.mem, self.root, &self.config, iova)
    }

    /// Maps `[iova, iova + len)` to `[phys, phys + len)` with `perm`, each
    /// piece with the largest supported page that the alignment of both
    /// addresses and the remaining length allow and that no table of
    /// smaller pages is in the place of; runs of 4 KiB pages are written
    /// a chunk of entries at a time. The caller owns the range: no other
    /// call works on it meanwhile.
    ///
    /// Errors as [`SlPageTable::map_range`]; the part mapped before the
    /// error stays mapped and is reported.
    pub fn map_range(
        &self,
        iova: Iova,
        phys: PhysAddr,
        len: u64,
        perm: Perm,
    ) -> core::result::Result<(), PartialMap> {
        let fail = |mapped, error| Err(PartialMap { mapped, error });
        if let Err(e) = self.config.check_range(iova, phys, len) {
            return fail(0, e);
        }
        if perm.is_empty() {
            return fail(0, Error::NoPermission);
        }
        if len > 0 && (phys.as_u64() + (len - 1)) & !(ADDR_MASK | 0xfff) != 0 {
            return fail(0, Error::PhysBeyondWidth { phys });
        }
        let mut done = 0;
        while done < len {
            let (i, p) = (Iova::new(iova.as_u64() + done), PhysAddr::new(phys.as_u64() + done));
            let mut mapped = None;
            for size in self.config.sizes_at(i.as_u64() | p.as_u64(), len - done) {
                match self.map_at(i, p, size, perm, len - done) {
                    Ok(Some(bytes)) => {
                        mapped = Some(bytes);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => return fail(done, e),
                }
            }
            match mapped {
                Some(bytes) => done += bytes,
                None => return fail(done, Error::AlreadyMapped { iova: i }),
            }
        }
        Ok(())
    }

    /// Maps pages of `size` from `iova`: one superpage, or as many 4 KiB
    /// pages as `remaining` and the last-level table hold. The bytes
    /// mapped; `None` when a table of smaller pages is where the
    /// superpage would go (nothing changed).
    fn map_at(
        &self,
        iova: Iova,
        phys: PhysAddr,
        size: PageSize,
        perm: Perm,
        remaining: u64,
    ) -> Result<Option<u64>> {
        self.config.check(iova, phys, size)?;
        let table = self.table_at(iova, size.level())?;
        let leaf = |p: u64| {
            SlPte::leaf(PhysAddr::new(p), perm, size).with_flags(self.config.leaf_flags(), true)
        };
        if size != PageSize::Size4KiB {
            let slot = entry_address(table, index(iova, size.level()));
            let e = SlPte(self.mem.read_u64(slot)?);
            if e.is_table() {
                return Ok(None);
            }
            if e.is_present() {
                return Err(Error::AlreadyMapped { iova });
            }
            self.write(slot, &[leaf(phys.as_u64()).0])?;
            return Ok(Some(size.bytes()));
        }
        let first = index(iova, 1);
        let pages = ((remaining >> PAGE_SHIFT) as usize).min(PTES_PER_TABLE - first);
        let mut buf = [0u64; CHUNK];
        let mut k = 0;
        while k < pages {
            let n = (pages - k).min(CHUNK);
            let at = entry_address(table, first + k);
            let run = buf.get_mut(..n).ok_or(Error::OutOfFrames)?;
            self.mem.read_u64s(at, run)?;
            if let Some(taken) = run.iter().position(|&e| SlPte(e).is_present()) {
                let page = (k + taken) as u64;
                // What this call mapped before the page stays mapped.
                return match k {
                    0 => Err(Error::AlreadyMapped {
                        iova: Iova::new(iova.as_u64() + (page << PAGE_SHIFT)),
                    }),
                    _ => Ok(Some((k as u64) << PAGE_SHIFT)),
                };
            }
            let base = phys.as_u64() + ((k as u64) << PAGE_SHIFT);
            for (j, e) in run.iter_mut().enumerate() {
                *e = leaf(base + ((j as u64) << PAGE_SHIFT)).0;
            }
            self.write(at, run)?;
            k += n;
        }
        Ok(Some((pages as u64) << PAGE_SHIFT))
    }

    /// The table at `level` on `iova`'s path, installing the missing
    /// tables above it. `AlreadyMapped` when a superpage is in the way.
    fn table_at(&self, iova: Iova, level: u8) -> Result<PhysAddr> {
        let mut table = self.root;
        for l in (level + 1..=self.config.agaw().levels()).rev() {
            let slot = entry_address(table, index(iova, l));
            let mut e = SlPte(self.mem.read_u64(slot)?);
            if !e.is_present() {
                e = self.install(slot, e)?;
            }
            if !e.is_table() {
                return Err(Error::AlreadyMapped { iova });
            }
            table = e.address();
        }
        Ok(table)
    }

    /// Installs a new empty table in the not-present entry `slot` (which
    /// held `empty`) with one compare-exchange. If another CPU installed
    /// one first, its entry is returned and the frame allocated here goes
    /// straight back: nothing but this call ever saw it.
    #[inline(never)]
    fn install(&self, slot: PhysAddr, empty: SlPte) -> Result<SlPte> {
        let frame = alloc_table(&self.mem, &self.alloc)?;
        let new = SlPte::table(frame);
        match self.mem.compare_exchange_u64(slot, empty.0, new.0) {
            Ok(Ok(_)) => {
                self.mem.flush_for_device(slot, 8);
                Ok(new)
            }
            Ok(Err(found)) => {
                self.alloc.deallocate(frame, 0);
                Ok(SlPte(found))
            }
            Err(e) => {
                self.alloc.deallocate(frame, 0);
                Err(e.into())
            }
        }
    }

    /// Writes a run of entries and flushes them for a non-coherent unit
    /// (§6.2.1).
    #[inline]
    fn write(&self, at: PhysAddr, entries: &[u64]) -> Result<()> {
        self.mem.write_u64s(at, entries)?;
        self.mem.flush_for_device(at, entries.len() * 8);
        Ok(())
    }

    /// Removes every translation in `[iova, iova + len)`, which must all be
    /// mapped, by pages that lie wholly inside the range (a superpage that
    /// straddles an end is refused with `Misaligned` at its size: this
    /// table does not split pages). Each table whose whole span the range
    /// covers is detached into the token, freed by
    /// [`release`](Self::release) after the invalidation. The caller owns
    /// the range: no other call works on it meanwhile.
    ///
    /// On error, the part before the failing page stays unmapped and comes
    /// back in [`PartialUnmap::done`].
    #[allow(
        clippy::result_large_err,
        reason = "the error must carry the token of the part unmapped"
    )]
    pub fn unmap_range(
        &self,
        iova: Iova,
        len: u64,
    ) -> core::result::Result<Unmapped, PartialUnmap> {
        let mut token = Unmapped::new(self.root, iova);
        let checked = self.config.check_range(iova, PhysAddr::ZERO, len);
        let levels = self.config.agaw().levels();
        let end = iova.as_u64() + len;
        match checked
            .and_then(|()| self.unmap_in(self.root, levels, iova.as_u64(), end, &mut token))
        {
            Ok(()) => Ok(token),
            Err(error) => Err(PartialUnmap { done: token, error }),
        }
    }

    /// Removes the translations of `[start, end)`, which lies in the span
    /// of `table` at `level`, in address order, extending `token`.
    fn unmap_in(
        &self,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        token: &mut Unmapped,
    ) -> Result<()> {
        if level == 1 {
            return self.clear_leaves(table, start, end, token);
        }
        let span = 1u64 << level_shift(level);
        let mut pos = start;
        while pos < end {
            let slot = entry_address(table, index(Iova::new(pos), level));
            let e = SlPte(self.mem.read_u64(slot)?);
            let (entry_start, entry_end) = (pos & !(span - 1), (pos & !(span - 1)) + span);
            let piece_end = end.min(entry_end);
            let whole = pos == entry_start && piece_end == entry_end;
            if !e.is_present() {
                return Err(Error::NotMapped { iova: Iova::new(pos) });
            }
            if e.is_superpage() {
                if !whole {
                    let size = leaf_size(level).unwrap_or(PageSize::Size1GiB);
                    return Err(Error::Misaligned {
                        iova: Iova::new(pos),
                        phys: PhysAddr::ZERO,
                        size,
                    });
                }
                self.write(slot, &[SlPte::EMPTY.0])?;
                token.len += span;
            } else {
                self.unmap_in(e.address(), level - 1, pos, piece_end, token)?;
                if whole {
                    // Every entry of the table is clear now and no other
                    // range reaches it: detach it, free it after the
                    // invalidation (paging-structure caches too: IH = 0).
                    self.write(slot, &[SlPte::EMPTY.0])?;
                    token.frames.push(&self.mem, e.address())?;
                    token.leaf_only = false;
                }
            }
            pos = piece_end;
        }
        Ok(())
    }

    /// Clears the present 4 KiB leaves of `[start, end)` in the last-level
    /// `table`, a chunk at a time; stops at the first page not mapped.
    fn clear_leaves(
        &self,
        table: PhysAddr,
        start: u64,
        end: u64,
        token: &mut Unmapped,
    ) -> Result<()> {
        let first = index(Iova::new(start), 1);
        let pages = ((end - start) >> PAGE_SHIFT) as usize;
        const ZEROS: [u64; CHUNK] = [0; CHUNK];
        let mut buf = [0u64; CHUNK];
        let mut k = 0;
        while k < pages {
            let n = (pages - k).min(CHUNK);
            let at = entry_address(table, first + k);
            let run = buf.get_mut(..n).ok_or(Error::OutOfFrames)?;
            self.mem.read_u64s(at, run)?;
            let present = run.iter().position(|&e| !SlPte(e).is_present()).unwrap_or(n);
            self.write(at, ZEROS.get(..present).unwrap_or(&[]))?;
            token.len += (present as u64) << PAGE_SHIFT;
            if present < n {
                let page = start + (((k + present) as u64) << PAGE_SHIFT);
                return Err(Error::NotMapped { iova: Iova::new(page) });
            }
            k += n;
        }
        Ok(())
    }

    /// Frees the frames of a token whose invalidation has completed. A
    /// token of another table comes back unchanged.
    pub fn release(&self, token: Unmapped) -> core::result::Result<(), Unmapped> {
        if token.table != self.root {
            return Err(token);
        }
        // A shared table keeps no spare frames: all go back to the allocator.
        token.frames.free(&self.mem, &self.alloc, &mut SpareFrames::new(0));
        Ok(())
    }

    /// Frees every frame of the table and gives back the memory and the
    /// allocator. Call it only when no context entry points at the table
    /// and the unit's caches were invalidated.
    pub fn destroy(self) -> (M, A) {
        let cache = LeafTableCache::new(self.config.width());
        SlPageTable {
            mem: self.mem,
            alloc: self.alloc,
            root: self.root,
            config: self.config,
            cache,
            spare: SpareFrames::new(0),
            kept: KeptTables::NONE,
        }
        .destroy()
    }
}

impl<M: AtomicPhysMem, A: FrameAllocator> From<SlPageTable<M, A>> for SharedSlTable<M, A> {
    /// Shares a table built by [`SlPageTable`] (its counts of present
    /// entries are ignored from then on: a shared table detaches a table
    /// only when a range covers it whole).
    fn from(mut table: SlPageTable<M, A>) -> Self {
        // Its spare frames go back to the allocator; kept empty tables stay
        // linked (they translate nothing).
        table.keep_spare_frames(0);
        let SlPageTable { mem, alloc, root, config, .. } = table;
        Self { mem, alloc, root, config }
    }
}
