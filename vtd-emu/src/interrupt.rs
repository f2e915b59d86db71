//! Interrupt remapping (VT-d §5.1): what the unit does with an interrupt
//! request, a DWORD write to 0xFEEx_xxxx from a device or an IOAPIC.
//!
//! With GSTS.IRES clear every request passes as it is. With it set:
//! - a compatibility-format request (§5.1.2.1) passes if GSTS.CFIS is set
//!   and the table is in xAPIC mode (IRTA.EIME clear), and is blocked with
//!   fault 25h otherwise;
//! - a remappable-format request (§5.1.2.2) with a reserved bit set faults
//!   20h; its index (handle, plus the subhandle with SHV) beyond the table
//!   size IRTA.S latched by SIRTP, or an entry above the host address
//!   width, faults 21h; an entry the unit cannot read faults 23h;
//! - the entry comes from the interrupt entry cache, or is read from the
//!   table and cached (present and well-formed entries; not-present ones
//!   too in caching mode, §6.1): not present faults 22h, a reserved field
//!   set (including a posted-format entry, which this unit, without
//!   CAP.PI, does not implement) 24h, a requester its SVT/SQ/SID do not
//!   permit 26h (§9.10); otherwise the entry's interrupt is delivered.
//!
//! Faults are recorded in the fault recording registers (§7.2) with the
//! interrupt index in FI bits 63:48, except the qualified ones (22h, 24h,
//! 26h) of an entry whose FPD is set (§5.1.4.1). Nothing a table or a
//! request holds can make it panic or read more than one 16-byte entry.
//!
//! Where QEMU 7.2 differs: it caches no entries, reports no
//! interrupt-remapping faults (it drops the interrupt), passes
//! compatibility-format requests whatever CFIS says, ignores the reserved
//! destination bits of an xAPIC-mode entry and reserved delivery modes,
//! takes SVT 11b as a source-id failure (26h, here a reserved field, 24h),
//! checks a request's reserved data bits after the entry (here before),
//! and reads the SVT 10b bus range with SID bits 15:8 as the last bus and
//! 7:0 as the first, the reverse of the specification and of Linux's
//! `set_irte_verify_bus` (here: first bus in 15:8).

use vtd_regs::irq::{
    Interrupt, InterruptMode, InterruptRequest, IoApicRte, Irte, MsiMessage, RawIrte, RequestError,
};
use vtd_regs::regs::{FaultType, GlobalBits, Irta};
use vtd_regs::{FaultReason, Iova, PhysAddr, PhysMem, SourceId};

use crate::emulator::{Emulator, State};
use crate::fault_log::Fault;
use crate::hook::Hook;

/// What the unit did with an interrupt request it let through.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Delivered {
    /// Remapped through the entry at `index`: the entry's interrupt.
    Remapped {
        /// The interrupt index.
        index: u16,
        /// The interrupt the entry names.
        interrupt: Interrupt,
    },
    /// Passed unchanged: interrupt remapping is off, or a
    /// compatibility-format request the unit allows (GSTS.CFIS, xAPIC).
    Passed(MsiMessage),
}

/// An interrupt request the unit blocked (§5.1.4.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct InterruptFault {
    /// The requester.
    pub source: SourceId,
    /// The interrupt index, for a remappable-format request (the low 16
    /// bits of `handle + subhandle` when that exceeds them).
    pub index: Option<u16>,
    /// Why: one of 20h-27h.
    pub reason: FaultReason,
}

impl InterruptFault {
    /// The fault as the fault log records it: the index in FI bits 63:48,
    /// a write request (an interrupt request is a DWORD write).
    fn as_fault(&self) -> Fault {
        let fi = self.index.map_or(0, |i| u64::from(i) << 48);
        Fault {
            source: self.source,
            addr: Iova::new(fi),
            reason: self.reason,
            kind: FaultType::Write,
        }
    }
}

/// A blocked request and whether it is recorded.
type Blocked = (InterruptFault, bool);

impl<const I: usize, const C: usize, H> State<I, C, H> {
    fn remap<M: PhysMem>(
        &mut self,
        mem: &M,
        source: SourceId,
        msg: MsiMessage,
    ) -> Result<Delivered, InterruptFault> {
        self.counters.interrupt_requests += 1;
        if !self.gsts.contains(GlobalBits::IRE) {
            return Ok(Delivered::Passed(msg));
        }
        self.resolve(mem, source, msg).map_err(|(fault, record)| {
            if record {
                self.counters.interrupt_faults += 1;
                self.log(&fault.as_fault());
            }
            fault
        })
    }

    /// Decodes the request and looks its entry up.
    fn resolve<M: PhysMem>(
        &mut self,
        mem: &M,
        source: SourceId,
        msg: MsiMessage,
    ) -> Result<Delivered, Blocked> {
        let blocked = |reason, index: Option<u32>, record| {
            Err((InterruptFault { source, index: index.map(|i| i as u16), reason }, record))
        };
        let req = match msg.decode() {
            // Not an interrupt request at all: the caller's mistake, not a
            // request the unit saw, so nothing is recorded.
            Err(RequestError::NotInterrupt) => {
                return blocked(FaultReason::IrRequestReserved, None, false);
            }
            Err(RequestError::Reserved) => {
                return blocked(FaultReason::IrRequestReserved, None, true);
            }
            Ok(req) => req,
        };
        let index = match req {
            InterruptRequest::Compatibility(m) => {
                let allowed = !self.irta_active.eime() && self.gsts.contains(GlobalBits::CFI);
                return if allowed {
                    Ok(Delivered::Passed(m))
                } else {
                    blocked(FaultReason::IrCompatBlocked, None, true)
                };
            }
            InterruptRequest::Remappable { .. } => req.index().unwrap_or(0),
        };
        let at = Some(index);
        let raw = match self.irte(mem, index) {
            Ok(raw) => raw,
            Err(reason) => return blocked(reason, at, true),
        };
        let record = !raw.fpd();
        match raw.decode(self.interrupt_mode()) {
            Ok(Irte::NotPresent { .. }) => blocked(FaultReason::IrEntryNotPresent, at, record),
            Ok(Irte::Posted(_)) | Err(_) => blocked(FaultReason::IrEntryReserved, at, record),
            Ok(Irte::Remapped(e)) if !e.source.permits(source) => {
                blocked(FaultReason::IrSourceIdInvalid, at, record)
            }
            Ok(Irte::Remapped(e)) => {
                Ok(Delivered::Remapped { index: index as u16, interrupt: e.interrupt })
            }
        }
    }

    /// The interrupt mode of the latched table (IRTA.EIME).
    fn interrupt_mode(&self) -> InterruptMode {
        InterruptMode::from_eime(self.irta_active.eime())
    }

    /// The entry at `index` of the table SIRTP latched: from the interrupt
    /// entry cache, or read (and cached, if well-formed and present, or in
    /// caching mode whatever it holds but reserved bits).
    fn irte<M: PhysMem>(&mut self, mem: &M, index: u32) -> Result<RawIrte, FaultReason> {
        let table = self.irta_active;
        if index >= table.entries() {
            return Err(FaultReason::IrIndexBeyondTable);
        }
        if let Some(raw) = self.iec.lookup(index as u16) {
            return Ok(raw);
        }
        let raw = read_irte(mem, table, self.host_width_mask(), index).inspect_err(|e| {
            if *e == FaultReason::IrTableAccess {
                self.counters.irte_reads += 1;
            }
        })?;
        self.counters.irte_reads += 1;
        let cache = match raw.decode(self.interrupt_mode()) {
            Ok(Irte::Remapped(_)) => true,
            Ok(Irte::NotPresent { .. }) => self.cfg.cap.caching_mode(),
            Ok(Irte::Posted(_)) | Err(_) => false,
        };
        if cache {
            self.iec.insert(index as u16, raw);
        }
        Ok(raw)
    }
}

/// Reads the entry at `index` of the interrupt remapping table `table`
/// from `mem`, as the unit does on a miss (§5.1.3, §5.1.4.1): fault 21h for
/// an index beyond IRTA.S or an entry above the host address width
/// (`width_mask`, the address bits below it), 23h for an entry `mem`
/// cannot read. Reads one 16-byte entry at most.
pub(crate) fn read_irte<M: PhysMem + ?Sized>(
    mem: &M,
    table: Irta,
    width_mask: u64,
    index: u32,
) -> Result<RawIrte, FaultReason> {
    if index >= table.entries() {
        return Err(FaultReason::IrIndexBeyondTable);
    }
    let addr = table.table().as_u64().checked_add(u64::from(index) * RawIrte::SIZE);
    let Some(addr) = addr.filter(|a| (a + (RawIrte::SIZE - 1)) & !width_mask == 0) else {
        return Err(FaultReason::IrIndexBeyondTable);
    };
    let read = |a| mem.read_u64(PhysAddr::new(a));
    match (read(addr), read(addr + 8)) {
        (Ok(lo), Ok(hi)) => Ok(RawIrte::new(lo, hi)),
        _ => Err(FaultReason::IrTableAccess),
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Emulator<M, I, C, H> {
    /// Remaps an interrupt request: the MSI `msg` (address in
    /// 0xFEEx_xxxx) written by `source` (§5.1.4). Returns what is
    /// delivered, or the fault that blocked it (recorded unless the
    /// entry's FPD suppresses it; an address outside the interrupt range is
    /// no interrupt request and gives 20h unrecorded).
    pub fn remap_interrupt(
        &self,
        source: SourceId,
        msg: MsiMessage,
    ) -> Result<Delivered, InterruptFault> {
        self.state.lock().remap(&self.mem, source, msg)
    }

    /// Remaps the interrupt an IOAPIC with requester id `source` sends for
    /// its redirection entry `rte` (§5.1.5.1): the message
    /// [`IoApicRte::message`] gives, remapped as
    /// [`remap_interrupt`](Self::remap_interrupt) does. (A masked entry
    /// sends nothing; that is the IOAPIC's part, not the unit's.)
    pub fn remap_ioapic(
        &self,
        source: SourceId,
        rte: IoApicRte,
    ) -> Result<Delivered, InterruptFault> {
        self.remap_interrupt(source, rte.message())
    }

    /// Interrupt remapping table entries held in the interrupt entry cache.
    pub fn interrupt_entry_cache_entries(&self) -> usize {
        self.state.lock().iec.len()
    }
}
