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
//! or not aligned to a 256-bit slot, is an IQE too; so is a wait
//! descriptor whose status write fails (an address outside memory), as on
//! QEMU: the driver polling that status would otherwise wait forever with
//! no error to see (IQEI 0, no detail: the specification has no code for
//! it). Every pass handles at most one queue's worth of descriptors, so no
//! queue contents can make it loop, and every fetch goes through `PhysMem`,
//! so none reads outside the memory the unit was given.
//!
//! Each descriptor is fetched once and decoded once, as hardware decodes it
//! ([`Decoding::Hardware`]: the address bits below a page-selective
//! invalidation's mask are ignored, as Linux before 6.9 relies on), and the
//! embedder's [`Hook`] is told what is executed before it takes effect.
//! IQA.DW selects 256-bit descriptors only on a unit with scalable mode
//! (ECAP.SMTS, §10.4.23); elsewhere DW is reserved (reads 0, writes are
//! ignored) and the queue holds 128-bit descriptors, as on QEMU.

use vtd_regs::desc::{Decoding, DescError, Descriptor, DevTlbInv, PasidDevTlbInv};
use vtd_regs::regs::iq::{DescriptorWidth, QueueErrorInfo};
use vtd_regs::regs::{GlobalBits, Iqa, Iqh, Iqt};
use vtd_regs::{PhysAddr, PhysMem};

use crate::counters::DESCRIPTOR_TYPES;
use crate::emulator::{DevTlbResponse, Emulator, State};
use crate::hook::{Hook, Invalidation, Outcome};

/// What executing one descriptor asks of the engine.
enum Step {
    /// Go on with the next descriptor.
    Next,
    /// Stop after this descriptor (device-TLB time-out).
    Halt,
    /// Stop before this descriptor, without an error: the hook stalled it.
    Stall,
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

/// Reads slot `index` of the queue at `base` of `width` into `qw`, once
/// (a 128-bit slot fills the first two quadwords); `None` if memory cannot
/// be read there.
///
/// The caller's buffer is filled word by word and read the same way by the
/// decoder: returning the array by value had the CPU reload the words as
/// 16-byte vectors from 8-byte stores, which cannot forward (a stall of
/// about the fetch's own cost, per descriptor).
fn fetch<M: PhysMem>(
    mem: &M,
    base: PhysAddr,
    index: usize,
    width: DescriptorWidth,
    qw: &mut [u64; 4],
) -> Option<()> {
    let at = base.checked_add((index * width.bytes()) as u64)?;
    mem.read_u64s(at, qw.get_mut(..width.quadwords())?).ok()
}

impl<const I: usize, const C: usize, H> State<I, C, H> {
    /// IQA as the unit uses it: address bits at and above the host width
    /// ignored (§10.4.23). (DW is writable only with ECAP.SMTS.)
    fn queue_address(&self) -> Iqa {
        self.iqa.with_base(PhysAddr::new(self.iqa.base().as_u64() & self.host_width_mask()))
    }

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
    pub(crate) fn process_queue<M: PhysMem>(&mut self, mem: &M)
    where
        H: Hook<M>,
    {
        if !self.gsts.contains(GlobalBits::QIE) || self.queue_halted() {
            return;
        }
        let iqa = self.queue_address();
        let width = iqa.width();
        let entries = iqa.entries();
        let tail = self.iqt.index(width);
        if tail >= entries || Iqt::from_index(tail, width) != self.iqt {
            self.queue_fault(QueueErrorInfo::InvalidTail);
            return;
        }
        // A power of two (QS, §10.4.23): a mask, not a division per
        // descriptor.
        let wrap = entries - 1;
        let mut head = self.iqh.index(width) & wrap;
        // Bits 255:128 stay zero with 128-bit slots.
        let mut qw = [0u64; 4];
        for _ in 0..entries {
            if head == tail {
                break;
            }
            if fetch(mem, iqa.base(), head, width, &mut qw).is_none() {
                self.queue_fault(QueueErrorInfo::FetchError);
                return;
            }
            let step = Descriptor::decode_slot(width, qw, Decoding::Hardware)
                .map_err(queue_error)
                .and_then(|d| self.execute(mem, d));
            match step {
                Err(info) => {
                    self.queue_fault(info);
                    return;
                }
                Ok(Step::Stall) => return,
                Ok(step) => {
                    head = (head + 1) & wrap;
                    self.iqh = Iqh::from_index(head, width);
                    if let Step::Halt = step {
                        return;
                    }
                }
            }
        }
    }

    /// Executes one descriptor.
    fn execute<M: PhysMem>(&mut self, mem: &M, d: Descriptor) -> Result<Step, QueueErrorInfo>
    where
        H: Hook<M>,
    {
        let ecap = self.cfg.ecap;
        let code = usize::from(d.ty().code());
        let inv = match d {
            Descriptor::ContextCache(inv) => Some(Invalidation::ContextCache(inv.scope)),
            Descriptor::Iotlb(inv) => Some(Invalidation::Iotlb(inv.scope)),
            Descriptor::DevTlb(inv) if ecap.device_tlb() => Some(Invalidation::DevTlb(inv)),
            Descriptor::Iec(inv) if ecap.ir() => Some(Invalidation::InterruptEntries(inv.scope)),
            Descriptor::PasidCache(inv) if ecap.smts() => Some(Invalidation::PasidCache(inv.scope)),
            Descriptor::PasidIotlb(inv) if ecap.smts() => Some(Invalidation::PasidIotlb(inv)),
            Descriptor::PasidDevTlb(inv) if ecap.smts() && ecap.device_tlb() => {
                Some(Invalidation::PasidDevTlb(inv))
            }
            _ => None,
        };
        if let Some(inv) = inv {
            // An IOTLB request the unit refuses (AM beyond MAMV) is an
            // error before the hook sees anything.
            let inv = self.performed(inv).ok_or(QueueErrorInfo::ReservedField)?;
            if self.perform(mem, inv) == Outcome::Stall {
                return Ok(Step::Stall);
            }
        }
        match d {
            // A device-TLB answers a PASID-based invalidation as any other.
            Descriptor::DevTlb(DevTlbInv { sid, .. })
            | Descriptor::PasidDevTlb(PasidDevTlbInv { sid, .. })
                if ecap.device_tlb() && (ecap.smts() || matches!(d, Descriptor::DevTlb(_))) =>
            {
                match self.ats_response(sid) {
                    DevTlbResponse::Complete => {}
                    DevTlbResponse::InvalidCompletion => {
                        self.queue_errors = self.queue_errors.with_ice(true);
                        self.iqercd = self.iqercd.with_icesid(sid);
                        self.fault_event.raise();
                    }
                    DevTlbResponse::TimeOut => {
                        self.queue_errors = self.queue_errors.with_ite(true);
                        self.iqercd = self.iqercd.with_itesid(sid);
                        self.fault_event.raise();
                        self.count_descriptor(code);
                        return Ok(Step::Halt);
                    }
                }
            }
            Descriptor::ContextCache(_) | Descriptor::Iotlb(_) => {}
            Descriptor::PasidCache(_) | Descriptor::PasidIotlb(_) if ecap.smts() => {}
            Descriptor::Iec(_) if ecap.ir() => {}
            Descriptor::Wait(w) => {
                // PD without ECAP.PDS is a reserved field (§6.5.2.8).
                if w.page_request_drain && !ecap.pds() {
                    return Err(QueueErrorInfo::ReservedField);
                }
                // Everything before has completed (processing is in order
                // and synchronous), so the fence (FN) holds by construction.
                if let Some((addr, data)) = w.status_write
                    && mem.write_u32(addr, data).is_err()
                {
                    // IQE, as QEMU: the status never arrives, and the
                    // driver must be told (§6.5.2.10).
                    return Err(QueueErrorInfo::NotAvailable);
                }
                if w.interrupt && !self.ics.iwc() {
                    self.ics = self.ics.with_iwc(true);
                    self.inv_event.raise();
                }
            }
            // Device-TLB descriptors without ECAP.DT, interrupt entry cache
            // ones without ECAP.IR, and the PASID-based types without
            // ECAP.SMTS are not supported by this unit.
            _ => return Err(QueueErrorInfo::InvalidType),
        }
        self.count_descriptor(code);
        Ok(Step::Next)
    }

    fn count_descriptor(&mut self, code: usize) {
        self.counters.descriptors[code % DESCRIPTOR_TYPES] += 1;
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Emulator<M, I, C, H> {
    /// Processes the invalidation queue up to IQT: what a polling front end
    /// (a sidecore) calls when it sees IQT move. Also retries register-based
    /// invalidations the hook stalled ([`Outcome::Stall`]). Returns the new
    /// IQH.
    pub fn process(&self) -> Iqh {
        let mut st = self.state.lock();
        st.retry_register_commands(&self.mem);
        st.process_queue(&self.mem);
        st.iqh
    }
}
