//! The queued invalidation engine (VT-d §6.5.2): fetches descriptors from
//! the ring at IQA between IQH and IQT, executes them in order and advances
//! IQH.
//!
//! Processing runs when software writes IQT (or, with
//! [`EmuConfig::process_on_tail_write`](crate::EmuConfig::process_on_tail_write)
//! off, when a polling front end calls [`Emulator::process`]). It stops at
//! the first descriptor it cannot execute, setting FSTS.IQE and the reason
//! in IQERCD.IQEI with IQH left pointing at that descriptor; nothing is
//! fetched until software clears IQE (§6.5.2.10). A tail beyond the queue,
//! or not aligned to a 256-bit slot, is an IQE too. Every pass handles at
//! most one queue's worth of descriptors, so no queue contents can make it
//! loop, and every fetch goes through `PhysMem`, so none reads outside the
//! memory the unit was given.

use vtd_regs::desc::{DescError, Descriptor};
use vtd_regs::regs::iq::QueueErrorInfo;
use vtd_regs::regs::{GlobalBits, Iqh, Iqt};
use vtd_regs::{PhysAddr, PhysMem};

use crate::counters::DESCRIPTOR_TYPES;
use crate::emulator::{DevTlbResponse, Emulator, State};

/// What executing one descriptor asks of the engine.
enum Step {
    /// Go on with the next descriptor.
    Next,
    /// Stop after this descriptor (device-TLB time-out).
    Halt,
}

/// The IQEI a decoding error is reported with (§10.4.29).
fn queue_error(e: DescError) -> QueueErrorInfo {
    match e {
        DescError::UnknownType { .. }
        | DescError::TypeMismatch { .. }
        | DescError::NeedsWideQueue { .. } => QueueErrorInfo::InvalidType,
        DescError::ShortSlot { .. } => QueueErrorInfo::FetchError,
        _ => QueueErrorInfo::ReservedField,
    }
}

impl<const I: usize, const C: usize> State<I, C> {
    /// IQE or ITE is set: the queue does not advance.
    pub(crate) fn queue_halted(&self) -> bool {
        self.queue_errors.iqe() || self.queue_errors.ite()
    }

    /// Reports an invalidation queue error and halts the queue.
    fn queue_fault(&mut self, info: QueueErrorInfo) {
        self.counters.invalid_descriptors += 1;
        self.queue_errors = self.queue_errors.with_iqe(true);
        self.iqercd = self.iqercd.with_iqei(info);
        self.fault_event.raise();
    }

    /// Processes the descriptors between IQH and IQT.
    pub(crate) fn process_queue<M: PhysMem>(&mut self, mem: &M) {
        if !self.gsts.contains(GlobalBits::QIE) || self.queue_halted() {
            return;
        }
        // Address bits at and above the host width are ignored (§10.4.23).
        let iqa =
            self.iqa.with_base(PhysAddr::new(self.iqa.base().as_u64() & self.host_width_mask()));
        let width = iqa.width();
        let entries = iqa.entries();
        let tail = self.iqt.index(width);
        if tail >= entries || Iqt::from_index(tail, width) != self.iqt {
            self.queue_fault(QueueErrorInfo::InvalidTail);
            return;
        }
        let mut head = self.iqh.index(width) % entries;
        for _ in 0..entries {
            if head == tail {
                break;
            }
            let mut slot = [0u8; 32];
            let bytes = &mut slot[..width.bytes()];
            let addr = iqa.base().checked_add((head * width.bytes()) as u64);
            if addr.is_none_or(|a| mem.read_bytes(a, bytes).is_err()) {
                self.queue_fault(QueueErrorInfo::FetchError);
                return;
            }
            let step = Descriptor::read(width, bytes)
                .map_err(queue_error)
                .and_then(|d| self.execute(mem, d));
            match step {
                Err(info) => {
                    self.queue_fault(info);
                    return;
                }
                Ok(step) => {
                    head = (head + 1) % entries;
                    self.iqh = Iqh::from_index(head, width);
                    if let Step::Halt = step {
                        return;
                    }
                }
            }
        }
    }

    /// Executes one descriptor.
    fn execute<M: PhysMem>(&mut self, mem: &M, d: Descriptor) -> Result<Step, QueueErrorInfo> {
        let ecap = self.cfg.ecap;
        let code = usize::from(d.ty().code());
        match d {
            Descriptor::ContextCache(inv) => {
                self.flush_contexts(inv.scope);
            }
            Descriptor::Iotlb(inv) => {
                self.flush_iotlb(inv.scope).ok_or(QueueErrorInfo::ReservedField)?;
            }
            Descriptor::DevTlb(inv) if ecap.device_tlb() => match self.ats_response(inv.sid) {
                DevTlbResponse::Complete => {}
                DevTlbResponse::InvalidCompletion => {
                    self.queue_errors = self.queue_errors.with_ice(true);
                    self.iqercd = self.iqercd.with_icesid(inv.sid);
                    self.fault_event.raise();
                }
                DevTlbResponse::TimeOut => {
                    self.queue_errors = self.queue_errors.with_ite(true);
                    self.iqercd = self.iqercd.with_itesid(inv.sid);
                    self.fault_event.raise();
                    self.count_descriptor(code);
                    return Ok(Step::Halt);
                }
            },
            // The model has no interrupt entry cache to drop.
            Descriptor::Iec(_) if ecap.ir() => {}
            Descriptor::Wait(w) => {
                // PD without ECAP.PDS is a reserved field (§6.5.2.8).
                if w.page_request_drain && !ecap.pds() {
                    return Err(QueueErrorInfo::ReservedField);
                }
                // Everything before has completed (processing is in order
                // and synchronous), so the fence (FN) holds by construction.
                if let Some((addr, data)) = w.status_write {
                    // A status address outside memory is a write the bus
                    // drops; the unit goes on.
                    let _ = mem.write_u32(addr, data);
                }
                if w.interrupt && !self.ics.iwc() {
                    self.ics = self.ics.with_iwc(true);
                    self.inv_event.raise();
                }
            }
            // Device-TLB descriptors without ECAP.DT, interrupt entry cache
            // ones without ECAP.IR, and the PASID-based (scalable-mode)
            // types are not supported by this unit.
            _ => return Err(QueueErrorInfo::InvalidType),
        }
        self.count_descriptor(code);
        Ok(Step::Next)
    }

    fn count_descriptor(&mut self, code: usize) {
        self.counters.descriptors[code % DESCRIPTOR_TYPES] += 1;
    }
}

impl<M: PhysMem, const I: usize, const C: usize> Emulator<M, I, C> {
    /// Processes the invalidation queue up to IQT: what a polling front end
    /// (a sidecore) calls when it sees IQT move. Returns the new IQH.
    pub fn process(&self) -> Iqh {
        let mut st = self.state.lock();
        st.process_queue(&self.mem);
        st.iqh
    }
}
