//! Invalidation descriptors: what software writes to the invalidation queue
//! (VT-d section 6.5.2) and the remapping unit executes.
//!
//! [`RawDescriptor`] is the 128-bit slot as it sits in memory;
//! [`RawDescriptor256`] the 256-bit slot of a queue with IQA_REG.DW = 1.
//! Each descriptor type is a small typed value with `encode` and `decode`,
//! and [`Descriptor`] is the sum of them. [`Descriptor::read`] and
//! [`Descriptor::write`] move one from or to a queue slot of either
//! [`DescriptorWidth`].
//!
//!
//! | type | descriptor | section |
//! |------|------------|---------|
//! | 1 | [`ContextCacheInv`] | 6.5.2.1 |
//! | 2 | [`IotlbInv`] | 6.5.2.3 |
//! | 3 | [`DevTlbInv`] | 6.5.2.5 |
//! | 4 | [`IecInv`] | 6.5.2.7 |
//! | 5 | [`WaitDesc`] | 6.5.2.8 |
//! | 6 | [`PasidIotlbInv`] | 6.5.2.4 |
//! | 7 | [`PasidCacheInv`] | 6.5.2.2 |
//! | 8 | [`PasidDevTlbInv`] | 6.5.2.6 |
//!
//! The context-cache and IOTLB descriptors take the same
//! [`ContextScope`](crate::ContextScope), [`IotlbScope`](crate::IotlbScope)
//! and [`Drain`](crate::Drain) values as the register-based interface, so a
//! flush is described once and sent either way.
//!
//! Decoding never panics. It rejects what the unit reports as an
//! invalidation queue error (reserved bits, unknown type, reserved
//! granularity) and, in the default [`Decoding::Strict`] mode, also
//! addresses and interrupt indices not aligned to their mask, so a decoded
//! value means exactly what it says. A remapping unit decodes with
//! [`Decoding::Hardware`] ([`Descriptor::read_with`]), which ignores those
//! low bits as hardware does. Fields that the spec says hardware
//! ignores for the chosen granularity (e.g. DID of a global invalidation,
//! the status data of a wait without SW) are dropped: re-encoding a decoded
//! descriptor gives the same bits with those fields zero.
//!
//! ```
//! use vtd_regs::desc::{Descriptor, IotlbInv, RawDescriptor};
//! use vtd_regs::{DomainId, Drain, IotlbScope};
//!
//! let flush = IotlbInv { scope: IotlbScope::Domain(DomainId::new(5)), drain: Drain::all() };
//! let raw: RawDescriptor = flush.encode();
//! assert_eq!((raw.qw0(), raw.qw1()), (0x0005_00e2, 0));
//! assert_eq!(Descriptor::decode(raw), Ok(Descriptor::Iotlb(flush)));
//! ```

#![forbid(unsafe_code)]

mod ats;
mod context;
mod decoding;
mod dev_tlb;
mod error;
mod iec;
mod iotlb;
mod pasid;
mod pasid_cache;
mod pasid_dev_tlb;
mod pasid_iotlb;
mod raw;
mod wait;

#[cfg(test)]
mod proptests;

pub use ats::AtsRange;
pub use context::ContextCacheInv;
pub use decoding::Decoding;
pub use dev_tlb::DevTlbInv;
pub use error::DescError;
pub use iec::{IecInv, IecScope};
pub use iotlb::IotlbInv;
pub use pasid::Pasid;
pub use pasid_cache::{PasidCacheInv, PasidCacheScope};
pub use pasid_dev_tlb::PasidDevTlbInv;
pub use pasid_iotlb::{PasidIotlbInv, PasidIotlbScope};
pub use raw::{RawDescriptor, RawDescriptor256};
pub use wait::WaitDesc;

use crate::regs::DescriptorWidth;

/// The invalidation descriptor types (the 7-bit type field: bits 3:0 and
/// 11:9 of quadword 0).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum DescType {
    /// 1: context-cache invalidate (section 6.5.2.1).
    ContextCache = 1,
    /// 2: IOTLB invalidate (section 6.5.2.3).
    Iotlb = 2,
    /// 3: device-TLB invalidate (section 6.5.2.5).
    DevTlb = 3,
    /// 4: interrupt entry cache invalidate (section 6.5.2.7).
    Iec = 4,
    /// 5: invalidation wait (section 6.5.2.8).
    Wait = 5,
    /// 6: PASID-based IOTLB invalidate (section 6.5.2.4).
    PasidIotlb = 6,
    /// 7: PASID-cache invalidate (section 6.5.2.2).
    PasidCache = 7,
    /// 8: PASID-based device-TLB invalidate (section 6.5.2.6).
    PasidDevTlb = 8,
}

impl DescType {
    /// Every type, in code order.
    pub const ALL: [DescType; 8] = [
        DescType::ContextCache,
        DescType::Iotlb,
        DescType::DevTlb,
        DescType::Iec,
        DescType::Wait,
        DescType::PasidIotlb,
        DescType::PasidCache,
        DescType::PasidDevTlb,
    ];

    /// The 7-bit type code.
    #[inline]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The type of code `code`, if it is one of these.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(DescType::ContextCache),
            2 => Some(DescType::Iotlb),
            3 => Some(DescType::DevTlb),
            4 => Some(DescType::Iec),
            5 => Some(DescType::Wait),
            6 => Some(DescType::PasidIotlb),
            7 => Some(DescType::PasidCache),
            8 => Some(DescType::PasidDevTlb),
            _ => None,
        }
    }

    /// Whether the type is valid only in a queue of 256-bit descriptors
    /// (the PASID-based types of scalable mode).
    #[inline]
    pub const fn needs_wide_queue(self) -> bool {
        matches!(self, DescType::PasidIotlb | DescType::PasidCache | DescType::PasidDevTlb)
    }
}

/// Any invalidation descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Descriptor {
    /// Type 1.
    ContextCache(ContextCacheInv),
    /// Type 2.
    Iotlb(IotlbInv),
    /// Type 3.
    DevTlb(DevTlbInv),
    /// Type 4.
    Iec(IecInv),
    /// Type 5.
    Wait(WaitDesc),
    /// Type 6.
    PasidIotlb(PasidIotlbInv),
    /// Type 7.
    PasidCache(PasidCacheInv),
    /// Type 8.
    PasidDevTlb(PasidDevTlbInv),
}

impl Descriptor {
    /// The descriptor's type.
    pub const fn ty(self) -> DescType {
        match self {
            Descriptor::ContextCache(_) => DescType::ContextCache,
            Descriptor::Iotlb(_) => DescType::Iotlb,
            Descriptor::DevTlb(_) => DescType::DevTlb,
            Descriptor::Iec(_) => DescType::Iec,
            Descriptor::Wait(_) => DescType::Wait,
            Descriptor::PasidIotlb(_) => DescType::PasidIotlb,
            Descriptor::PasidCache(_) => DescType::PasidCache,
            Descriptor::PasidDevTlb(_) => DescType::PasidDevTlb,
        }
    }

    /// The 128 bits of the descriptor.
    pub const fn encode(self) -> RawDescriptor {
        match self {
            Descriptor::ContextCache(d) => d.encode(),
            Descriptor::Iotlb(d) => d.encode(),
            Descriptor::DevTlb(d) => d.encode(),
            Descriptor::Iec(d) => d.encode(),
            Descriptor::Wait(d) => d.encode(),
            Descriptor::PasidIotlb(d) => d.encode(),
            Descriptor::PasidCache(d) => d.encode(),
            Descriptor::PasidDevTlb(d) => d.encode(),
        }
    }

    /// The descriptor in a 256-bit slot (bits 255:128 zero).
    #[inline]
    pub const fn encode_wide(self) -> RawDescriptor256 {
        RawDescriptor256::widen(self.encode())
    }

    /// Decodes the 128 bits that hold every descriptor's fields, whatever
    /// the queue width (see [`Descriptor::read`] for a queue slot), exactly
    /// ([`Decoding::Strict`]).
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        Self::decode_with(raw, Decoding::Strict)
    }

    /// Decodes the 128 bits that hold every descriptor's fields in `mode`.
    // Inlined into its caller, which gets the fields in registers: returned
    // through memory, the result was written field by field and read back
    // in wider loads, which cannot be forwarded from those stores (a
    // stall on every descriptor a unit model executes).
    #[inline(always)]
    pub const fn decode_with(raw: RawDescriptor, mode: Decoding) -> Result<Self, DescError> {
        let code = raw.type_code();
        let Some(ty) = DescType::from_code(code) else {
            return Err(DescError::UnknownType { code });
        };
        macro_rules! kind {
            ($variant:ident, $ty:ident) => {
                kind!($variant, $ty::decode(raw), _)
            };
            ($variant:ident, $decoded:expr, _) => {
                match $decoded {
                    Ok(d) => Ok(Descriptor::$variant(d)),
                    Err(e) => Err(e),
                }
            };
        }
        match ty {
            DescType::ContextCache => kind!(ContextCache, ContextCacheInv),
            DescType::Iotlb => kind!(Iotlb, IotlbInv::decode_with(raw, mode), _),
            DescType::DevTlb => kind!(DevTlb, DevTlbInv),
            DescType::Iec => kind!(Iec, IecInv::decode_with(raw, mode), _),
            DescType::Wait => kind!(Wait, WaitDesc),
            DescType::PasidIotlb => kind!(PasidIotlb, PasidIotlbInv::decode_with(raw, mode), _),
            DescType::PasidCache => kind!(PasidCache, PasidCacheInv),
            DescType::PasidDevTlb => kind!(PasidDevTlb, PasidDevTlbInv),
        }
    }

    /// Decodes a 256-bit descriptor: bits 255:128 must be zero (they are
    /// reserved for every type), then as [`Descriptor::decode`].
    pub const fn decode_wide(raw: RawDescriptor256) -> Result<Self, DescError> {
        Self::decode_wide_with(raw, Decoding::Strict)
    }

    /// [`Descriptor::decode_wide`] in `mode`.
    pub const fn decode_wide_with(
        raw: RawDescriptor256,
        mode: Decoding,
    ) -> Result<Self, DescError> {
        let high = raw.high();
        if high[0] != 0 {
            return Err(DescError::ReservedBits { qword: 2, bits: high[0] });
        }
        if high[1] != 0 {
            return Err(DescError::ReservedBits { qword: 3, bits: high[1] });
        }
        Self::decode_with(raw.low(), mode)
    }

    /// Decodes the descriptor at the start of `slot`, one slot of a queue of
    /// `width` (16 or 32 bytes, little-endian), exactly
    /// ([`Decoding::Strict`]). In a 128-bit queue the PASID-based types are
    /// rejected with [`DescError::NeedsWideQueue`].
    pub fn read(width: DescriptorWidth, slot: &[u8]) -> Result<Self, DescError> {
        Self::read_with(width, slot, Decoding::Strict)
    }

    /// [`Descriptor::read`] in `mode`.
    pub fn read_with(
        width: DescriptorWidth,
        slot: &[u8],
        mode: Decoding,
    ) -> Result<Self, DescError> {
        let Some(bytes) = slot.get(..width.bytes()) else {
            return Err(DescError::ShortSlot { len: slot.len() });
        };
        let mut qw = [0u64; 4];
        for (q, b) in qw.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(b);
            *q = u64::from_le_bytes(word);
        }
        Self::decode_slot(width, qw, mode)
    }

    /// Decodes the descriptor in a queue slot of `width` whose quadwords
    /// (little-endian, as in memory) are `qw`, in `mode`: what a remapping
    /// unit fetching from its queue calls, with [`Decoding::Hardware`]. A
    /// 128-bit slot is `qw[0]` and `qw[1]` (the rest is ignored), and the
    /// PASID-based types are rejected there with
    /// [`DescError::NeedsWideQueue`]; in a 256-bit slot `qw[2]` and `qw[3]`
    /// must be zero.
    pub const fn decode_slot(
        width: DescriptorWidth,
        qw: [u64; 4],
        mode: Decoding,
    ) -> Result<Self, DescError> {
        match width {
            DescriptorWidth::Bits128 => {
                match Self::decode_with(RawDescriptor::new(qw[0], qw[1]), mode) {
                    Ok(d) if d.ty().needs_wide_queue() => {
                        Err(DescError::NeedsWideQueue { ty: d.ty() })
                    }
                    other => other,
                }
            }
            DescriptorWidth::Bits256 => Self::decode_wide_with(RawDescriptor256::new(qw), mode),
        }
    }

    /// Writes the descriptor to the start of `slot`, one slot of a queue of
    /// `width` (bits 255:128 zero in a 256-bit slot). A PASID-based type
    /// cannot go to a 128-bit queue ([`DescError::NeedsWideQueue`]); nothing
    /// is written on error.
    pub fn write(self, width: DescriptorWidth, slot: &mut [u8]) -> Result<(), DescError> {
        let qw = self.slot_quadwords(width)?;
        let len = slot.len();
        let dst = slot.get_mut(..width.bytes()).ok_or(DescError::ShortSlot { len })?;
        // Whole quadwords: fixed-size stores, no call to a byte copy.
        for (chunk, q) in dst.chunks_exact_mut(8).zip(qw) {
            chunk.copy_from_slice(&q.to_le_bytes());
        }
        Ok(())
    }

    /// The quadwords of one slot of a queue of `width`, lowest first: the
    /// first two, or all four in a 256-bit slot (bits 255:128 zero). What
    /// a driver stores to its queue as 64-bit words. A PASID-based type
    /// cannot go to a 128-bit queue ([`DescError::NeedsWideQueue`]).
    #[inline]
    pub fn slot_quadwords(self, width: DescriptorWidth) -> Result<[u64; 4], DescError> {
        if width == DescriptorWidth::Bits128 && self.ty().needs_wide_queue() {
            return Err(DescError::NeedsWideQueue { ty: self.ty() });
        }
        Ok(self.encode_wide().quadwords())
    }
}

macro_rules! from_kind {
    ($($variant:ident($ty:ident)),* $(,)?) => {
        $(
            impl From<$ty> for Descriptor {
                #[inline]
                fn from(d: $ty) -> Self {
                    Descriptor::$variant(d)
                }
            }
        )*
    };
}

from_kind!(
    ContextCache(ContextCacheInv),
    Iotlb(IotlbInv),
    DevTlb(DevTlbInv),
    Iec(IecInv),
    Wait(WaitDesc),
    PasidIotlb(PasidIotlbInv),
    PasidCache(PasidCacheInv),
    PasidDevTlb(PasidDevTlbInv),
);
