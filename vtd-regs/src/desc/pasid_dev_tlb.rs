//! The PASID-based device-TLB invalidate descriptor, type 8 (section
//! 6.5.2.6): a PCIe ATS invalidate request with a PASID prefix. Valid only
//! in a 256-bit queue.
//!
//! Quadword 0: type 3:0, MIP 8:4, PFSID[3:0] 15:12, SID 31:16, PASID 51:32,
//! PFSID[15:4] 63:52. Quadword 1: G 0 (global), S 11, ADDR 63:12; bits 10:1
//! reserved.

use super::DescType;
use super::ats::{AtsRange, pfsid_bits, pfsid_of};
use super::error::DescError;
use super::pasid::Pasid;
use super::raw::{RawDescriptor, check, with_type};
use crate::ids::SourceId;
use crate::regs::bits::{field, with_field};

/// Reserved bits of quadwords 0 and 1.
const RESERVED: [u64; 2] = [0, 0x7fe];

/// Bit of S (size) in quadword 1.
const S: u32 = 11;

/// Invalidates a device's translations of one PASID.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PasidDevTlbInv {
    /// The device (its requester id).
    pub sid: SourceId,
    /// For an SR-IOV virtual function, its physical function's source id;
    /// otherwise the device's own (PFSID).
    pub pfsid: SourceId,
    /// The PASID.
    pub pasid: Pasid,
    /// Max invalidations pending (MIP, 5 bits; higher bits are dropped).
    pub max_pending: u8,
    /// G: also invalidate translations marked global, for every PASID.
    pub global: bool,
    /// The untranslated addresses to invalidate.
    pub range: AtsRange,
}

impl PasidDevTlbInv {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::PasidDevTlb;

    /// The descriptor.
    pub const fn encode(self) -> RawDescriptor {
        let mut qw0 = with_type(Self::TYPE) | pfsid_bits(self.pfsid);
        qw0 = with_field(qw0, 4, 8, self.max_pending as u64);
        qw0 = with_field(qw0, 16, 31, self.sid.raw() as u64);
        qw0 = with_field(qw0, 32, 51, self.pasid.raw() as u64);
        let (addr, size) = self.range.encode();
        let qw1 = with_field(with_field(addr, S, S, size as u64), 0, 0, self.global as u64);
        RawDescriptor::new(qw0, qw1)
    }

    /// Decodes a PASID-based device-TLB invalidate descriptor.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        if let Err(e) = check(raw, Self::TYPE, RESERVED) {
            return Err(e);
        }
        let (qw0, qw1) = (raw.qw0(), raw.qw1());
        let range = match AtsRange::decode(qw1, field(qw1, S, S) == 1) {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        Ok(Self {
            sid: SourceId::from_raw(field(qw0, 16, 31) as u16),
            pfsid: pfsid_of(qw0),
            pasid: Pasid::from_field(field(qw0, 32, 51)),
            max_pending: field(qw0, 4, 8) as u8,
            global: field(qw1, 0, 0) == 1,
            range,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Iova;

    #[test]
    fn known_answer() {
        // SID 0x0208, PFSID 0x0200, PASID 1, MIP 4, one page at 0x3000, G:
        // qw0 = 8 | 4 << 4 | 0x0208 << 16 | 1 << 32 | 0x020 << 52;
        // qw1 = 0x3000 | 1.
        // Cross-check with Linux: QI_DEV_EIOTLB_SID(sid) sid << 16,
        // QI_DEV_EIOTLB_QDEP(qd) qd << 4, QI_DEV_EIOTLB_PASID(p) p << 32,
        // QI_DEV_EIOTLB_SIZE 1 << 11, QI_DEV_EIOTLB_GLOB(g) g.
        let d = PasidDevTlbInv {
            sid: SourceId::from_raw(0x0208),
            pfsid: SourceId::from_raw(0x0200),
            pasid: Pasid::new(1).unwrap(),
            max_pending: 4,
            global: true,
            range: AtsRange::page(Iova::new(0x3000)),
        };
        let raw = d.encode();
        assert_eq!(raw, RawDescriptor::new(0x0200_0001_0208_0048, 0x3001));
        assert_eq!(PasidDevTlbInv::decode(raw), Ok(d));
        // 8 KiB: S = 1, bit 12 clear.
        let r = PasidDevTlbInv { range: AtsRange::pages(Iova::new(0x4000), 1).unwrap(), ..d };
        assert_eq!(r.encode().qw1(), 0x4801);
        assert_eq!(PasidDevTlbInv::decode(r.encode()), Ok(r));
        assert_eq!(
            PasidDevTlbInv::decode(RawDescriptor::new(0x8, 0x2)),
            Err(DescError::ReservedBits { qword: 1, bits: 0x2 })
        );
    }
}
