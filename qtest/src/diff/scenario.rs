//! [`Scenario`]: a scripted sequence of driver actions ([`Step`]s), with
//! builders for the entries of a well-formed 39-bit domain that tests then
//! break one field at a time.
//!
//! Entries are written as raw 64-bit halves, so any reserved bit can be set;
//! the well-formed values come from `vtd-tables`' entry types (§9.1 root
//! entry, §9.3 context entry, §9.8 second-level paging entries).

use vtd_regs::regs::cap::Agaw;
use vtd_regs::{ContextScope, DomainId, IotlbScope, Iova, PhysAddr, RawDescriptor, SourceId};
use vtd_tables::pte::{entry_address, index};
use vtd_tables::root::ScalableRootEntry;
use vtd_tables::scalable::{PasidDirEntry, PasidEntry, ScalableContextEntry};
use vtd_tables::{Access, ContextEntry, Perm, RootEntry, SlPte, TranslationType};

use crate::diff::layout::{self, CONTEXT, L1, L2, L3, PASID_TABLE, ROOT, SPARE, page};

/// The edu device's source id on the machine QEMU builds (00:01.0).
pub const EDU_SID: SourceId = SourceId::from_raw(0x0008);
/// The domain the well-formed context entry puts the device in.
pub const DID: DomainId = DomainId::new(1);
/// An IOVA the well-formed tables map (level-3 index 1, level-2 index 0,
/// level-1 index 0): 1 GiB, above QEMU's guest RAM.
pub const IOVA_A: Iova = Iova::new(0x4000_0000);
/// The page after [`IOVA_A`] (level-1 index 1).
pub const IOVA_B: Iova = Iova::new(0x4000_1000);
/// An IOVA in the same level-1 table that nothing maps (index 2).
pub const IOVA_UNMAPPED: Iova = Iova::new(0x4000_2000);

/// One driver action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Writes a raw 64-bit value to guest memory: half of a table entry.
    Write {
        /// Where (8-byte aligned).
        addr: PhysAddr,
        /// What.
        value: u64,
    },
    /// RTADDR = `table` in legacy mode, then GCMD.SRTP (§10.4.6).
    SetRoot {
        /// The root table address as written to RTADDR.
        table: PhysAddr,
    },
    /// RTADDR = `table` in scalable mode (TTM = 01b), then GCMD.SRTP.
    SetScalableRoot {
        /// The root table address as written to RTADDR.
        table: PhysAddr,
    },
    /// GCMD.TE (§10.4.4).
    EnableTranslation,
    /// A register-based context-cache invalidation (§10.4.7).
    InvalidateContext(ContextScope),
    /// A register-based IOTLB invalidation (§10.4.8.1).
    InvalidateIotlb(IotlbScope),
    /// Queued invalidation on, with the one-page 128-bit queue at
    /// [`layout::QUEUE`] (§10.4.23).
    EnableQueue,
    /// Like [`EnableQueue`](Step::EnableQueue), with IQA's address field
    /// as given (software still writes descriptors to [`layout::QUEUE`]).
    EnableQueueAt(PhysAddr),
    /// Queued invalidation off: waits for IQH = IQT, clears GCMD.QIE and
    /// waits for GSTS.QIES to clear (§10.4.4).
    DisableQueue,
    /// Writes a raw descriptor into the next queue slot and moves IQT past
    /// it (§6.5.2).
    Post(RawDescriptor),
    /// Writes a raw value to IQT, software's tail left as it was
    /// (§10.4.22).
    RawTail(u64),
    /// Recovers from a queue error: clears FSTS.IQE and sets IQT = IQH,
    /// dropping what was not fetched (§6.5.2.10).
    RecoverQueue,
    /// Clears FSTS.IQE and nothing else (§10.4.9).
    ClearQueueError,
    /// Like [`Dma`](Step::Dma), leaving the fault records pending.
    DmaNoDrain {
        /// Read or write.
        access: Access,
        /// The device address.
        iova: Iova,
    },
    /// Reads FSTS's fault-logging fields (PFO, PPF, FRI), leaving them.
    FaultStatus,
    /// Reads the 32-bit register at `offset` (§10.4).
    ReadRegister {
        /// Byte offset in the register page (4-byte aligned).
        offset: usize,
    },
    /// Writes the 32-bit register at `offset`, raw.
    WriteRegister {
        /// Byte offset in the register page (4-byte aligned).
        offset: usize,
        /// What.
        value: u32,
    },
    /// The device reads (`Access::Read`) or writes 16 bytes at `iova`;
    /// then the fault records are read and cleared.
    Dma {
        /// Read or write.
        access: Access,
        /// The device address.
        iova: Iova,
    },
}

/// A named list of steps, starting from a reset unit and the zeroed table
/// pages of [`layout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The name tests and the documentation use.
    pub name: &'static str,
    /// What to do, in order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// An empty scenario.
    pub fn new(name: &'static str) -> Self {
        Scenario { name, steps: Vec::new() }
    }

    /// Appends `step`.
    #[must_use]
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Writes a 128-bit entry as two raw halves at `addr`.
    #[must_use]
    pub fn entry(self, addr: PhysAddr, lo: u64, hi: u64) -> Self {
        let hi_addr = PhysAddr::new(addr.as_u64() + 8);
        self.step(Step::Write { addr, value: lo }).step(Step::Write { addr: hi_addr, value: hi })
    }

    /// Writes bus 0's root entry, raw.
    #[must_use]
    pub fn root_entry(self, lo: u64, hi: u64) -> Self {
        self.entry(RootEntry::address(page(ROOT), 0), lo, hi)
    }

    /// Writes the edu device's context entry, raw.
    #[must_use]
    pub fn context_entry(self, lo: u64, hi: u64) -> Self {
        self.entry(ContextEntry::address(page(CONTEXT), EDU_SID.devfn()), lo, hi)
    }

    /// Writes entry `index` of the table in layout page `table`, raw.
    #[must_use]
    pub fn pte(self, table: u64, index: usize, value: u64) -> Self {
        self.step(Step::Write { addr: entry_address(page(table), index), value })
    }

    /// A well-formed root entry pointing at the context table.
    pub fn good_root() -> RootEntry {
        RootEntry::new(page(CONTEXT))
    }

    /// A well-formed context entry: domain [`DID`], the 3-level table at
    /// [`layout::L3`], untranslated requests only.
    pub fn good_context() -> ContextEntry {
        ContextEntry::translated(DID, page(L3), Agaw::Bits39, TranslationType::Untranslated)
    }

    /// The non-leaf entries down to [`layout::L1`] for IOVAs under
    /// [`IOVA_A`]'s 2 MiB (read and write allowed on the way).
    #[must_use]
    pub fn table_path(self) -> Self {
        self.pte(L3, index(IOVA_A, 3), SlPte::table(page(L2)).0).pte(
            L2,
            index(IOVA_A, 2),
            SlPte::table(page(L1)).0,
        )
    }

    /// A 4 KiB leaf for `iova` (under [`IOVA_A`]'s 2 MiB) to data page `n`
    /// of the layout with `perm`.
    #[must_use]
    pub fn leaf(self, iova: Iova, n: u64, perm: Perm) -> Self {
        let leaf = SlPte::leaf(page(n), perm, vtd_regs::PageSize::Size4KiB);
        self.pte(L1, index(iova, 1), leaf.0)
    }

    /// Root and context entries, the table path, and leaves mapping
    /// [`IOVA_A`] to data page [`layout::DATA`] with `perm` and
    /// [`IOVA_B`] to the next data page read-write.
    #[must_use]
    pub fn mapped(self, perm: Perm) -> Self {
        let (root, context) = (Self::good_root(), Self::good_context());
        self.root_entry(root.lo, root.hi)
            .context_entry(context.lo, context.hi)
            .table_path()
            .leaf(IOVA_A, layout::DATA, perm)
            .leaf(IOVA_B, layout::DATA + 1, Perm::READ_WRITE)
    }

    /// Sets the root table, invalidates the context cache and IOTLB
    /// globally and enables translation (§6.5, §10.4.4).
    #[must_use]
    pub fn start(self) -> Self {
        self.step(Step::SetRoot { table: page(ROOT) })
            .step(Step::InvalidateContext(ContextScope::Global))
            .step(Step::InvalidateIotlb(IotlbScope::Global))
            .step(Step::EnableTranslation)
    }

    /// Scalable mode: bus 0's scalable root entry (lower context table at
    /// [`layout::CONTEXT`]), the edu device's scalable context entry (PASID
    /// directory at [`layout::SPARE`], 128 entries, RID_PASID 0), the
    /// directory's entry 0 (PASID table at [`layout::PASID_TABLE`]), and
    /// PASID 0's entry as the raw quadwords `pasid_entry`.
    #[must_use]
    pub fn scalable(self, pasid_entry: [u64; 2]) -> Self {
        let root = ScalableRootEntry::new(Some(page(CONTEXT)), None);
        let context = ScalableContextEntry::new(page(SPARE), 0, 0);
        let ctx_at = ScalableContextEntry::address(page(CONTEXT), EDU_SID.devfn());
        let pe_at = PasidEntry::address(page(PASID_TABLE), 0);
        self.entry(RootEntry::address(page(ROOT), 0), root.lo, root.hi)
            .entry(ctx_at, context.qw[0], context.qw[1])
            .step(Step::Write {
                addr: PasidDirEntry::address(page(SPARE), 0),
                value: PasidDirEntry::new(page(PASID_TABLE)).0,
            })
            .entry(pe_at, pasid_entry[0], pasid_entry[1])
    }

    /// [`start`](Self::start) with the root table in scalable mode.
    #[must_use]
    pub fn start_scalable(self) -> Self {
        self.step(Step::SetScalableRoot { table: page(ROOT) })
            .step(Step::InvalidateContext(ContextScope::Global))
            .step(Step::InvalidateIotlb(IotlbScope::Global))
            .step(Step::EnableTranslation)
    }

    /// A DMA read of `iova`.
    #[must_use]
    pub fn read(self, iova: Iova) -> Self {
        self.step(Step::Dma { access: Access::Read, iova })
    }

    /// A DMA write to `iova`.
    #[must_use]
    pub fn write(self, iova: Iova) -> Self {
        self.step(Step::Dma { access: Access::Write, iova })
    }

    /// How many DMA steps there are.
    pub fn dma_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Dma { .. } | Step::DmaNoDrain { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_entries_land_where_the_walk_looks() {
        let s = Scenario::new("t").mapped(Perm::READ);
        let writes: Vec<(u64, u64)> = s
            .steps
            .iter()
            .map(|st| match st {
                Step::Write { addr, value } => (addr.as_u64(), *value),
                other => panic!("{other:?}"),
            })
            .collect();
        // Root entry of bus 0 (§9.1): context table | P.
        assert_eq!(writes[0], (0x100_0000, 0x100_1001));
        assert_eq!(writes[1], (0x100_0008, 0));
        // Context entry of devfn 8 (§9.3): SLPTPTR | P; AW 1 | DID 1 << 8.
        assert_eq!(writes[2], (0x100_1080, 0x100_2001));
        assert_eq!(writes[3], (0x100_1088, 0x101));
        // L3[1] -> L2, L2[0] -> L1, L1[0] -> data page 8 read-only.
        assert_eq!(writes[4], (0x100_2008, 0x100_3003));
        assert_eq!(writes[5], (0x100_3000, 0x100_4003));
        assert_eq!(writes[6], (0x100_4000, 0x100_8001));
        assert_eq!(writes[7], (0x100_4008, 0x100_9003));
    }
}
