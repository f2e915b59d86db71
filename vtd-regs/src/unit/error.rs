//! What can go wrong when driving a remapping unit's registers.

use core::fmt;

use crate::ids::DomainId;
use crate::scope::MisalignedScope;

/// The register operation a [`UnitError::Timeout`] waited for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Operation {
    /// GCMD.SRTP: GSTS.RTPS did not become set (§10.4.4).
    SetRootTable,
    /// GCMD.TE: GSTS.TES did not follow.
    Translation,
    /// GCMD.WBF: GSTS.WBFS did not clear.
    WriteBufferFlush,
    /// GCMD.QIE: GSTS.QIES did not follow.
    QueuedInvalidation,
    /// Disabling queued invalidation: the queue head did not reach the tail.
    QueueDrain,
    /// GCMD.SIRTP: GSTS.IRTPS did not become set.
    SetInterruptRemapTable,
    /// GCMD.IRE: GSTS.IRES did not follow.
    InterruptRemapping,
    /// GCMD.CFI: GSTS.CFIS did not follow.
    CompatibilityFormat,
    /// CCMD.ICC did not clear (§10.4.7).
    ContextInvalidation,
    /// IOTLB_REG.IVT did not clear (§10.4.8).
    IotlbInvalidation,
}

impl Operation {
    /// A short description.
    pub const fn description(self) -> &'static str {
        match self {
            Operation::SetRootTable => "set root table pointer",
            Operation::Translation => "translation enable/disable",
            Operation::WriteBufferFlush => "write buffer flush",
            Operation::QueuedInvalidation => "queued invalidation enable/disable",
            Operation::QueueDrain => "invalidation queue drain",
            Operation::SetInterruptRemapTable => "set interrupt remap table pointer",
            Operation::InterruptRemapping => "interrupt remapping enable/disable",
            Operation::CompatibilityFormat => "compatibility format interrupts",
            Operation::ContextInvalidation => "context-cache invalidation",
            Operation::IotlbInvalidation => "IOTLB invalidation",
        }
    }
}

/// A capability an operation needs and the unit does not report.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Feature {
    /// ECAP.QI: queued invalidation.
    QueuedInvalidation,
    /// ECAP.SMTS: scalable mode (scalable root table, 256-bit descriptors).
    ScalableMode,
    /// ECAP.IR: interrupt remapping.
    InterruptRemapping,
    /// ECAP.EIM: extended (x2APIC) interrupt mode.
    ExtendedInterruptMode,
    /// CAP.PSI: page-selective IOTLB invalidation.
    PageSelectiveInvalidation,
}

impl Feature {
    /// The capability field's name.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::QueuedInvalidation => "ECAP.QI",
            Feature::ScalableMode => "ECAP.SMTS",
            Feature::InterruptRemapping => "ECAP.IR",
            Feature::ExtendedInterruptMode => "ECAP.EIM",
            Feature::PageSelectiveInvalidation => "CAP.PSI",
        }
    }
}

/// An error of a [`RemappingUnit`](super::RemappingUnit) operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnitError {
    /// The registers read as all ones: no unit answers at this address.
    NotPresent,
    /// A status bit did not change within the [`PollBudget`](super::PollBudget).
    Timeout {
        /// What was waited for.
        what: Operation,
    },
    /// The unit does not support what was asked.
    Unsupported(Feature),
    /// A page-selective invalidation covers more than 2^CAP.MAMV pages.
    AddressMaskTooLarge {
        /// The order requested.
        order: u8,
        /// CAP.MAMV.
        max: u8,
    },
    /// A page-selective scope whose address is not aligned to its size.
    Misaligned(MisalignedScope),
    /// A domain id beyond the CAP.ND width.
    DomainOutOfRange(DomainId),
    /// Register-based invalidation was requested, or the queue reprogrammed,
    /// while queued invalidation is enabled (§6.5: software must use
    /// one interface at a time).
    QueuedInvalidationEnabled,
    /// A queue operation while queued invalidation is disabled.
    QueueDisabled,
    /// A tail index beyond the queue.
    TailOutOfRange {
        /// The index given.
        index: usize,
        /// The queue's size in descriptors.
        entries: usize,
    },
    /// The unit completed an invalidation but reported granularity 0: it was
    /// not performed (CCMD.CAIG / IOTLB_REG.IAIG).
    NotPerformed,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitError::NotPresent => f.write_str("remapping unit registers read as all ones"),
            UnitError::Timeout { what } => {
                write!(f, "timed out waiting for {}", what.description())
            }
            UnitError::Unsupported(feat) => write!(f, "unit does not report {}", feat.name()),
            UnitError::AddressMaskTooLarge { order, max } => {
                write!(f, "address mask {order} exceeds CAP.MAMV {max}")
            }
            UnitError::Misaligned(m) => fmt::Display::fmt(m, f),
            UnitError::DomainOutOfRange(d) => write!(f, "domain id {} beyond CAP.ND", d.raw()),
            UnitError::QueuedInvalidationEnabled => f.write_str("queued invalidation is enabled"),
            UnitError::QueueDisabled => f.write_str("queued invalidation is disabled"),
            UnitError::TailOutOfRange { index, entries } => {
                write!(f, "tail index {index} beyond a queue of {entries} descriptors")
            }
            UnitError::NotPerformed => f.write_str("the unit did not perform the invalidation"),
        }
    }
}

impl core::error::Error for UnitError {}
