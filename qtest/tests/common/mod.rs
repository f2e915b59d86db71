//! A guest driver written by hand for the tests: root, context and 3-level
//! second-level tables built word by word with `QtestMem`, and the register
//! protocols (SRTP, TE, register-based invalidation, fault records) done
//! with `QtestMmio`. Encodings per VT-d rev 3.x §9.1, §9.3, §9.8, §10.4.

#![allow(dead_code)] // reason: each test binary uses a different part

use viommu_qtest::{Edu, GuestFrames, IommuOptions, Qemu, QtestMem, QtestMmio};
use vtd_regs::regs::offset::{CCMD, FSTS, GCMD, GSTS, RTADDR};
use vtd_regs::regs::{Cap, Ecap};
use vtd_regs::{
    DomainId, FaultReason, FrameAllocator, Iova, Mmio, PAGE_SIZE, PhysAddr, PhysMem, SourceId,
};

/// Starts QEMU, failing the test loudly (with the package to install) when it
/// cannot.
pub(crate) fn start(options: &IommuOptions) -> Qemu {
    Qemu::start(options).unwrap_or_else(|e| panic!("cannot start QEMU: {e}"))
}

/// Present (§9.1, §9.3).
const P: u64 = 1 << 0;
/// Second-level read and write permission (§9.8).
const R: u64 = 1 << 0;
const W: u64 = 1 << 1;
/// Context entry AW = 1: 39-bit AGAW, 3-level table (§9.3).
const AW_39: u64 = 1;
/// GCMD/GSTS bits (§10.4.4): TE, SRTP; the one-shot bits QEMU must not
/// see again when another bit is written.
const TE: u32 = 1 << 31;
const SRTP: u32 = 1 << 30;
const ONE_SHOT: u32 = 0x6900_0000;
/// CCMD (§10.4.7): ICC, global invalidation.
const CCMD_ICC: u64 = 1 << 63;
const CCMD_GLOBAL: u64 = 1 << 61;
/// IOTLB_REG (§10.4.8.1): IVT, granularity (IIRG) field at 61:60, DID 47:32.
const IOTLB_IVT: u64 = 1 << 63;
const IIRG_GLOBAL: u64 = 1 << 60;
const IIRG_PAGE: u64 = 3 << 60;
/// Fault recording register, high qword (§10.4.14): F, T (1 = read).
const FRCD_F: u64 = 1 << 63;
const FRCD_T: u64 = 1 << 62;
/// How many reads a register handshake may take.
const POLLS: usize = 1000;

/// The domain the edu device is put in.
pub(crate) const DID: DomainId = DomainId::new(1);

/// One recorded fault (§10.4.14).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) reason: Option<FaultReason>,
    pub(crate) page: u64,
    pub(crate) source: SourceId,
    pub(crate) read: bool,
}

/// QEMU with its edu device, and the tables that translate its DMA.
pub(crate) struct Guest<'q> {
    pub(crate) qemu: &'q Qemu,
    pub(crate) mem: QtestMem<'q>,
    pub(crate) mmio: QtestMmio<'q>,
    pub(crate) frames: GuestFrames,
    pub(crate) edu: Edu<'q>,
    root: PhysAddr,
    top: PhysAddr,
}

impl<'q> Guest<'q> {
    /// Finds the edu device and builds a root table with one context entry
    /// for it, pointing at an empty 3-level table. Translation is off.
    pub(crate) fn new(qemu: &'q Qemu) -> Self {
        let mem = QtestMem::new(qemu);
        let frames = GuestFrames::default();
        let edu = Edu::probe(qemu).expect("edu device");
        let root = new_table(&mem, &frames);
        let context = new_table(&mem, &frames);
        let top = new_table(&mem, &frames);
        let sid = edu.source_id();
        // Root entry of bus 0 (§9.1): context-table pointer | P.
        mem.write_u64(entry(root, sid.bus().into(), 16), context.as_u64() | P).unwrap();
        // Context entry of 00:01.0 (§9.3): SLPTPTR | TT=00 | P, then DID | AW.
        let ce = entry(context, sid.devfn().into(), 16);
        mem.write_u64(ce, top.as_u64() | P).unwrap();
        mem.write_u64(PhysAddr::new(ce.as_u64() + 8), (u64::from(DID.raw()) << 8) | AW_39).unwrap();
        Guest { qemu, mem, mmio: QtestMmio::new(qemu), frames, edu, root, top }
    }

    /// Sets the root table, invalidates the context cache and IOTLB globally
    /// and enables translation.
    pub(crate) fn enable(&mut self) {
        self.mmio.write64(RTADDR, self.root.as_u64());
        self.global_command(SRTP);
        self.wait(|m| m.read32(GSTS) & SRTP != 0, "GSTS.RTPS");
        self.mmio.write64(CCMD, CCMD_ICC | CCMD_GLOBAL);
        self.wait(|m| m.read64(CCMD) & CCMD_ICC == 0, "CCMD.ICC");
        self.iotlb(IIRG_GLOBAL);
        self.global_command(TE);
        self.wait(|m| m.read32(GSTS) & TE != 0, "GSTS.TES");
    }

    /// QEMU takes GCMD as the desired state: keep the enabled features.
    fn global_command(&mut self, bit: u32) {
        let status = self.mmio.read32(GSTS);
        self.mmio.write32(GCMD, (status & !ONE_SHOT) | bit);
    }

    fn wait(&self, done: impl Fn(&QtestMmio<'q>) -> bool, what: &str) {
        assert!((0..POLLS).any(|_| done(&self.mmio)), "{what} did not complete");
    }

    /// Issues a register-based IOTLB invalidation (`IOTLB_REG` at ECAP.IRO).
    fn iotlb(&mut self, command: u64) {
        let reg = self.mmio.read_reg::<Ecap>().iro().iotlb();
        self.mmio.write64(reg, IOTLB_IVT | command);
        self.wait(|m| m.read64(reg) & IOTLB_IVT == 0, "IOTLB_REG.IVT");
    }

    /// Page-selective IOTLB invalidation of one 4 KiB page of domain `DID`.
    pub(crate) fn invalidate_page(&mut self, iova: Iova) {
        let iva = self.mmio.read_reg::<Ecap>().iro().iva();
        // IVA_REG (§10.4.8.2): page address, IH = 0, AM = 0.
        self.mmio.write64(iva, iova.align_down(PAGE_SIZE).as_u64());
        self.iotlb(IIRG_PAGE | (u64::from(DID.raw()) << 32));
    }

    /// Maps the 4 KiB page at `iova` to `phys`, read-only or read-write,
    /// creating intermediate tables (R and W set: QEMU checks every level).
    pub(crate) fn map(&self, iova: Iova, phys: PhysAddr, writable: bool) {
        let leaf = self.leaf_slot(iova);
        let perm = if writable { R | W } else { R };
        self.mem.write_u64(leaf, phys.as_u64() | perm).unwrap();
    }

    /// Clears the leaf entry of `iova`, without any invalidation.
    pub(crate) fn clear(&self, iova: Iova) {
        self.mem.write_u64(self.leaf_slot(iova), 0).unwrap();
    }

    /// The address of the last-level entry of `iova`.
    fn leaf_slot(&self, iova: Iova) -> PhysAddr {
        let mut table = self.top;
        for level in [3u32, 2] {
            let slot = entry(table, index(iova, level), 8);
            let e = self.mem.read_u64(slot).unwrap();
            table = if e & (R | W) != 0 {
                PhysAddr::new(e & 0x000f_ffff_ffff_f000)
            } else {
                let t = new_table(&self.mem, &self.frames);
                self.mem.write_u64(slot, t.as_u64() | R | W).unwrap();
                t
            };
        }
        entry(table, index(iova, 1), 8)
    }

    /// Allocates a zeroed 4 KiB page for DMA.
    pub(crate) fn page(&self) -> PhysAddr {
        new_table(&self.mem, &self.frames)
    }

    /// Reads and clears fault record 0; `None` when no fault is pending.
    pub(crate) fn take_fault(&mut self) -> Option<Fault> {
        let frcd = self.mmio.read_reg::<Cap>().fro().record(0);
        let hi = self.mmio.read64(frcd + 8);
        if hi & FRCD_F == 0 {
            return None;
        }
        let lo = self.mmio.read64(frcd);
        self.mmio.write64(frcd + 8, FRCD_F);
        // FSTS.PFO and PPF are write-1-to-clear / follow the records.
        self.mmio.write32(FSTS, 1);
        Some(Fault {
            reason: FaultReason::from_code((hi >> 32) as u8),
            page: lo & !0xfff,
            source: SourceId::from_raw(hi as u16),
            read: hi & FRCD_T != 0,
        })
    }
}

/// A zeroed frame from `frames`.
fn new_table(mem: &QtestMem<'_>, frames: &GuestFrames) -> PhysAddr {
    let f = frames.allocate(0).expect("guest frames");
    mem.zero_frame(f).unwrap();
    f
}

/// Entry `i` of `size` bytes in the table at `table`.
fn entry(table: PhysAddr, i: u64, size: u64) -> PhysAddr {
    PhysAddr::new(table.as_u64() + i * size)
}

/// The 9-bit table index of `iova` at `level` (1 = last level), §3.6.
fn index(iova: Iova, level: u32) -> u64 {
    (iova.as_u64() >> (12 + 9 * (level - 1))) & 0x1ff
}

/// `len` bytes of a recognisable pattern, different for each `seed`.
pub(crate) fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}
