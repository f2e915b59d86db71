//! The invalidation wait descriptor, type 5 (section 6.5.2.8): completes
//! once every descriptor before it has completed, and then writes a status
//! dword and/or raises the invalidation completion interrupt.
//!
//! Quadword 0: type 3:0, IF 4, SW 5, FN 6, PD 7, status data 63:32; bits 8
//! and 31:12 reserved. Quadword 1: status address 63:2; bits 1:0 reserved
//! (the address is dword aligned).

use super::DescType;
use super::error::DescError;
use super::raw::{RawDescriptor, check, with_type};
use crate::addr::PhysAddr;
use crate::regs::bits::{field, with_field};

/// Reserved bits of quadwords 0 and 1; the bits 1:0 of quadword 1 are
/// checked separately, as they are the status address's alignment.
const RESERVED: [u64; 2] = [0xffff_f100, 0];

/// Bit positions in quadword 0.
const IF: u32 = 4;
const SW: u32 = 5;
const FN: u32 = 6;
const PD: u32 = 7;

/// Waits for the descriptors before it, then signals completion. The default
/// signals nothing: no status write, no interrupt, no fence.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct WaitDesc {
    /// SW: on completion, write the 32-bit status data to this (4-byte
    /// aligned) address. Build it with [`WaitDesc::with_status_write`].
    pub status_write: Option<(PhysAddr, u32)>,
    /// IF: on completion, set ICS.IWC and raise the invalidation completion
    /// event (section 10.4.24).
    pub interrupt: bool,
    /// FN (fence): descriptors after this one are not processed until this
    /// one completes.
    pub fence: bool,
    /// PD: also drain page requests and responses in flight (ECAP.PDS).
    pub page_request_drain: bool,
}

impl WaitDesc {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::Wait;

    /// A wait with no completion signal and no flag set.
    pub const NONE: WaitDesc =
        WaitDesc { status_write: None, interrupt: false, fence: false, page_request_drain: false };

    /// This wait, writing `data` to `addr` on completion; `addr` must be
    /// 4-byte aligned.
    pub const fn with_status_write(self, addr: PhysAddr, data: u32) -> Result<Self, DescError> {
        if !addr.is_aligned(4) {
            return Err(DescError::MisalignedStatusAddress { addr: addr.as_u64() });
        }
        Ok(Self { status_write: Some((addr, data)), ..self })
    }

    /// The descriptor. A status address built without
    /// [`WaitDesc::with_status_write`] has its bits 1:0 dropped.
    pub const fn encode(self) -> RawDescriptor {
        let mut qw0 = with_type(Self::TYPE);
        qw0 = with_field(qw0, IF, IF, self.interrupt as u64);
        qw0 = with_field(qw0, FN, FN, self.fence as u64);
        qw0 = with_field(qw0, PD, PD, self.page_request_drain as u64);
        let mut qw1 = 0;
        if let Some((addr, data)) = self.status_write {
            qw0 = with_field(qw0, SW, SW, 1);
            qw0 = with_field(qw0, 32, 63, data as u64);
            qw1 = addr.as_u64() & !3;
        }
        RawDescriptor::new(qw0, qw1)
    }

    /// Decodes an invalidation wait descriptor. Status data and address are
    /// ignored when SW = 0, as hardware ignores them. PD is decoded whether
    /// or not the unit reports ECAP.PDS; a unit without it treats the bit as
    /// reserved.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        if let Err(e) = check(raw, Self::TYPE, RESERVED) {
            return Err(e);
        }
        let (qw0, qw1) = (raw.qw0(), raw.qw1());
        let sw = field(qw0, SW, SW) == 1;
        if qw1 & 3 != 0 {
            return Err(if sw {
                DescError::MisalignedStatusAddress { addr: qw1 }
            } else {
                DescError::ReservedBits { qword: 1, bits: qw1 & 3 }
            });
        }
        Ok(Self {
            status_write: if sw {
                Some((PhysAddr::new(qw1), field(qw0, 32, 63) as u32))
            } else {
                None
            },
            interrupt: field(qw0, IF, IF) == 1,
            fence: field(qw0, FN, FN) == 1,
            page_request_drain: field(qw0, PD, PD) == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_write_known_answer() {
        // SW = 1, data 0xdead to 0x1000: 5 | 1 << 5 | 0xdead << 32; qw1 = 0x1000.
        // Cross-check with Linux: QI_IWD_TYPE | QI_IWD_STATUS_WRITE (1 << 5) |
        // QI_IWD_STATUS_DATA(0xdead) (0xdead << 32), qw1 = address.
        let w = WaitDesc::NONE.with_status_write(PhysAddr::new(0x1000), 0xdead).unwrap();
        let raw = w.encode();
        assert_eq!(raw, RawDescriptor::new(0x0000_dead_0000_0025, 0x1000));
        assert_eq!(WaitDesc::decode(raw), Ok(w));
    }

    #[test]
    fn flags_known_answer() {
        // IF | FN | PD: 5 | 1 << 4 | 1 << 6 | 1 << 7 (Linux QI_IWD_FENCE is
        // 1 << 6, QI_IWD_PRQ_DRAIN 1 << 7).
        let w =
            WaitDesc { interrupt: true, fence: true, page_request_drain: true, ..WaitDesc::NONE };
        assert_eq!(w.encode(), RawDescriptor::new(0xd5, 0));
        assert_eq!(WaitDesc::decode(w.encode()), Ok(w));
    }

    #[test]
    fn rejects_misaligned_status_address() {
        assert_eq!(
            WaitDesc::NONE.with_status_write(PhysAddr::new(0x1002), 1),
            Err(DescError::MisalignedStatusAddress { addr: 0x1002 })
        );
        assert_eq!(
            WaitDesc::decode(RawDescriptor::new(0x25, 0x1001)),
            Err(DescError::MisalignedStatusAddress { addr: 0x1001 })
        );
        assert_eq!(
            WaitDesc::decode(RawDescriptor::new(0x05, 0x1001)),
            Err(DescError::ReservedBits { qword: 1, bits: 1 })
        );
        assert_eq!(
            WaitDesc::decode(RawDescriptor::new(0x05 | 1 << 8, 0)),
            Err(DescError::ReservedBits { qword: 0, bits: 1 << 8 })
        );
    }
}
