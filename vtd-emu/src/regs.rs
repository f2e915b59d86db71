//! The register file (VT-d §10.4): what reads return and what writes do.
//!
//! Read-only registers and fields ignore writes; reserved bits read as zero
//! whatever is written; FSTS error bits, ICS.IWC and the fault recording
//! registers' F bits are write-1-to-clear; GCMD is write-only and its writes
//! execute commands whose completion shows in GSTS; CCMD.ICC and
//! IOTLB_REG.IVT start register-based invalidations, which complete before
//! the write returns. A 64-bit register may be accessed as two 32-bit
//! halves; a side effect fires on the half holding its field (the IQT tail
//! in the low half, ICC and IVT in the high half).

use vtd_regs::regs::frcd::FaultRecords;
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{
    Ccmd, Fsts, Gcmd, GlobalBits, Gsts, Ics, IotlbInv, Iqa, Iqt, Irta, Iva, Rtaddr,
};
use vtd_regs::{
    DomainId, FunctionMask, Granularity, IotlbScope, Iova, Mmio, PhysAddr, PhysMem, SourceId,
};

use crate::counters::RegisterName;
use crate::emulator::{Emulator, State};
use crate::hook::{Change, Hook, Invalidation, Outcome};

/// The bits of RTADDR software can write: RTA and TTM.
const RTADDR_WRITABLE: u64 = Rtaddr(0).with_table(PhysAddr::new(u64::MAX)).0
    | Rtaddr(0).with_mode(TranslationTableMode::AbortDma).0;
/// The bits of CCMD software can write besides DID (CAIG is read-only).
const CCMD_WRITABLE: u64 = Ccmd(0)
    .with_icc(true)
    .with_cirg(Granularity::Selective)
    .with_fm(FunctionMask::Bits2To0)
    .with_sid(SourceId::from_raw(u16::MAX))
    .0;
/// The bits of IVA_REG software can write.
const IVA_WRITABLE: u64 = Iva(0).with_addr(Iova::new(u64::MAX)).with_ih(true).with_am(u8::MAX).0;
/// The bits of IOTLB_REG software can write, without DID and the drain
/// hints (IAIG is read-only).
const IOTLB_WRITABLE: u64 = IotlbInv(0).with_ivt(true).with_iirg(Granularity::Selective).0;
/// The bits of IQT: QT.
const IQT_WRITABLE: u64 = Iqt::from_index(usize::MAX, DescriptorWidth::Bits128).0;
/// The bits of IQA: IQA, QS, and DW on a unit with scalable mode
/// (§10.4.23: 256-bit descriptors are for scalable mode; QEMU ignores DW
/// without it).
const fn iqa_writable(smts: bool) -> u64 {
    let width = if smts { DescriptorWidth::Bits256 } else { DescriptorWidth::Bits128 };
    match QueueSize::from_order(7) {
        Some(qs) => Iqa::new(PhysAddr::new(u64::MAX), qs, width).0,
        None => 0,
    }
}
/// The bits of FEADDR/IEADDR: the message address, bits 31:2.
const EVENT_ADDRESS_WRITABLE: u32 = !3;

impl<const I: usize, const C: usize, H> State<I, C, H> {
    /// The address bits below the host address width: bits above it in
    /// RTADDR and IQA are reserved and ignored (§10.4.6, §10.4.23).
    pub(crate) fn host_width_mask(&self) -> u64 {
        self.cfg.host_width_mask()
    }
}

/// `old` with its `hi`gh or low half replaced by `value`, keeping the bits
/// outside `writable` as they were.
fn merge(old: u64, hi: bool, value: u32, writable: u64) -> u64 {
    let new = if hi {
        (old & 0xffff_ffff) | (u64::from(value) << 32)
    } else {
        (old & !0xffff_ffff) | u64::from(value)
    };
    (new & writable) | (old & !writable)
}

/// The `hi`gh or low half of `v`.
fn half(v: u64, hi: bool) -> u32 {
    if hi { (v >> 32) as u32 } else { v as u32 }
}

impl<const I: usize, const C: usize, H> State<I, C, H> {
    /// FSTS as read.
    pub(crate) fn fsts(&self) -> Fsts {
        Fsts(self.queue_errors.0)
            .with_pfo(self.faults.pfo())
            .with_ppf(self.faults.ppf())
            .with_fri(self.faults.fri() as u8)
    }

    /// Reads the 32-bit register at `off`. Software polling CCMD or
    /// IOTLB_REG for a command the hook stalled retries it.
    pub(crate) fn read32<M: PhysMem>(&mut self, mem: &M, off: usize) -> u32
    where
        H: Hook<M>,
    {
        let name = RegisterName::at(&self.cfg, off);
        self.counters.reads[name as usize] += 1;
        if !off.is_multiple_of(4) {
            return 0;
        }
        let hi = off % 8 == 4;
        if hi && matches!(name, RegisterName::Ccmd | RegisterName::Iotlb) {
            self.retry_register_commands(mem);
        }
        let ir = self.cfg.ecap.ir();
        match name {
            RegisterName::Ver => self.cfg.ver.0,
            RegisterName::Cap => half(self.cfg.cap.0, hi),
            RegisterName::Ecap => half(self.cfg.ecap.0, hi),
            RegisterName::Gsts => self.gsts.0,
            RegisterName::Rtaddr => half(self.rtaddr.0, hi),
            RegisterName::Ccmd => half(self.ccmd.0, hi),
            RegisterName::Fsts => self.fsts().0,
            RegisterName::Fectl => self.fault_event.control(),
            RegisterName::Fedata => self.fault_event.data,
            RegisterName::Feaddr => self.fault_event.address,
            RegisterName::Feuaddr => self.fault_event.upper,
            RegisterName::Iqh => half(self.iqh.0, hi),
            RegisterName::Iqt => half(self.iqt.0, hi),
            RegisterName::Iqa => half(self.iqa.0, hi),
            RegisterName::Ics => self.ics.0,
            RegisterName::Iectl => self.inv_event.control(),
            RegisterName::Iedata => self.inv_event.data,
            RegisterName::Ieaddr => self.inv_event.address,
            RegisterName::Ieuaddr => self.inv_event.upper,
            RegisterName::Iqercd => half(self.iqercd.0, hi),
            RegisterName::Irta if ir => half(self.irta.0, hi),
            RegisterName::Iotlb => half(self.iotlb_reg.0, hi),
            RegisterName::Frcd => {
                let (index, word) = self.frcd_slot(off);
                let r = self.faults.get(index);
                match word {
                    0 => r.lo as u32,
                    1 => (r.lo >> 32) as u32,
                    2 => r.hi as u32,
                    _ => (r.hi >> 32) as u32,
                }
            }
            // GCMD and IVA_REG (§10.4.8.2) are write-only; the rest is
            // reserved or not implemented.
            _ => 0,
        }
    }

    /// Which fault recording register and which of its four dwords `off` is.
    fn frcd_slot(&self, off: usize) -> (u16, usize) {
        let rel = off - self.cfg.cap.fro().byte_offset();
        ((rel / 16) as u16, (rel % 16) / 4)
    }

    /// Writes the 64-bit register at `off` as its two halves, low first.
    /// IQT's high half holds nothing writable (bits 63:19 are reserved,
    /// §10.4.22), so writing it only counts: every queued invalidation
    /// batch writes IQT, and its high half is counted without decoding the
    /// offset again.
    pub(crate) fn write64<M: PhysMem>(&mut self, mem: &M, off: usize, value: u64)
    where
        H: Hook<M>,
    {
        let name = self.write32(mem, off, value as u32);
        if name == RegisterName::Iqt && off.is_multiple_of(8) {
            self.counters.writes[name as usize] += 1;
        } else {
            self.write32(mem, off.wrapping_add(4), (value >> 32) as u32);
        }
    }

    /// Writes the 32-bit register at `off`, with its side effects; returns
    /// which register that is.
    pub(crate) fn write32<M: PhysMem>(&mut self, mem: &M, off: usize, value: u32) -> RegisterName
    where
        H: Hook<M>,
    {
        let name = RegisterName::at(&self.cfg, off);
        self.counters.writes[name as usize] += 1;
        if !off.is_multiple_of(4) {
            return name;
        }
        let hi = off % 8 == 4;
        let (cap, ecap) = (self.cfg.cap, self.cfg.ecap);
        let event_data = if ecap.eim() { u32::MAX } else { 0xffff };
        match name {
            RegisterName::Gcmd => self.command(mem, Gcmd(value)),
            RegisterName::Rtaddr => {
                self.rtaddr = Rtaddr(merge(self.rtaddr.0, hi, value, RTADDR_WRITABLE));
            }
            RegisterName::Ccmd => {
                let did = self.cfg.domain(DomainId::new(u16::MAX));
                let writable = CCMD_WRITABLE | Ccmd(0).with_did(did).0;
                self.ccmd = Ccmd(merge(self.ccmd.0, hi, value, writable));
                if hi && self.ccmd.icc() {
                    self.context_command(mem);
                }
            }
            RegisterName::Fsts => self.write_fsts(mem, Fsts(value)),
            RegisterName::Fectl => self.fault_event.write_control(value),
            RegisterName::Fedata => self.fault_event.data = value & event_data,
            RegisterName::Feaddr => self.fault_event.address = value & EVENT_ADDRESS_WRITABLE,
            RegisterName::Feuaddr if ecap.eim() => self.fault_event.upper = value,
            RegisterName::Iqt if ecap.qi() => {
                self.iqt = Iqt(merge(self.iqt.0, hi, value, IQT_WRITABLE));
                if !hi && self.cfg.process_on_tail_write {
                    self.process_queue(mem);
                }
            }
            RegisterName::Iqa if ecap.qi() && !self.gsts.contains(GlobalBits::QIE) => {
                self.iqa = Iqa(merge(self.iqa.0, hi, value, iqa_writable(ecap.smts())));
            }
            RegisterName::Ics if Ics(value).iwc() => {
                self.ics = self.ics.with_iwc(false);
                self.inv_event.settle();
            }
            RegisterName::Iectl if ecap.qi() => self.inv_event.write_control(value),
            RegisterName::Iedata if ecap.qi() => self.inv_event.data = value & event_data,
            RegisterName::Ieaddr if ecap.qi() => {
                self.inv_event.address = value & EVENT_ADDRESS_WRITABLE;
            }
            RegisterName::Ieuaddr if ecap.qi() && ecap.eim() => self.inv_event.upper = value,
            RegisterName::Irta if ecap.ir() => {
                let writable = Irta(0)
                    .with_table(PhysAddr::new(u64::MAX))
                    .with_size(u8::MAX)
                    .with_eime(ecap.eim())
                    .0;
                self.irta = Irta(merge(self.irta.0, hi, value, writable));
            }
            RegisterName::Iva => self.iva = Iva(merge(self.iva.0, hi, value, IVA_WRITABLE)),
            RegisterName::Iotlb => {
                let did = self.cfg.domain(DomainId::new(u16::MAX));
                let writable = IOTLB_WRITABLE
                    | IotlbInv(0).with_did(did).with_dr(cap.drd()).with_dw(cap.dwd()).0;
                self.iotlb_reg = IotlbInv(merge(self.iotlb_reg.0, hi, value, writable));
                if hi && self.iotlb_reg.ivt() {
                    self.iotlb_command(mem);
                }
            }
            RegisterName::Frcd => {
                let (index, word) = self.frcd_slot(off);
                if word == 3 && value & FaultRecords::F_CLEAR != 0 {
                    self.faults.clear(index);
                    self.settle_fault_event();
                }
            }
            // Read-only, reserved or unimplemented.
            _ => {}
        }
        name
    }

    /// GCMD written (§10.4.4): each enable whose bit differs from GSTS is
    /// switched, each one-shot command set is performed; GSTS reports the
    /// outcome at once (the model completes every command before the write
    /// returns), after the hook was told of each change. Features the
    /// capabilities do not report are ignored.
    fn command<M: PhysMem>(&mut self, mem: &M, cmd: Gcmd)
    where
        H: Hook<M>,
    {
        let (cap, ecap) = (self.cfg.cap, self.cfg.ecap);
        let want = cmd.bits();
        let mut enables = GlobalBits::TE;
        if ecap.qi() {
            enables |= GlobalBits::QIE;
        }
        if ecap.ir() {
            enables |= GlobalBits::IRE | GlobalBits::CFI;
        }
        let before = self.gsts;
        for bit in enables.iter() {
            self.gsts = self.gsts.with(bit, want.contains(bit));
        }
        if before.contains(GlobalBits::QIE) != self.gsts.contains(GlobalBits::QIE) {
            // §10.4.21: the head is reset whenever queued invalidation is
            // enabled or disabled.
            self.iqh = vtd_regs::regs::Iqh(0);
        }
        let srtp = want.contains(GlobalBits::SRTP);
        if srtp {
            // Address bits at and above the host address width are
            // reserved (§10.4.6): they read back as written, as on QEMU,
            // and the unit ignores them.
            let table = self.rtaddr.table().as_u64() & self.host_width_mask();
            self.root = self.rtaddr.with_table(PhysAddr::new(table));
            self.gsts = self.gsts.with(GlobalBits::SRTP, true);
            if cap.esrtps() {
                self.contexts.invalidate(vtd_regs::ContextScope::Global);
                self.iotlb.invalidate(IotlbScope::Global);
                self.scalable.invalidate_contexts(vtd_regs::ContextScope::Global);
                self.scalable.invalidate_pasids(vtd_regs::desc::PasidCacheScope::Global);
                self.scalable.invalidate_iotlb(IotlbScope::Global);
            }
        }
        let sirtp = want.contains(GlobalBits::SIRTP) && ecap.ir();
        if sirtp {
            self.irta_active = self.irta;
            self.gsts = self.gsts.with(GlobalBits::SIRTP, true);
            if cap.esirtps() {
                self.iec.invalidate(vtd_regs::desc::IecScope::Global);
            }
        }
        // WBF: the model has no write buffer, so the flush is complete and
        // WBFS reads 0. SFL and EAFL: no advanced fault logging (CAP.AFL = 0).
        if srtp {
            self.announce(mem, Change::RootTable(self.root));
        }
        if sirtp {
            self.announce(mem, Change::InterruptTable(self.irta_active));
        }
        let switched = Gsts(before.0 ^ self.gsts.0).bits() & enables;
        for bit in switched.iter() {
            let on = self.gsts.contains(bit);
            let change = match bit {
                GlobalBits::TE => Change::Translation(on),
                GlobalBits::QIE => Change::QueuedInvalidation(on),
                GlobalBits::IRE => Change::InterruptRemapping(on),
                _ => Change::CompatibilityFormat(on),
            };
            self.announce(mem, change);
        }
    }

    /// FSTS written: write-1-to-clear of PFO, IQE, ICE and ITE. Clearing IQE
    /// or ITE lets the queue resume (§6.5.2.10).
    fn write_fsts<M: PhysMem>(&mut self, mem: &M, value: Fsts)
    where
        H: Hook<M>,
    {
        if value.pfo() {
            self.faults.clear_pfo();
        }
        let halted = self.queue_halted();
        self.queue_errors = Fsts(self.queue_errors.0 & !(value.0 & Fsts::QUEUE_ERRORS));
        self.settle_fault_event();
        if halted && !self.queue_halted() {
            self.process_queue(mem);
        }
    }

    /// Drops a masked fault event once no status it reports is left.
    fn settle_fault_event(&mut self) {
        let f = self.fsts();
        if !f.pfo() && !f.ppf() && !f.queue_error() {
            self.fault_event.settle();
        }
    }

    /// CCMD.ICC written (§6.5.1.1, §10.4.7). The performed granularity is
    /// reported in CAIG; 0 when nothing was done (reserved CIRG, or queued
    /// invalidation enabled, when register-based invalidation must not be
    /// used). A command the hook stalls keeps ICC set.
    fn context_command<M: PhysMem>(&mut self, mem: &M)
    where
        H: Hook<M>,
    {
        let scope = self.ccmd.scope().filter(|_| !self.gsts.contains(GlobalBits::QIE));
        let done = match scope.and_then(|s| self.performed(Invalidation::ContextCache(s))) {
            Some(inv @ Invalidation::ContextCache(s)) => {
                if self.perform(mem, inv) == Outcome::Stall {
                    return;
                }
                Some(s.granularity())
            }
            _ => None,
        };
        self.counters.register_invalidations += 1;
        self.ccmd = self.ccmd.with_icc(false).with_caig(done);
    }

    /// IOTLB_REG.IVT written (§6.5.1.2, §10.4.8). IAIG reports what was done:
    /// a page-selective request on a unit without PSI is performed
    /// domain-selective; one whose AM exceeds MAMV is not performed (IAIG 0,
    /// as in QEMU), nor is anything while queued invalidation is enabled. A
    /// command the hook stalls keeps IVT set.
    fn iotlb_command<M: PhysMem>(&mut self, mem: &M)
    where
        H: Hook<M>,
    {
        let scope = self.iotlb_reg.scope(self.iva).filter(|_| !self.gsts.contains(GlobalBits::QIE));
        let done = match scope.and_then(|s| self.performed(Invalidation::Iotlb(s))) {
            Some(inv @ Invalidation::Iotlb(s)) => {
                if self.perform(mem, inv) == Outcome::Stall {
                    return;
                }
                Some(s.granularity())
            }
            _ => None,
        };
        self.counters.register_invalidations += 1;
        self.iotlb_reg = self.iotlb_reg.with_ivt(false).with_iaig(done);
    }

    /// Performs the register-based invalidations still pending (the hook
    /// stalled them).
    pub(crate) fn retry_register_commands<M: PhysMem>(&mut self, mem: &M)
    where
        H: Hook<M>,
    {
        if self.ccmd.icc() {
            self.context_command(mem);
        }
        if self.iotlb_reg.ivt() {
            self.iotlb_command(mem);
        }
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Emulator<M, I, C, H> {
    /// Reads the 32-bit registers at `offs` into `out` (the same length),
    /// as consecutive register reads with the unit locked once: what a
    /// polling front end publishes after each command.
    pub fn read_registers(&self, offs: &[usize], out: &mut [u32]) {
        let mut st = self.state.lock();
        for (off, v) in offs.iter().zip(out) {
            *v = st.read32(&self.mem, *off);
        }
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Mmio for &Emulator<M, I, C, H> {
    fn read32(&self, offset: usize) -> u32 {
        self.state.lock().read32(&self.mem, offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.state.lock().write32(&self.mem, offset, value);
    }

    fn read64(&self, offset: usize) -> u64 {
        let mut st = self.state.lock();
        let lo = st.read32(&self.mem, offset);
        let hi = st.read32(&self.mem, offset.wrapping_add(4));
        u64::from(lo) | (u64::from(hi) << 32)
    }

    fn write64(&mut self, offset: usize, value: u64) {
        self.state.lock().write64(&self.mem, offset, value);
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Mmio for Emulator<M, I, C, H> {
    fn read32(&self, offset: usize) -> u32 {
        <&Self as Mmio>::read32(&self, offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        <&Self as Mmio>::write32(&mut &*self, offset, value)
    }

    fn read64(&self, offset: usize) -> u64 {
        <&Self as Mmio>::read64(&self, offset)
    }

    fn write64(&mut self, offset: usize, value: u64) {
        <&Self as Mmio>::write64(&mut &*self, offset, value)
    }
}
