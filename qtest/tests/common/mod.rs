//! The guest driver of the tests, built from the library: `RemappingUnit`
//! over `QtestMmio` for the register protocols, and `vtd-tables`'
//! `ContextManager` and `SlPageTable` writing root, context and second-level
//! tables into guest RAM through `QtestMem` (VT-d rev 3.x §3.4, §3.7, §9,
//! §10.4).

#![allow(dead_code)] // reason: each test binary uses a different part

use std::ops::Range;

use invalidation::PageBlocks;
use viommu_qtest::{Edu, GuestFrames, IommuOptions, Qemu, QtestMem, QtestMmio};
use vtd_regs::regs::FaultRecord;
use vtd_regs::regs::frcd::FaultType;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{
    ContextScope, DomainId, Drain, FaultReason, FrameAllocator, FunctionMask, IotlbScope, Iova,
    PAGE_SIZE, PageSize, PhysAddr, PhysMem, RemappingUnit, SourceId,
};
use vtd_tables::{
    Attachment, ContextChange, ContextEntry, ContextManager, Perm, RootEntry, SlPageTable,
    TableConfig, Unmapped,
};

/// Starts QEMU, failing the test loudly (with the package to install) when it
/// cannot.
pub(crate) fn start(options: &IommuOptions) -> Qemu {
    Qemu::start(options).unwrap_or_else(|e| panic!("cannot start QEMU: {e}"))
}

/// The domain the edu device is put in.
pub(crate) const DID: DomainId = DomainId::new(1);
/// The edu device's requester id on the machine `Qemu` builds (00:01.0).
pub(crate) const EDU_SID: SourceId = SourceId::from_raw(0x0008);

type Tables<'q> = SlPageTable<QtestMem<'q>, GuestFrames>;

/// QEMU with its edu device, and the tables that translate its DMA.
pub(crate) struct Guest<'q> {
    pub(crate) qemu: &'q Qemu,
    pub(crate) mem: QtestMem<'q>,
    pub(crate) unit: RemappingUnit<QtestMmio<'q>>,
    pub(crate) frames: GuestFrames,
    pub(crate) edu: Edu<'q>,
    pub(crate) contexts: ContextManager<QtestMem<'q>, GuestFrames>,
    pub(crate) table: Tables<'q>,
}

impl<'q> Guest<'q> {
    /// Finds the edu device and attaches it to domain `DID`, whose table is
    /// as wide as the unit's MGAW. Translation is off.
    pub(crate) fn new(qemu: &'q Qemu) -> Self {
        let mem = QtestMem::new(qemu);
        let frames = GuestFrames::default();
        let unit = RemappingUnit::new(QtestMmio::new(qemu)).expect("remapping unit");
        let edu = Edu::probe(qemu).expect("edu device");
        assert_eq!(edu.source_id(), EDU_SID);
        let cap = unit.cap();
        let config = TableConfig::from_cap(cap, cap.mgaw().bits()).unwrap();
        let table = SlPageTable::new(mem, frames.clone(), config).unwrap();
        let mut contexts = ContextManager::new(mem, frames.clone()).unwrap();
        // Nothing to invalidate yet: `enable` invalidates everything.
        let _: ContextChange = contexts.attach(EDU_SID, DID, &table).unwrap();
        Guest { qemu, mem, unit, frames, edu, contexts, table }
    }

    /// Sets the root table, invalidates the context cache and IOTLB globally
    /// and enables translation (§6.5, §10.4.4).
    pub(crate) fn enable(&mut self) {
        let root = self.contexts.root_table();
        self.unit.set_root_table(root, TranslationTableMode::Legacy).unwrap();
        self.unit.invalidate_context(ContextScope::Global).unwrap();
        self.unit.invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
        self.unit.enable_translation().unwrap();
    }

    /// Maps the 4 KiB page at `iova` to `phys` with `perm`.
    pub(crate) fn map(&mut self, iova: Iova, phys: PhysAddr, perm: Perm) {
        self.table.map(iova, phys, PageSize::Size4KiB, perm).unwrap();
    }

    /// Unmaps the 4 KiB page at `iova`, without any invalidation yet.
    pub(crate) fn unmap(&mut self, iova: Iova) -> Unmapped {
        self.table.unmap(iova, PageSize::Size4KiB).unwrap()
    }

    /// Invalidates what `token` says is owed with register-based
    /// page-selective invalidations (§6.5.1.2), then frees its frames.
    pub(crate) fn flush(&mut self, token: Unmapped) {
        for scope in PageBlocks::new(DID, &token_range(&token), self.mamv(), token.leaf_only()) {
            self.unit.invalidate_iotlb(scope, Drain::empty()).unwrap();
        }
        self.table.release(token).unwrap();
    }

    /// CAP.MAMV: the largest page-selective invalidation the unit takes.
    pub(crate) fn mamv(&self) -> u8 {
        self.unit.cap().mamv().max_order()
    }

    /// Page-selective IOTLB invalidation of one 4 KiB page of domain `DID`.
    pub(crate) fn invalidate_page(&mut self, iova: Iova) {
        let scope = IotlbScope::pages(DID, iova.align_down(PAGE_SIZE), 0, false).unwrap();
        self.unit.invalidate_iotlb(scope, Drain::empty()).unwrap();
    }

    /// Points the edu device's context entry at `to`, without invalidation.
    pub(crate) fn attach(&mut self, to: Attachment) -> ContextChange {
        self.contexts.set(EDU_SID, to).unwrap()
    }

    /// The attachment to domain `DID`'s table.
    pub(crate) fn translated(&self) -> Attachment {
        Attachment::Translated {
            domain: DID,
            table: self.table.root(),
            agaw: self.table.config().agaw(),
        }
    }

    /// Writes the edu device's context entry as given (for fields the
    /// context manager does not set, such as FPD), without invalidation.
    pub(crate) fn write_context(&self, entry: ContextEntry) {
        let root = RootEntry::read(&self.mem, self.contexts.root_table(), EDU_SID.bus()).unwrap();
        entry.write(&self.mem, root.context_table(), EDU_SID).unwrap();
    }

    /// Invalidates what a context change owes (§6.5.3.3): the device's
    /// context-cache entry, then its previous domain's IOTLB entries.
    pub(crate) fn invalidate_context(&mut self, change: ContextChange) {
        let Some(domain) = change.previous else { return };
        let function_mask = FunctionMask::None;
        let scope = ContextScope::Device { domain, source: change.sid, function_mask };
        self.unit.invalidate_context(scope).unwrap();
        self.unit.invalidate_iotlb(IotlbScope::Domain(domain), Drain::empty()).unwrap();
    }

    /// Allocates a zeroed 4 KiB page for DMA.
    pub(crate) fn page(&self) -> PhysAddr {
        let f = self.frames.allocate(0).expect("guest frames");
        self.mem.zero_frame(f).unwrap();
        f
    }

    /// Reads and clears the pending fault records.
    pub(crate) fn faults(&mut self) -> Vec<FaultRecord> {
        self.unit.drain_faults().collect()
    }

    /// Asserts that exactly one fault is pending, from the edu device, of
    /// `kind` with `reason` at the page of `iova`, and clears it.
    pub(crate) fn assert_fault(&mut self, kind: FaultType, reason: FaultReason, iova: Iova) {
        let faults = self.faults();
        let [f] = faults.as_slice() else { panic!("expected one fault, got {faults:?}") };
        assert_eq!(
            (f.source, f.kind, f.reason(), f.fault_info),
            (EDU_SID, kind, Some(reason), iova.align_down(PAGE_SIZE).as_u64()),
            "{f:?}"
        );
    }

    /// Asserts that no fault is pending.
    pub(crate) fn assert_no_fault(&mut self) {
        assert_eq!(self.faults(), []);
    }
}

/// The IOVA range an unmap token covers.
pub(crate) fn token_range(token: &Unmapped) -> Range<Iova> {
    token.iova()..Iova::new(token.iova().as_u64() + token.len())
}

/// `len` bytes of a pattern that differs for each `seed` and does not
/// repeat within a page (a multiplicative hash of offset and seed).
pub(crate) fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| ((i | u32::from(seed) << 16).wrapping_mul(0x9E37_79B1) >> 24) as u8)
        .collect()
}
