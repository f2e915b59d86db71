//! Primary fault logging (VT-d §7.2.1, §10.4.9, §10.4.14): the fault
//! recording registers, the index of the next one to fill, and the PPF, PFO
//! and FRI state of FSTS.
//!
//! A fault goes into the recording register the internal index points at and
//! the index advances (wrapping at CAP.NFR). If that register still holds an
//! unserviced fault (F = 1), the fault is dropped and FSTS.PFO is set; while
//! PFO stays set, further faults are dropped too (as QEMU does), until
//! software clears PFO. PPF is the OR of the F bits, and FRI names the
//! register the fault that set PPF went to.

use vtd_regs::regs::{FaultRecords, FaultType, Frcd};
use vtd_regs::{FaultReason, Iova, SourceId};

/// The most fault recording registers the model provides (CAP.NFR + 1).
pub const MAX_FAULT_RECORDS: usize = 64;

/// A non-recoverable translation fault: what [`Emulator::translate`]
/// returns and a fault recording register reports.
///
/// [`Emulator::translate`]: crate::Emulator::translate
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The requester.
    pub source: SourceId,
    /// The faulting address (the register keeps its page, bits 63:12).
    pub addr: Iova,
    /// Why the request was blocked.
    pub reason: FaultReason,
    /// The request type (read or write).
    pub kind: FaultType,
}

impl Fault {
    /// The fault recording register contents for this fault (F set).
    pub const fn record(&self) -> Frcd {
        self.record_pasid(None)
    }

    /// The fault recording register contents for this fault of a request
    /// that carried `pasid` (PP, PV, §10.4.14).
    pub const fn record_pasid(&self, pasid: Option<u32>) -> Frcd {
        Frcd::new(self.source, self.reason, self.kind, self.addr.as_u64(), pasid)
    }
}

/// What happened to a fault handed to [`FaultLog::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    /// Recorded in register `index`; `first_pending` when it set PPF (a
    /// fault event is due).
    Recorded {
        /// The fault recording register used.
        index: u16,
        /// PPF was clear before.
        first_pending: bool,
    },
    /// The next register was full: PFO was set now (a fault event is due).
    Overflowed,
    /// PFO was already set: the fault was dropped silently.
    Dropped,
}

/// The fault recording registers and the primary-fault part of FSTS.
#[derive(Clone, Debug)]
pub struct FaultLog {
    records: [Frcd; MAX_FAULT_RECORDS],
    count: u16,
    next: u16,
    fri: u16,
    pfo: bool,
}

impl FaultLog {
    /// A log of `count` registers (CAP.NFR + 1; clamped to
    /// `1..=MAX_FAULT_RECORDS`), all empty.
    pub fn new(count: u16) -> Self {
        Self {
            records: [Frcd::default(); MAX_FAULT_RECORDS],
            count: count.clamp(1, MAX_FAULT_RECORDS as u16),
            next: 0,
            fri: 0,
            pfo: false,
        }
    }

    /// The number of fault recording registers.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Logs a fault.
    pub fn record(&mut self, fault: &Fault) -> Logged {
        self.record_pasid(fault, None)
    }

    /// [`record`](Self::record) for a request that carried `pasid`.
    pub fn record_pasid(&mut self, fault: &Fault, pasid: Option<u32>) -> Logged {
        if self.pfo {
            return Logged::Dropped;
        }
        let index = self.next;
        if self.records[usize::from(index)].f() {
            self.pfo = true;
            return Logged::Overflowed;
        }
        let first_pending = !self.ppf();
        self.records[usize::from(index)] = fault.record_pasid(pasid);
        if first_pending {
            self.fri = index;
        }
        self.next = (index + 1) % self.count;
        Logged::Recorded { index, first_pending }
    }

    /// The contents of register `index` (F clear once software freed it; the
    /// other fields keep the last fault, as the register is read-only but
    /// for F).
    pub fn get(&self, index: u16) -> Frcd {
        if index >= self.count {
            return Frcd::default();
        }
        self.records[usize::from(index)]
    }

    /// Software wrote 1 to register `index`'s F bit: the register is free.
    pub fn clear(&mut self, index: u16) {
        if let Some(r) = self.records[..usize::from(self.count)].get_mut(usize::from(index)) {
            r.hi &= !(u64::from(FaultRecords::F_CLEAR) << 32);
        }
    }

    /// FSTS.PPF: some register holds a fault.
    pub fn ppf(&self) -> bool {
        self.records[..usize::from(self.count)].iter().any(|r| r.f())
    }

    /// FSTS.FRI: the register of the fault that set PPF (meaningful while
    /// PPF is set).
    pub fn fri(&self) -> u16 {
        self.fri
    }

    /// FSTS.PFO.
    pub fn pfo(&self) -> bool {
        self.pfo
    }

    /// Software wrote 1 to FSTS.PFO.
    pub fn clear_pfo(&mut self) {
        self.pfo = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(n: u64) -> Fault {
        Fault {
            source: SourceId::from_raw(8),
            addr: Iova::new(n << 12),
            reason: FaultReason::ReadNotPermitted,
            kind: FaultType::Read,
        }
    }

    #[test]
    fn records_wrap_and_overflow() {
        let mut log = FaultLog::new(2);
        assert!(!log.ppf());
        assert_eq!(log.record(&fault(1)), Logged::Recorded { index: 0, first_pending: true });
        assert_eq!(log.record(&fault(2)), Logged::Recorded { index: 1, first_pending: false });
        assert!(log.ppf());
        assert_eq!(log.fri(), 0);
        // The next register (0) is still full.
        assert_eq!(log.record(&fault(3)), Logged::Overflowed);
        assert!(log.pfo());
        log.clear(0);
        // Still dropped while PFO is set, though register 0 is free.
        assert_eq!(log.record(&fault(4)), Logged::Dropped);
        log.clear_pfo();
        assert_eq!(log.record(&fault(5)), Logged::Recorded { index: 0, first_pending: false });
        assert_eq!(log.get(0), fault(5).record());
        assert_eq!(log.get(0).decode(0).source, SourceId::from_raw(8));
        log.clear(0);
        log.clear(1);
        assert!(!log.ppf());
        assert!(!log.get(0).f());
        assert_eq!(log.get(0).decode(0).fault_info, 5 << 12);
        // FRI follows the register that set PPF again.
        assert_eq!(log.record(&fault(6)), Logged::Recorded { index: 1, first_pending: true });
        assert_eq!(log.fri(), 1);
        assert_eq!(log.get(2), Frcd::default());
        log.clear(7);
    }

    #[test]
    fn count_is_clamped() {
        assert_eq!(FaultLog::new(0).count(), 1);
        assert_eq!(FaultLog::new(1000).count(), MAX_FAULT_RECORDS as u16);
    }
}
