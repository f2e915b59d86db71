//! [`Outcome`]: what one step did, observed the same way on every backend.

use vtd_regs::regs::{FaultRecord, FaultType, QueueErrorInfo};
use vtd_regs::{Granularity, PhysAddr, SourceId, UnitError};
use vtd_tables::Access;

/// Where a DMA went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaResult {
    /// It reached this physical address (found by the data it read, or by
    /// where the bytes it wrote turned up).
    Reached(PhysAddr),
    /// It moved nothing: a write left no trace in the layout's pages, or a
    /// read returned zeros (what edu gets for a blocked read).
    Blocked,
    /// A read returned data that is neither zeros nor a data page's:
    /// the first word.
    Other(u64),
}

/// A fault record, reduced to what both units must agree on (§10.4.14):
/// the PASID field and the record index are left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultSeen {
    /// SID.
    pub source: SourceId,
    /// T: read or write.
    pub kind: FaultType,
    /// FR, raw.
    pub reason: u8,
    /// FI: the faulting page.
    pub page: u64,
}

impl From<FaultRecord> for FaultSeen {
    fn from(r: FaultRecord) -> Self {
        FaultSeen { source: r.source, kind: r.kind, reason: r.reason_code, page: r.fault_info }
    }
}

/// What one step of a scenario did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A register command's result.
    Command {
        /// The step's index.
        step: usize,
        /// What `RemappingUnit` reported: for an invalidation, the
        /// granularity the unit performed (CCMD.CAIG, IOTLB_REG.IAIG).
        result: Result<Option<Granularity>, UnitError>,
    },
    /// A DMA and the faults it recorded.
    Dma {
        /// The step's index.
        step: usize,
        /// Read or write.
        access: Access,
        /// Where it went.
        result: DmaResult,
        /// The fault records pending afterwards (then cleared), or none
        /// for [`Step::DmaNoDrain`](crate::diff::Step::DmaNoDrain).
        faults: Vec<FaultSeen>,
    },
    /// FSTS's fault-logging fields (§10.4.9).
    FaultStatus {
        /// The step's index.
        step: usize,
        /// PFO: a fault was dropped because the records were full.
        overflow: bool,
        /// PPF: some fault record has F set.
        pending: bool,
        /// FRI: the record the first pending fault is in.
        index: u8,
    },
    /// A register's value.
    Register {
        /// The step's index.
        step: usize,
        /// Its offset.
        offset: usize,
        /// What it read.
        value: u32,
    },
    /// The queue after a tail write.
    Queue {
        /// The step's index.
        step: usize,
        /// IQH as an index.
        head: usize,
        /// FSTS.IQE with IQERCD.IQEI's detail, if set (left set).
        error: Option<QueueErrorInfo>,
    },
}
