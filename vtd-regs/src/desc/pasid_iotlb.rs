//! The PASID-based IOTLB invalidate descriptor, type 6 (section 6.5.2.4):
//! invalidates the first-stage (and nested) translations a PASID cached, in
//! scalable mode. Valid only in a 256-bit queue.
//!
//! Quadword 0: type 3:0, G 5:4 (10b PASID-selective, 11b page-selective
//! within PASID; 00b and 01b reserved), DID 31:16, PASID 51:32; bits 8:6,
//! 15:12 and 63:52 reserved. Quadword 1: as the IOTLB descriptor's, AM 5:0,
//! IH 6, ADDR 63:12; bits 11:7 reserved.

use super::DescType;
use super::decoding::Decoding;
use super::error::DescError;
use super::iotlb::{encode_pages, page_fields};
use super::pasid::Pasid;
use super::raw::{RawDescriptor, check, with_type};
use crate::addr::Iova;
use crate::ids::DomainId;
use crate::regs::bits::{field, with_field};
use crate::scope::{AddressMaskOrder, IotlbScope};

/// Reserved bits of quadwords 0 and 1.
const RESERVED: [u64; 2] = [0xfff0_0000_0000_f1c0, 0xf80];

/// What a PASID-based IOTLB invalidation covers within its PASID.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PasidIotlbScope {
    /// G = 10b: every non-global translation of the PASID.
    Pasid,
    /// G = 11b: 2^`order` pages at `addr`, built with
    /// [`PasidIotlbScope::pages`].
    Pages {
        /// First address covered, aligned to 2^(12 + order) bytes.
        addr: Iova,
        /// Address mask: 2^order pages are covered.
        order: AddressMaskOrder,
        /// IH: only leaf entries changed.
        leaf_only: bool,
    },
}

impl PasidIotlbScope {
    /// 2^`order` pages at `addr`, aligned to that size (the rule of
    /// [`IotlbScope::pages`]).
    pub const fn pages(
        addr: Iova,
        order: AddressMaskOrder,
        leaf_only: bool,
    ) -> Result<Self, DescError> {
        match IotlbScope::pages(DomainId::new(0), addr, order, leaf_only) {
            Ok(_) => Ok(PasidIotlbScope::Pages { addr, order, leaf_only }),
            Err(_) => Err(DescError::MisalignedAddress { addr: addr.as_u64(), order }),
        }
    }

    /// The 2-bit G encoding.
    const fn field(self) -> u64 {
        match self {
            PasidIotlbScope::Pasid => 2,
            PasidIotlbScope::Pages { .. } => 3,
        }
    }
}

/// Invalidates the IOTLB entries of one PASID of one domain.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PasidIotlbInv {
    /// The domain.
    pub domain: DomainId,
    /// The PASID.
    pub pasid: Pasid,
    /// Which of its translations.
    pub scope: PasidIotlbScope,
}

impl PasidIotlbInv {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::PasidIotlb;

    /// The descriptor.
    pub const fn encode(self) -> RawDescriptor {
        let mut qw0 = with_field(with_type(Self::TYPE), 4, 5, self.scope.field());
        qw0 = with_field(qw0, 16, 31, self.domain.raw() as u64);
        qw0 = with_field(qw0, 32, 51, self.pasid.raw() as u64);
        let qw1 = match self.scope {
            PasidIotlbScope::Pasid => 0,
            PasidIotlbScope::Pages { addr, order, leaf_only } => {
                encode_pages(addr, order, leaf_only)
            }
        };
        RawDescriptor::new(qw0, qw1)
    }

    /// Decodes a PASID-based IOTLB invalidate descriptor exactly
    /// ([`Decoding::Strict`]). Quadword 1 is ignored for a PASID-selective
    /// invalidation, as hardware ignores it.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        Self::decode_with(raw, Decoding::Strict)
    }

    /// Decodes a PASID-based IOTLB invalidate descriptor in `mode`: with
    /// [`Decoding::Hardware`], a page-selective address not aligned to its
    /// address mask names the aligned block that contains it (§6.5.2.4).
    pub const fn decode_with(raw: RawDescriptor, mode: Decoding) -> Result<Self, DescError> {
        if let Err(e) = check(raw, Self::TYPE, RESERVED) {
            return Err(e);
        }
        let qw0 = raw.qw0();
        let domain = DomainId::new(field(qw0, 16, 31) as u16);
        let pasid = Pasid::from_field(field(qw0, 32, 51));
        let scope = match field(qw0, 4, 5) {
            2 => PasidIotlbScope::Pasid,
            3 => {
                let (addr, order, leaf_only) = page_fields(raw.qw1(), mode);
                match PasidIotlbScope::pages(addr, order, leaf_only) {
                    Ok(s) => s,
                    Err(e) => return Err(e),
                }
            }
            g => {
                return Err(DescError::InvalidGranularity { ty: Self::TYPE, granularity: g as u8 });
            }
        };
        Ok(Self { domain, pasid, scope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // Page-selective, domain 3, PASID 0x12345, 2 pages at 0x10_0000, IH:
        // 6 | 3 << 4 | 3 << 16 | 0x12345 << 32; qw1 = 0x10_0000 | 1 << 6 | 1.
        // Cross-check with Linux: QI_EIOTLB_PASID(p) p << 32, QI_EIOTLB_DID(d)
        // d << 16, QI_EIOTLB_GRAN(QI_GRAN_PSI_PASID) 3 << 4, QI_EIOTLB_IH(ih)
        // ih << 6, QI_EIOTLB_AM(am) am.
        let d = PasidIotlbInv {
            domain: DomainId::new(3),
            pasid: Pasid::new(0x12345).unwrap(),
            scope: PasidIotlbScope::pages(Iova::new(0x10_0000), 1, true).unwrap(),
        };
        let raw = d.encode();
        assert_eq!(raw, RawDescriptor::new(0x0001_2345_0003_0036, 0x10_0041));
        assert_eq!(PasidIotlbInv::decode(raw), Ok(d));
        // PASID-selective (QI_GRAN_NONG_PASID, 2 << 4).
        let p = PasidIotlbInv { scope: PasidIotlbScope::Pasid, ..d };
        assert_eq!(p.encode(), RawDescriptor::new(0x0001_2345_0003_0026, 0));
        assert_eq!(
            PasidIotlbInv::decode(RawDescriptor::new(0x16, 0)),
            Err(DescError::InvalidGranularity { ty: DescType::PasidIotlb, granularity: 1 })
        );
        assert_eq!(
            PasidIotlbInv::decode(RawDescriptor::new(0x26 | 1 << 52, 0)),
            Err(DescError::ReservedBits { qword: 0, bits: 1 << 52 })
        );
    }
}
