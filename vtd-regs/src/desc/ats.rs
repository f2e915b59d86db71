//! What the two device-TLB descriptors (section 6.5.2.5 and 6.5.2.6) share:
//! the PCIe ATS invalidation range encoding of their address, and the split
//! physical-function source-id field.

use super::error::DescError;
use crate::addr::{Iova, PAGE_SHIFT};
use crate::ids::SourceId;
use crate::regs::bits::{field, mask, with_field};
use crate::scope::AddressMaskOrder;

/// The range of a device-TLB invalidation: 2^`order` pages at an address
/// aligned to that size, as the S bit and ADDR field encode it (PCIe ATS
/// invalidate request; VT-d section 6.5.2.5).
///
/// S = 0 names one 4 KiB page. S = 1 names a larger range: the number of
/// ones in ADDR from bit 12 upward, plus one, is the order, so
/// ADDR = base | (2^(12 + order - 1) - 1) with bits 11:0 clear.
/// Order 52 covers the whole 64-bit space.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct AtsRange {
    addr: Iova,
    order: AddressMaskOrder,
}

impl AtsRange {
    /// The largest order: 2^52 pages, all of the 64-bit space.
    pub const MAX_ORDER: AddressMaskOrder = 52;

    /// The single 4 KiB page containing `addr`.
    #[inline]
    pub const fn page(addr: Iova) -> Self {
        Self { addr: addr.align_down(1 << PAGE_SHIFT), order: 0 }
    }

    /// 2^`order` pages at `addr`, which must be aligned to that size.
    pub const fn pages(addr: Iova, order: AddressMaskOrder) -> Result<Self, DescError> {
        if order > Self::MAX_ORDER || addr.as_u64() & mask(PAGE_SHIFT + order as u32) != 0 {
            return Err(DescError::MisalignedAddress { addr: addr.as_u64(), order });
        }
        Ok(Self { addr, order })
    }

    /// The first address covered.
    #[inline]
    pub const fn addr(self) -> Iova {
        self.addr
    }

    /// The range covers 2^order pages.
    #[inline]
    pub const fn order(self) -> AddressMaskOrder {
        self.order
    }

    /// The ADDR field (bits 63:12, in place) and the S bit.
    pub(crate) const fn encode(self) -> (u64, bool) {
        if self.order == 0 {
            return (self.addr.as_u64(), false);
        }
        let ones = mask(PAGE_SHIFT + self.order as u32 - 1) & !mask(PAGE_SHIFT);
        (self.addr.as_u64() | ones, true)
    }

    /// Decodes the ADDR field (bits 63:12 of `addr`; bits 11:0 ignored) and
    /// the S bit.
    pub(crate) const fn decode(addr: u64, size: bool) -> Result<Self, DescError> {
        let addr = addr & !mask(PAGE_SHIFT);
        if !size {
            return Ok(Self { addr: Iova::new(addr), order: 0 });
        }
        let ones = (addr >> PAGE_SHIFT).trailing_ones();
        if ones >= Self::MAX_ORDER as u32 {
            return Err(DescError::InvalidRange { addr });
        }
        let order = ones as AddressMaskOrder + 1;
        let base = addr & !mask(PAGE_SHIFT + order as u32);
        Ok(Self { addr: Iova::new(base), order })
    }
}

/// The PFSID field in quadword 0 of both device-TLB descriptors: source-id
/// bits 3:0 in bits 15:12 and bits 15:4 in bits 63:52.
pub(crate) const fn pfsid_bits(pfsid: SourceId) -> u64 {
    let raw = pfsid.raw() as u64;
    with_field(with_field(0, 12, 15, raw), 52, 63, raw >> 4)
}

/// The PFSID held in quadword 0 of a device-TLB descriptor.
pub(crate) const fn pfsid_of(qw0: u64) -> SourceId {
    SourceId::from_raw((field(qw0, 12, 15) | (field(qw0, 52, 63) << 4)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_encoding_known_answers() {
        // One page: S = 0, address as is.
        assert_eq!(AtsRange::page(Iova::new(0x1234_5678)).encode(), (0x1234_5000, false));
        // 8 KiB at 0x2000: S = 1, bit 12 clear.
        let r = AtsRange::pages(Iova::new(0x2000), 1).unwrap();
        assert_eq!(r.encode(), (0x2000, true));
        // 32 KiB at 0x8000: bits 13:12 set, bit 14 clear (PCIe ATS table).
        let r = AtsRange::pages(Iova::new(0x8000), 3).unwrap();
        assert_eq!(r.encode(), (0xb000, true));
        assert_eq!(AtsRange::decode(0xb000, true), Ok(r));
        // Everything: bits 62:12 set, bit 63 clear.
        let all = AtsRange::pages(Iova::new(0), 52).unwrap();
        assert_eq!(all.encode(), (0x7fff_ffff_ffff_f000, true));
        assert_eq!(AtsRange::decode(0x7fff_ffff_ffff_f000, true), Ok(all));
        assert_eq!(
            AtsRange::decode(u64::MAX, true),
            Err(DescError::InvalidRange { addr: 0xffff_ffff_ffff_f000 })
        );
        assert!(AtsRange::pages(Iova::new(0x1000), 1).is_err());
        assert!(AtsRange::pages(Iova::new(0), 53).is_err());
    }

    #[test]
    fn pfsid_is_split() {
        let sid = SourceId::from_raw(0xabcd);
        assert_eq!(pfsid_bits(sid), 0xabc0_0000_0000_d000);
        assert_eq!(pfsid_of(pfsid_bits(sid)), sid);
    }
}
