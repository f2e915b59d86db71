//! The device-TLB invalidate descriptor, type 3 (section 6.5.2.5): asks the
//! unit to send a PCIe ATS invalidate request to a device with an address
//! translation cache.
//!
//! Quadword 0: type 3:0, PFSID[3:0] 15:12, MIP 20:16, SID 47:32,
//! PFSID[15:4] 63:52; bits 8:4, 31:21 and 51:48 reserved. Quadword 1: S 0,
//! ADDR 63:12; bits 11:1 reserved.

use super::DescType;
use super::ats::{AtsRange, pfsid_bits, pfsid_of};
use super::error::DescError;
use super::raw::{RawDescriptor, check, with_type};
use crate::ids::SourceId;
use crate::regs::bits::{field, with_field};

/// Reserved bits of quadwords 0 and 1.
const RESERVED: [u64; 2] = [0x000f_0000_ffe0_01f0, 0xffe];

/// Invalidates a device's address translation cache (ATS).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct DevTlbInv {
    /// The device (its requester id).
    pub sid: SourceId,
    /// For an SR-IOV virtual function, the source id of its physical
    /// function; otherwise the device's own (PFSID).
    pub pfsid: SourceId,
    /// Max invalidations pending (MIP, 5 bits; higher bits are dropped):
    /// the device's ATS invalidate queue depth, 0 meaning 32.
    pub max_pending: u8,
    /// The untranslated addresses to invalidate.
    pub range: AtsRange,
}

impl DevTlbInv {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::DevTlb;

    /// The descriptor.
    pub const fn encode(self) -> RawDescriptor {
        let mut qw0 = with_type(Self::TYPE) | pfsid_bits(self.pfsid);
        qw0 = with_field(qw0, 16, 20, self.max_pending as u64);
        qw0 = with_field(qw0, 32, 47, self.sid.raw() as u64);
        let (addr, size) = self.range.encode();
        RawDescriptor::new(qw0, addr | size as u64)
    }

    /// Decodes a device-TLB invalidate descriptor.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        if let Err(e) = check(raw, Self::TYPE, RESERVED) {
            return Err(e);
        }
        let qw0 = raw.qw0();
        let range = match AtsRange::decode(raw.qw1(), raw.qw1() & 1 == 1) {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        Ok(Self {
            sid: SourceId::from_raw(field(qw0, 32, 47) as u16),
            pfsid: pfsid_of(qw0),
            max_pending: field(qw0, 16, 20) as u8,
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
        // SID 01:00.1 (0x0101), PFSID 01:00.0 (0x0100), MIP 8, 16 KiB at
        // 0x4000: qw0 = 3 | 0x0 << 12 | 8 << 16 | 0x0101 << 32 | 0x010 << 52;
        // qw1 = 0x4000 | 0x1000 (one trailing one: order 2) | S.
        // Cross-check with Linux: QI_DEV_IOTLB_SID(sid) sid << 32,
        // QI_DEV_IOTLB_QDEP(qdep) qdep << 16, QI_DEV_IOTLB_PFSID(pfsid)
        // (pfsid & 0xf) << 12 | ((pfsid >> 4) & 0xfff) << 52,
        // QI_DEV_IOTLB_SIZE 1.
        let d = DevTlbInv {
            sid: SourceId::from_raw(0x0101),
            pfsid: SourceId::from_raw(0x0100),
            max_pending: 8,
            range: AtsRange::pages(Iova::new(0x4000), 2).unwrap(),
        };
        let raw = d.encode();
        assert_eq!(raw, RawDescriptor::new(0x0100_0101_0008_0003, 0x5001));
        assert_eq!(DevTlbInv::decode(raw), Ok(d));
        assert_eq!(
            DevTlbInv::decode(RawDescriptor::new(0x3 | 1 << 21, 0)),
            Err(DescError::ReservedBits { qword: 0, bits: 1 << 21 })
        );
        assert_eq!(
            DevTlbInv::decode(RawDescriptor::new(0x3, 0x2)),
            Err(DescError::ReservedBits { qword: 1, bits: 0x2 })
        );
    }
}
