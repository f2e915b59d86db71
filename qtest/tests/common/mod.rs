//! The guest driver of the tests: the library's `RemappingUnit` over
//! `QtestMmio` for the register protocols, and root, context and
//! second-level entries of `vtd-tables` written into guest RAM with
//! `QtestMem` (VT-d rev 3.x §9.1, §9.3, §9.8, §10.4).

#![allow(dead_code)] // reason: each test binary uses a different part

use viommu_qtest::{Edu, GuestFrames, IommuOptions, Qemu, QtestMem, QtestMmio};
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::frcd::{FaultRecord, FaultType};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{
    ContextScope, DomainId, Drain, FaultReason, FrameAllocator, FunctionMask, IotlbScope, Iova,
    PAGE_SIZE, PageSize, PhysAddr, PhysMem, RemappingUnit, SourceId,
};
use vtd_tables::pte::{entry_address, index};
use vtd_tables::{ContextEntry, Perm, RootEntry, SlPte, TranslationType};

/// Starts QEMU, failing the test loudly (with the package to install) when it
/// cannot.
pub(crate) fn start(options: &IommuOptions) -> Qemu {
    Qemu::start(options).unwrap_or_else(|e| panic!("cannot start QEMU: {e}"))
}

/// The domain the edu device is put in.
pub(crate) const DID: DomainId = DomainId::new(1);
/// The edu device's requester id on the machine `Qemu` builds (00:01.0).
pub(crate) const EDU_SID: SourceId = SourceId::from_raw(0x0008);

/// QEMU with its edu device, and the tables that translate its DMA.
pub(crate) struct Guest<'q> {
    pub(crate) qemu: &'q Qemu,
    pub(crate) mem: QtestMem<'q>,
    pub(crate) unit: RemappingUnit<QtestMmio<'q>>,
    pub(crate) frames: GuestFrames,
    pub(crate) edu: Edu<'q>,
    root: PhysAddr,
    context: PhysAddr,
    top: PhysAddr,
    agaw: Agaw,
}

impl<'q> Guest<'q> {
    /// Finds the edu device and builds a root table with one context entry
    /// for it, pointing at an empty second-level table as deep as the unit's
    /// MGAW needs. Translation is off.
    pub(crate) fn new(qemu: &'q Qemu) -> Self {
        let mem = QtestMem::new(qemu);
        let frames = GuestFrames::default();
        let unit = RemappingUnit::new(QtestMmio::new(qemu)).expect("remapping unit");
        let cap = unit.cap();
        let agaw = cap.sagaw().choose(cap.mgaw().bits()).expect("a supported AGAW");
        let edu = Edu::probe(qemu).expect("edu device");
        assert_eq!(edu.source_id(), EDU_SID);
        let root = zeroed_frame(&mem, &frames);
        let context = zeroed_frame(&mem, &frames);
        let top = zeroed_frame(&mem, &frames);
        RootEntry::new(context).write(&mem, root, EDU_SID.bus()).unwrap();
        let g = Guest { qemu, mem, unit, frames, edu, root, context, top, agaw };
        g.set_context(g.translated_context());
        g
    }

    /// The edu device's context entry as [`new`](Self::new) writes it:
    /// translated through the second-level table, domain `DID`.
    pub(crate) fn translated_context(&self) -> ContextEntry {
        ContextEntry::translated(DID, self.top, self.agaw, TranslationType::Untranslated)
    }

    /// Writes the edu device's context entry, without any invalidation.
    pub(crate) fn set_context(&self, entry: ContextEntry) {
        entry.write(&self.mem, self.context, EDU_SID).unwrap();
    }

    /// Invalidates the edu device's context entry, then the domain's IOTLB
    /// entries, as §6.5.3.3 asks after a context entry changed.
    pub(crate) fn invalidate_context(&mut self) {
        let scope = ContextScope::Device {
            domain: DID,
            source: EDU_SID,
            function_mask: FunctionMask::None,
        };
        self.unit.invalidate_context(scope).unwrap();
        self.unit.invalidate_iotlb(IotlbScope::Domain(DID), Drain::empty()).unwrap();
    }

    /// Sets the root table, invalidates the context cache and IOTLB globally
    /// and enables translation (§6.5, §10.4.4).
    pub(crate) fn enable(&mut self) {
        self.unit.set_root_table(self.root, TranslationTableMode::Legacy).unwrap();
        self.unit.invalidate_context(ContextScope::Global).unwrap();
        self.unit.invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
        self.unit.enable_translation().unwrap();
    }

    /// Page-selective IOTLB invalidation of one 4 KiB page of domain `DID`.
    pub(crate) fn invalidate_page(&mut self, iova: Iova) {
        let scope = IotlbScope::pages(DID, iova.align_down(PAGE_SIZE), 0, false).unwrap();
        self.unit.invalidate_iotlb(scope, Drain::empty()).unwrap();
    }

    /// Maps the 4 KiB page at `iova` to `phys` with `perm`, creating
    /// intermediate tables.
    pub(crate) fn map(&self, iova: Iova, phys: PhysAddr, perm: Perm) {
        self.map_page(iova, phys, PageSize::Size4KiB, perm);
    }

    /// Maps the page of `size` at `iova` (aligned) to `phys` with `perm`.
    pub(crate) fn map_page(&self, iova: Iova, phys: PhysAddr, size: PageSize, perm: Perm) {
        let leaf = SlPte::leaf(phys, perm, size);
        self.mem.write_u64(self.slot(iova, size.level()), leaf.0).unwrap();
    }

    /// Clears the 4 KiB leaf entry of `iova`, without any invalidation.
    pub(crate) fn clear(&self, iova: Iova) {
        self.mem.write_u64(self.slot(iova, 1), SlPte::EMPTY.0).unwrap();
    }

    /// The address of `iova`'s entry in its table at `level`, creating the
    /// tables above it.
    fn slot(&self, iova: Iova, level: u8) -> PhysAddr {
        let mut table = self.top;
        for l in (level + 1..=self.agaw.levels()).rev() {
            let slot = entry_address(table, index(iova, l));
            let e = SlPte(self.mem.read_u64(slot).unwrap());
            table = if e.is_present() {
                e.address()
            } else {
                let t = zeroed_frame(&self.mem, &self.frames);
                self.mem.write_u64(slot, SlPte::table(t).0).unwrap();
                t
            };
        }
        entry_address(table, index(iova, level))
    }

    /// Allocates a zeroed 4 KiB page for DMA.
    pub(crate) fn page(&self) -> PhysAddr {
        zeroed_frame(&self.mem, &self.frames)
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

/// A zeroed frame from `frames`.
fn zeroed_frame(mem: &QtestMem<'_>, frames: &GuestFrames) -> PhysAddr {
    let f = frames.allocate(0).expect("guest frames");
    mem.zero_frame(f).unwrap();
    f
}

/// `len` bytes of a pattern that differs for each `seed` and does not
/// repeat within a page (a multiplicative hash of offset and seed).
pub(crate) fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| ((i | u32::from(seed) << 16).wrapping_mul(0x9E37_79B1) >> 24) as u8)
        .collect()
}
