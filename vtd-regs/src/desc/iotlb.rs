//! The IOTLB invalidate descriptor, type 2 (section 6.5.2.3): the queued
//! form of an IOTLB_REG/IVA_REG invalidation (section 10.4.8), with the same
//! [`IotlbScope`] and [`Drain`] values.
//!
//! Quadword 0: type 3:0, G 5:4, DW 6, DR 7, DID 31:16; bits 8, 15:12 and
//! 63:32 reserved. Quadword 1: AM 5:0, IH 6, ADDR 63:12; bits 11:7 reserved.

use super::DescType;
use super::decoding::Decoding;
use super::error::DescError;
use super::raw::{RawDescriptor, check_domain_scoped, with_type};
use crate::addr::{Iova, PAGE_SHIFT};
use crate::ids::DomainId;
use crate::regs::bits::{field, mask, with_field};
use crate::scope::{AddressMaskOrder, Drain, Granularity, IotlbScope};

/// Reserved bits of quadwords 0 and 1.
const RESERVED: [u64; 2] = [0xffff_ffff_0000_f100, 0xf80];

/// Bit of DW (drain writes) in quadword 0.
const DW: u32 = 6;
/// Bit of DR (drain reads) in quadword 0.
const DR: u32 = 7;

/// Invalidates IOTLB entries (and, for second-level translation, the
/// paging-structure caches).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct IotlbInv {
    /// What to invalidate.
    pub scope: IotlbScope,
    /// Which DMA requests in flight to drain first (CAP.DRD/DWD).
    pub drain: Drain,
}

impl IotlbInv {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::Iotlb;

    /// The descriptor. A [`IotlbScope::Pages`] built without
    /// [`IotlbScope::pages`] is encoded as given: address bits 11:0 are
    /// dropped and an address not aligned to the mask is kept, which
    /// [`IotlbInv::decode`] then rejects.
    pub const fn encode(self) -> RawDescriptor {
        let mut qw0 =
            with_field(with_type(Self::TYPE), 4, 5, self.scope.granularity().field() as u64);
        qw0 = with_field(qw0, DW, DW, self.drain.contains(Drain::WRITES) as u64);
        qw0 = with_field(qw0, DR, DR, self.drain.contains(Drain::READS) as u64);
        let mut qw1 = 0;
        match self.scope {
            IotlbScope::Global => {}
            IotlbScope::Domain(d) => qw0 = with_field(qw0, 16, 31, d.raw() as u64),
            IotlbScope::Pages { domain, addr, order, leaf_only } => {
                qw0 = with_field(qw0, 16, 31, domain.raw() as u64);
                qw1 = encode_pages(addr, order, leaf_only);
            }
        }
        RawDescriptor::new(qw0, qw1)
    }

    /// Decodes an IOTLB invalidate descriptor exactly
    /// ([`Decoding::Strict`]). Fields the granularity does not use (DID for
    /// global; quadword 1 unless page-selective) are ignored, as hardware
    /// ignores them.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        Self::decode_with(raw, Decoding::Strict)
    }

    /// Decodes an IOTLB invalidate descriptor in `mode`: with
    /// [`Decoding::Hardware`], a page-selective address not aligned to its
    /// address mask names the aligned block that contains it (§6.5.2.3).
    pub const fn decode_with(raw: RawDescriptor, mode: Decoding) -> Result<Self, DescError> {
        let (granularity, domain) = match check_domain_scoped(raw, Self::TYPE, RESERVED) {
            Ok(found) => found,
            Err(e) => return Err(e),
        };
        let qw0 = raw.qw0();
        let scope = match granularity {
            Granularity::Global => IotlbScope::Global,
            Granularity::Domain => IotlbScope::Domain(domain),
            Granularity::Selective => match decode_pages(domain, raw.qw1(), mode) {
                Ok(s) => s,
                Err(e) => return Err(e),
            },
        };
        let mut drain = Drain::empty();
        if field(qw0, DW, DW) == 1 {
            drain = drain.union(Drain::WRITES);
        }
        if field(qw0, DR, DR) == 1 {
            drain = drain.union(Drain::READS);
        }
        Ok(Self { scope, drain })
    }
}

/// Quadword 1 of a page-selective invalidation (shared with the PASID-based
/// IOTLB descriptor, section 6.5.2.4): AM 5:0, IH 6, ADDR 63:12.
pub(crate) const fn encode_pages(addr: Iova, order: AddressMaskOrder, leaf_only: bool) -> u64 {
    let qw1 = with_field(0, 0, 5, order as u64);
    let qw1 = with_field(qw1, 6, 6, leaf_only as u64);
    with_field(qw1, 12, 63, addr.page_number())
}

/// The fields of quadword 1 of a page-selective invalidation: ADDR (bits
/// 11:0 clear; in [`Decoding::Hardware`] mode also the bits below 2^AM
/// pages), AM and IH. Bits 11:7 are reserved and checked by the caller.
pub(crate) const fn page_fields(qw1: u64, mode: Decoding) -> (Iova, AddressMaskOrder, bool) {
    let order = field(qw1, 0, 5) as u8;
    let addr = mode.align(qw1 & !mask(PAGE_SHIFT), PAGE_SHIFT + order as u32);
    (Iova::new(addr), order, field(qw1, 6, 6) == 1)
}

/// The page-selective scope quadword 1 names in `domain`.
const fn decode_pages(domain: DomainId, qw1: u64, mode: Decoding) -> Result<IotlbScope, DescError> {
    let (addr, order, leaf_only) = page_fields(qw1, mode);
    match IotlbScope::pages(domain, addr, order, leaf_only) {
        Ok(s) => Ok(s),
        Err(_) => Err(DescError::MisalignedAddress { addr: addr.as_u64(), order }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cross-check against Linux (drivers/iommu/intel/iommu.h): QI_IOTLB_TYPE
    // 0x2, QI_IOTLB_DID(did) did << 16, QI_IOTLB_DR(dr) dr << 7,
    // QI_IOTLB_DW(dw) dw << 6, QI_IOTLB_GRAN(DMA_TLB_DSI_FLUSH) 2 << 4;
    // qw1: QI_IOTLB_ADDR(addr) addr & ~0xfff, QI_IOTLB_IH(ih) ih << 6,
    // QI_IOTLB_AM(am) am.

    #[test]
    fn domain_selective_with_drains() {
        // 0x2 | 2 << 4 | 1 << 6 | 1 << 7 | 5 << 16
        let d = IotlbInv { scope: IotlbScope::Domain(DomainId::new(5)), drain: Drain::all() };
        let raw = d.encode();
        assert_eq!(raw, RawDescriptor::new(0x0005_00e2, 0));
        assert_eq!(IotlbInv::decode(raw), Ok(d));
    }

    #[test]
    fn page_selective_known_answers() {
        let dom = DomainId::new(5);
        // 0x1234_5000 is not a multiple of 2^3 pages (0x8000): no such scope.
        assert!(IotlbScope::pages(dom, Iova::new(0x1234_5000), 3, true).is_err());
        // A raw descriptor with that address and AM = 3 is rejected too...
        let raw = RawDescriptor::new(0x0005_0032, 0x1234_5000 | 1 << 6 | 3);
        assert_eq!(
            IotlbInv::decode(raw),
            Err(DescError::MisalignedAddress { addr: 0x1234_5000, order: 3 })
        );
        // ...except as hardware decodes it: the aligned 8 pages containing
        // it (Linux 6.1's qw0 0x400f2, qw1 0x203003: 8 KiB unmapped at
        // 0x203000 sent with AM 3 flushes 0x200000..0x208000).
        let hw = IotlbInv::decode_with(raw, Decoding::Hardware).unwrap();
        let aligned = IotlbScope::pages(dom, Iova::new(0x1234_0000), 3, true).unwrap();
        assert_eq!(hw, IotlbInv { scope: aligned, drain: Drain::empty() });
        let linux = RawDescriptor::new(0x400f2, 0x203003);
        assert!(IotlbInv::decode(linux).is_err());
        let hw = IotlbInv::decode_with(linux, Decoding::Hardware).unwrap();
        let block = IotlbScope::pages(DomainId::new(4), Iova::new(0x20_0000), 3, false).unwrap();
        assert_eq!(hw, IotlbInv { scope: block, drain: Drain::all() });
        // The aligned 8 pages at 0x1234_0000, IH = 1: 0x1234_0000 | 1 << 6 | 3.
        let s = IotlbScope::pages(dom, Iova::new(0x1234_0000), 3, true).unwrap();
        let d = IotlbInv { scope: s, drain: Drain::empty() };
        assert_eq!(d.encode(), RawDescriptor::new(0x0005_0032, 0x1234_0043));
        assert_eq!(IotlbInv::decode(d.encode()), Ok(d));
        // The single page 0x1234_5000, IH = 1, AM = 0.
        let s = IotlbScope::pages(dom, Iova::new(0x1234_5000), 0, true).unwrap();
        let d = IotlbInv { scope: s, drain: Drain::READS };
        assert_eq!(d.encode(), RawDescriptor::new(0x0005_00b2, 0x1234_5040));
        assert_eq!(IotlbInv::decode(d.encode()), Ok(d));
    }

    #[test]
    fn global_ignores_unused_fields() {
        let g = IotlbInv { scope: IotlbScope::Global, drain: Drain::WRITES };
        assert_eq!(g.encode(), RawDescriptor::new(0x52, 0));
        assert_eq!(IotlbInv::decode(RawDescriptor::new(0x7_0052, 0x5000)), Ok(g));
        assert_eq!(
            IotlbInv::decode(RawDescriptor::new(0x52, 1 << 7)),
            Err(DescError::ReservedBits { qword: 1, bits: 1 << 7 })
        );
        // AM beyond 51 names no encodable range (and must not overflow).
        for am in [52, 63] {
            assert_eq!(
                IotlbInv::decode(RawDescriptor::new(0x32, am)),
                Err(DescError::MisalignedAddress { addr: 0, order: am as u8 })
            );
        }
        assert_eq!(
            IotlbInv::decode(RawDescriptor::new(0x02, 0)),
            Err(DescError::InvalidGranularity { ty: DescType::Iotlb, granularity: 0 })
        );
    }
}
