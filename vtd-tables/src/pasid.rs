//! Scalable-mode structures a driver builds (VT-d §3.4.3, §9.2, §9.4–§9.6):
//! a device's PASID directory and PASID tables ([`PasidTable`]), and the
//! scalable-mode root and context tables that point at them
//! ([`ScalableContextManager`]).
//!
//! Each change returns a `#[must_use]` token of what the unit may still
//! have cached, as [`ContextManager`](crate::ContextManager) does for
//! legacy contexts: [`PasidChange`] (a PASID entry changed: PASID-cache and
//! IOTLB invalidations are owed, §6.5.2.2, §6.5.2.4) and
//! [`ScalableContextChange`] (a scalable-mode context entry changed:
//! context cache, PASID cache and IOTLB). The `invalidation` crate turns
//! them into requests (`Invalidation::pasid_changed`,
//! `Invalidation::scalable_context_changed`).

use vtd_regs::desc::Pasid;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::{DomainId, FrameAllocator, PhysAddr, PhysMem, SourceId};

use crate::error::{Error, Result};
use crate::frames::alloc_table;
use crate::root::{ROOT_ENTRIES, ScalableRootEntry};
use crate::scalable::{PasidDirEntry, PasidEntry, PasidTranslationType, ScalableContextEntry};
use crate::table::{SlPageTable, Stage};

/// PASID directory entries in one directory frame (4 KiB of 8-byte entries).
pub const DIRECTORY_ENTRIES: u32 = 512;
/// PASID entries per PASID table (4 KiB of 64-byte entries, §9.6).
pub const TABLE_ENTRIES: u32 = 64;
/// PDTS of a one-frame directory: 2^(2 + 7) = 512 entries (§9.4).
const PDTS: u8 = 2;

/// What a PASID's entry says (§9.6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PasidAttachment {
    /// PGTT 001b: translate through the first-stage table at `table`.
    FirstStage {
        /// DID (tags the IOTLB entries, with the PASID).
        domain: DomainId,
        /// FSPTPTR.
        table: PhysAddr,
        /// FLPM = 01b (5-level).
        five_level: bool,
        /// SRE: supervisor requests allowed.
        supervisor: bool,
    },
    /// PGTT 010b: translate through the second-stage table at `table`.
    SecondStage {
        /// DID.
        domain: DomainId,
        /// SSPTPTR.
        table: PhysAddr,
        /// AW: the table's depth.
        agaw: Agaw,
    },
    /// PGTT 011b: the first-stage table at `first` (whose addresses, and
    /// its own, the second stage translates) over the second-stage table
    /// at `second`.
    Nested {
        /// DID.
        domain: DomainId,
        /// FSPTPTR (an input address of the second stage).
        first: PhysAddr,
        /// FLPM = 01b.
        five_level: bool,
        /// SSPTPTR.
        second: PhysAddr,
        /// AW of the second stage.
        agaw: Agaw,
    },
    /// PGTT 100b: pass untranslated requests through.
    PassThrough {
        /// DID.
        domain: DomainId,
        /// AW: the widest AGAW the unit supports (§9.6).
        agaw: Agaw,
    },
    /// P = 0: every request with this PASID faults (59h).
    Blocked,
}

impl PasidAttachment {
    /// Translation through `table`, first- or second-stage by how the
    /// table was built ([`Stage`]): the same mapper serves either.
    pub fn table<M: PhysMem, A: FrameAllocator>(
        domain: DomainId,
        table: &SlPageTable<M, A>,
    ) -> Self {
        let c = table.config();
        match c.stage() {
            Stage::Second => {
                PasidAttachment::SecondStage { domain, table: table.root(), agaw: c.agaw() }
            }
            Stage::First { .. } => PasidAttachment::FirstStage {
                domain,
                table: table.root(),
                five_level: c.agaw() == Agaw::Bits57,
                supervisor: false,
            },
        }
    }

    /// The PASID entry that encodes it.
    pub const fn entry(self) -> PasidEntry {
        match self {
            PasidAttachment::FirstStage { domain, table, five_level, supervisor } => {
                PasidEntry::first_stage(domain, table, five_level, supervisor)
            }
            PasidAttachment::SecondStage { domain, table, agaw } => {
                PasidEntry::second_stage(domain, table, agaw)
            }
            PasidAttachment::Nested { domain, first, five_level, second, agaw } => {
                PasidEntry::nested(domain, first, five_level, second, agaw)
            }
            PasidAttachment::PassThrough { domain, agaw } => PasidEntry::pass_through(domain, agaw),
            PasidAttachment::Blocked => PasidEntry { qw: [0; 8] },
        }
    }
}

/// A present PASID entry's domain and translation type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PasidUse {
    /// DID.
    pub domain: DomainId,
    /// PGTT.
    pub pgtt: PasidTranslationType,
}

impl PasidUse {
    /// Whether the unit tags this entry's translations with the PASID
    /// (first-stage and nested: PASID-based IOTLB invalidation, §6.5.2.4)
    /// rather than with the domain alone (second-stage and pass-through:
    /// domain-selective IOTLB invalidation, §6.5.2.3).
    pub const fn tagged_by_pasid(self) -> bool {
        matches!(self.pgtt, PasidTranslationType::FirstStage | PasidTranslationType::Nested)
    }

    fn of(e: &PasidEntry) -> Option<Self> {
        match (e.present(), e.translation_type()) {
            (true, Some(pgtt)) => Some(Self { domain: e.domain_id(), pgtt }),
            _ => None,
        }
    }
}

/// A PASID entry changed: the unit may still use the old one (PASID cache)
/// and the translations it produced (IOTLB) until they are invalidated
/// (§6.5.2.2, §6.5.2.4; Linux `intel_pasid_tear_down_entry`). Under caching
/// mode (CAP.CM) a new entry where none was is owed a PASID-cache
/// invalidation too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "the PASID cache and IOTLB must be invalidated for the PASID"]
pub struct PasidChange {
    /// The PASID.
    pub pasid: Pasid,
    /// The previous present entry.
    pub previous: Option<PasidUse>,
    /// The new entry (`None`: blocked).
    pub current: Option<PasidUse>,
}

/// A device's PASID directory and the PASID tables under it, built on
/// demand: one directory frame, so PASIDs below 2^15.
///
/// Dropping it leaks its frames; call [`destroy`](Self::destroy) once no
/// context entry points at it and the caches were invalidated.
#[derive(Debug)]
pub struct PasidTable<M: PhysMem, A: FrameAllocator> {
    mem: M,
    alloc: A,
    dir: PhysAddr,
}

impl<M: PhysMem, A: FrameAllocator> PasidTable<M, A> {
    /// An empty directory: every PASID is blocked.
    pub fn new(mem: M, alloc: A) -> Result<Self> {
        let dir = alloc_table(&mem, &alloc)?;
        Ok(Self { mem, alloc, dir })
    }

    /// The directory (PASIDDIRPTR of the device's context entry).
    pub const fn directory(&self) -> PhysAddr {
        self.dir
    }

    /// PDTS of the device's context entry.
    pub const fn pdts(&self) -> u8 {
        PDTS
    }

    /// The PASIDs this table can hold.
    pub const fn capacity(&self) -> u32 {
        DIRECTORY_ENTRIES * TABLE_ENTRIES
    }

    /// Programs `pasid`'s entry. A present entry is first made not present,
    /// so the unit never reads a mix of old and new words.
    pub fn set(&mut self, pasid: Pasid, to: PasidAttachment) -> Result<PasidChange> {
        let raw = pasid.raw();
        if raw >= self.capacity() {
            return Err(Error::PasidBeyondTable { pasid: raw });
        }
        let slot = PasidDirEntry::address(self.dir, raw);
        let de = PasidDirEntry(self.mem.read_u64(slot)?);
        let table = if de.present() {
            de.table()
        } else if to == PasidAttachment::Blocked {
            return Ok(PasidChange { pasid, previous: None, current: None });
        } else {
            let t = alloc_table(&self.mem, &self.alloc)?;
            if let Err(e) = self.mem.write_u64(slot, PasidDirEntry::new(t).0) {
                self.alloc.deallocate(t, 0);
                return Err(e.into());
            }
            self.mem.flush_for_device(slot, 8);
            t
        };
        let at = PasidEntry::address(table, raw);
        let old = PasidEntry::read(&self.mem, at)?;
        let new = to.entry();
        if old.present() {
            PasidAttachment::Blocked.entry().write(&self.mem, at)?;
        }
        new.write(&self.mem, at)?;
        Ok(PasidChange { pasid, previous: PasidUse::of(&old), current: PasidUse::of(&new) })
    }

    /// `pasid`'s entry as it is in memory.
    pub fn entry(&self, pasid: Pasid) -> Result<PasidEntry> {
        let raw = pasid.raw();
        if raw >= self.capacity() {
            return Err(Error::PasidBeyondTable { pasid: raw });
        }
        let de = PasidDirEntry(self.mem.read_u64(PasidDirEntry::address(self.dir, raw))?);
        if !de.present() {
            return Ok(PasidAttachment::Blocked.entry());
        }
        Ok(PasidEntry::read(&self.mem, PasidEntry::address(de.table(), raw))?)
    }

    /// Frees the directory and every PASID table; gives back the memory and
    /// the allocator. The page tables are their domains' to free.
    pub fn destroy(self) -> (M, A) {
        for i in 0..DIRECTORY_ENTRIES {
            let slot = PasidDirEntry::address(self.dir, i * TABLE_ENTRIES);
            if let Ok(de) = self.mem.read_u64(slot).map(PasidDirEntry)
                && de.present()
            {
                self.alloc.deallocate(de.table(), 0);
            }
        }
        self.alloc.deallocate(self.dir, 0);
        (self.mem, self.alloc)
    }
}

/// A scalable-mode context entry changed: the context cache (device-
/// selective), and, as the entry selects PASID tables whose entries and
/// translations may be cached under any domain, the PASID cache and the
/// IOTLB (globally, as Linux's `sm_context_flush_caches`) must be
/// invalidated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "the context cache, PASID cache and IOTLB must be invalidated"]
pub struct ScalableContextChange {
    /// The device.
    pub sid: SourceId,
    /// Whether a present entry was replaced or cleared.
    pub was_present: bool,
}

/// The scalable-mode root table and context tables of one unit (RTADDR
/// with TTM = 01b), built on demand.
///
/// Dropping it leaks its frames; call [`destroy`](Self::destroy).
#[derive(Debug)]
pub struct ScalableContextManager<M: PhysMem, A: FrameAllocator> {
    mem: M,
    alloc: A,
    root: PhysAddr,
}

impl<M: PhysMem, A: FrameAllocator> ScalableContextManager<M, A> {
    /// An empty root table: every device is blocked.
    pub fn new(mem: M, alloc: A) -> Result<Self> {
        let root = alloc_table(&mem, &alloc)?;
        Ok(Self { mem, alloc, root })
    }

    /// The root table, for RTADDR with TTM = 01b (scalable mode).
    pub const fn root_table(&self) -> PhysAddr {
        self.root
    }

    /// Points `sid`'s context entry at `pasids`: requests without a PASID
    /// use `rid_pasid`'s entry, requests with one are allowed when
    /// `pasid_requests` (PASIDE).
    pub fn attach<TM: PhysMem, TA: FrameAllocator>(
        &mut self,
        sid: SourceId,
        pasids: &PasidTable<TM, TA>,
        rid_pasid: Pasid,
        pasid_requests: bool,
    ) -> Result<ScalableContextChange> {
        let e = ScalableContextEntry::new(pasids.directory(), pasids.pdts(), rid_pasid.raw())
            .with_features(false, pasid_requests);
        self.set(sid, e)
    }

    /// Blocks `sid` (clears its context entry).
    pub fn detach(&mut self, sid: SourceId) -> Result<ScalableContextChange> {
        self.set(sid, ScalableContextEntry::default())
    }

    fn set(&mut self, sid: SourceId, new: ScalableContextEntry) -> Result<ScalableContextChange> {
        let devfn = sid.devfn();
        let root = ScalableRootEntry::read(&self.mem, self.root, sid.bus())?;
        let table = match root.context_table(devfn) {
            Some(t) => t,
            None if !new.present() => return Ok(ScalableContextChange { sid, was_present: false }),
            None => {
                let t = alloc_table(&self.mem, &self.alloc)?;
                let (lo, hi) = if devfn < 128 {
                    (Some(t), root.context_table(0xff))
                } else {
                    (root.context_table(0), Some(t))
                };
                if let Err(e) =
                    ScalableRootEntry::new(lo, hi).write(&self.mem, self.root, sid.bus())
                {
                    self.alloc.deallocate(t, 0);
                    return Err(e.into());
                }
                t
            }
        };
        let at = ScalableContextEntry::address(table, devfn);
        let old = ScalableContextEntry::read(&self.mem, at)?;
        if old.present() {
            ScalableContextEntry::default().write(&self.mem, at)?;
        }
        new.write(&self.mem, at)?;
        Ok(ScalableContextChange { sid, was_present: old.present() })
    }

    /// `sid`'s context entry as it is in memory.
    pub fn context(&self, sid: SourceId) -> Result<ScalableContextEntry> {
        let root = ScalableRootEntry::read(&self.mem, self.root, sid.bus())?;
        match root.context_table(sid.devfn()) {
            Some(t) => Ok(ScalableContextEntry::read(
                &self.mem,
                ScalableContextEntry::address(t, sid.devfn()),
            )?),
            None => Ok(ScalableContextEntry::default()),
        }
    }

    /// Frees the root table and every context table; the PASID tables are
    /// their devices' to free.
    pub fn destroy(self) -> (M, A) {
        for bus in 0..ROOT_ENTRIES {
            if let Ok(r) = ScalableRootEntry::read(&self.mem, self.root, bus as u8) {
                for t in [r.context_table(0), r.context_table(0xff)].into_iter().flatten() {
                    self.alloc.deallocate(t, 0);
                }
            }
        }
        self.alloc.deallocate(self.root, 0);
        (self.mem, self.alloc)
    }
}
