//! The interrupt entry cache invalidate descriptor, type 4 (section
//! 6.5.2.7): drops cached interrupt-remapping table entries.
//!
//! Quadword 0: type 3:0, G 4 (0 global, 1 index-selective), IM 31:27,
//! IIDX 47:32; bits 8:5, 15:12, 26:16 and 63:48 reserved. Quadword 1
//! reserved.

use super::DescType;
use super::decoding::Decoding;
use super::error::DescError;
use super::raw::{RawDescriptor, check, with_type};
use crate::regs::bits::{field, mask, with_field};

/// Reserved bits of quadwords 0 and 1.
const RESERVED: [u64; 2] = [0xffff_0000_07ff_f1e0, u64::MAX];

/// What an interrupt entry cache invalidation covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum IecScope {
    /// Every cached interrupt remapping entry.
    Global,
    /// 2^`mask` entries starting at `index`, built with
    /// [`IecScope::entries`].
    Entries {
        /// The first interrupt index (IIDX), aligned to 2^`mask`.
        index: u16,
        /// The index mask (IM): 2^mask entries are covered.
        mask: u8,
    },
}

impl IecScope {
    /// The largest index mask the 5-bit IM field holds.
    pub const MAX_MASK: u8 = 31;

    /// The 2^`mask` entries from `index`, which must be aligned to that
    /// count.
    pub const fn entries(index: u16, mask: u8) -> Result<Self, DescError> {
        if mask > Self::MAX_MASK || index as u64 & self::mask(mask as u32) != 0 {
            return Err(DescError::MisalignedIndex { index, mask });
        }
        Ok(IecScope::Entries { index, mask })
    }
}

/// Invalidates cached interrupt remapping entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct IecInv {
    /// What to invalidate.
    pub scope: IecScope,
}

impl IecInv {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::Iec;

    /// The descriptor.
    pub const fn encode(self) -> RawDescriptor {
        let mut qw0 = with_type(Self::TYPE);
        if let IecScope::Entries { index, mask } = self.scope {
            qw0 = with_field(qw0, 4, 4, 1);
            qw0 = with_field(qw0, 27, 31, mask as u64);
            qw0 = with_field(qw0, 32, 47, index as u64);
        }
        RawDescriptor::new(qw0, 0)
    }

    /// Decodes an interrupt entry cache invalidate descriptor exactly
    /// ([`Decoding::Strict`]). IM and IIDX are ignored for a global
    /// invalidation, as hardware ignores them.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        Self::decode_with(raw, Decoding::Strict)
    }

    /// Decodes an interrupt entry cache invalidate descriptor in `mode`:
    /// with [`Decoding::Hardware`], an index not aligned to its index mask
    /// names the aligned block of entries that contains it (§6.5.2.7).
    pub const fn decode_with(raw: RawDescriptor, mode: Decoding) -> Result<Self, DescError> {
        if let Err(e) = check(raw, Self::TYPE, RESERVED) {
            return Err(e);
        }
        let qw0 = raw.qw0();
        if field(qw0, 4, 4) == 0 {
            return Ok(Self { scope: IecScope::Global });
        }
        let mask = field(qw0, 27, 31) as u8;
        let index = mode.align(field(qw0, 32, 47), mask as u32) as u16;
        match IecScope::entries(index, mask) {
            Ok(scope) => Ok(Self { scope }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // Global: type 4 only.
        assert_eq!(IecInv { scope: IecScope::Global }.encode(), RawDescriptor::new(0x4, 0));
        // 4 entries from index 0x40: 4 | 1 << 4 | 2 << 27 | 0x40 << 32.
        // Cross-check with Linux: QI_IEC_TYPE | QI_IEC_SELECTIVE (1 << 4) |
        // QI_IEC_IM(2) (2 << 27) | QI_IEC_IIDEX(0x40) (0x40 << 32).
        let d = IecInv { scope: IecScope::entries(0x40, 2).unwrap() };
        assert_eq!(d.encode(), RawDescriptor::new(0x0000_0040_1000_0014, 0));
        assert_eq!(IecInv::decode(d.encode()), Ok(d));
        assert_eq!(
            IecScope::entries(0x41, 1),
            Err(DescError::MisalignedIndex { index: 0x41, mask: 1 })
        );
        assert_eq!(
            IecInv::decode(RawDescriptor::new(0x0000_0041_0800_0014, 0)),
            Err(DescError::MisalignedIndex { index: 0x41, mask: 1 })
        );
        let hw =
            IecInv::decode_with(RawDescriptor::new(0x0000_0041_0800_0014, 0), Decoding::Hardware);
        assert_eq!(hw, Ok(IecInv { scope: IecScope::entries(0x40, 1).unwrap() }));
        assert_eq!(
            IecInv::decode(RawDescriptor::new(0x4 | 1 << 16, 0)),
            Err(DescError::ReservedBits { qword: 0, bits: 1 << 16 })
        );
    }
}
