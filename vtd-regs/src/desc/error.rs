//! Why a descriptor does not decode. Each case is one the remapping unit
//! reports as an invalidation queue error (FSTS.IQE, section 6.5.2.10 and
//! 10.4.9), except [`DescError::MisalignedAddress`] and
//! [`DescError::MisalignedIndex`], which hardware tolerates by ignoring the
//! masked low bits and which the default [`Decoding::Strict`] mode rejects so
//! that a decoded value means exactly what it says ([`Decoding::Hardware`]
//! ignores those bits, as hardware does; an address mask beyond 51 is an
//! error in both modes).
//!
//! [`Decoding::Strict`]: super::Decoding::Strict
//! [`Decoding::Hardware`]: super::Decoding::Hardware

use core::fmt;

use super::DescType;

/// A descriptor that is not a valid invalidation request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum DescError {
    /// The 7-bit type code (bits 3:0 and 11:9 of quadword 0) names no
    /// invalidation descriptor. Code 9 (page group response, section 7.7.1)
    /// is a valid queue entry that this module does not model.
    UnknownType {
        /// The type code found.
        code: u8,
    },
    /// A per-type decoder was given a descriptor of another type.
    TypeMismatch {
        /// The type the decoder handles.
        expected: DescType,
        /// The type code found.
        found: u8,
    },
    /// A PASID-based descriptor (type 6, 7 or 8) in a queue of 128-bit
    /// descriptors (IQA_REG.DW = 0), where only the legacy types are valid.
    NeedsWideQueue {
        /// The descriptor's type.
        ty: DescType,
    },
    /// [`Descriptor::read`](super::Descriptor::read) or
    /// [`Descriptor::write`](super::Descriptor::write) was given fewer bytes
    /// than one queue slot.
    ShortSlot {
        /// The length given.
        len: usize,
    },
    /// Reserved bits are set.
    ReservedBits {
        /// Which quadword: 0 and 1 are bits 63:0 and 127:64; 2 and 3 the
        /// upper half of a 256-bit descriptor, reserved for every type.
        qword: u8,
        /// The reserved bits that are set, in place.
        bits: u64,
    },
    /// The granularity field holds a value that is reserved for this type.
    InvalidGranularity {
        /// The descriptor's type.
        ty: DescType,
        /// The raw granularity field.
        granularity: u8,
    },
    /// A page-selective invalidation whose address is not aligned to the
    /// 2^`order` pages its address mask (AM) selects, or whose AM exceeds 51.
    MisalignedAddress {
        /// The address field.
        addr: u64,
        /// The address mask.
        order: u8,
    },
    /// A device-TLB invalidation with S = 1 and address bits 63:12 all ones,
    /// which encodes no range (PCIe ATS invalidation range encoding).
    InvalidRange {
        /// The address field.
        addr: u64,
    },
    /// An index-selective interrupt-entry-cache invalidation whose index is
    /// not aligned to the 2^`mask` entries it covers.
    MisalignedIndex {
        /// The interrupt index (IIDX).
        index: u16,
        /// The index mask (IM).
        mask: u8,
    },
    /// An invalidation wait with SW = 1 whose status address is not 4-byte
    /// aligned (bits 1:0 must be zero, section 6.5.2.8).
    MisalignedStatusAddress {
        /// The status address field (bits 127:64).
        addr: u64,
    },
}

impl fmt::Display for DescError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DescError::UnknownType { code } => {
                write!(f, "unknown invalidation descriptor type {code:#x}")
            }
            DescError::TypeMismatch { expected, found } => {
                write!(f, "descriptor type {found:#x} where {expected:?} was expected")
            }
            DescError::NeedsWideQueue { ty } => {
                write!(f, "{ty:?} descriptor in a 128-bit invalidation queue")
            }
            DescError::ShortSlot { len } => write!(f, "{len} bytes are less than a queue slot"),
            DescError::ReservedBits { qword, bits } => {
                write!(f, "reserved bits {bits:#x} set in quadword {qword}")
            }
            DescError::InvalidGranularity { ty, granularity } => {
                write!(f, "reserved granularity {granularity} in a {ty:?} descriptor")
            }
            DescError::MisalignedAddress { addr, order } => {
                write!(f, "address {addr:#x} is not aligned to 2^{order} pages")
            }
            DescError::InvalidRange { addr } => {
                write!(f, "device-TLB range encoding {addr:#x} has no zero bit")
            }
            DescError::MisalignedIndex { index, mask } => {
                write!(f, "interrupt index {index:#x} is not aligned to 2^{mask} entries")
            }
            DescError::MisalignedStatusAddress { addr } => {
                write!(f, "status address {addr:#x} is not 4-byte aligned")
            }
        }
    }
}

impl core::error::Error for DescError {}
