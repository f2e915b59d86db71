//! FRCD_REG: the fault recording registers (§10.4.14).
//!
//! A unit has CAP.NFR + 1 of them, 128 bits each, starting at CAP.FRO × 16.
//! The unit fills a free register (F clear) when it blocks a request, and
//! software reads it and writes 1 to F to free it again.

use super::bits::field;
use super::cap::{Cap, FaultRecordingOffset};
use crate::fault::FaultReason;
use crate::ids::SourceId;
use crate::mmio::Mmio;

/// The kind of request that faulted, from T2 (bit 92) and T1 (bit 126).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FaultType {
    /// T2 = 0, T1 = 0: a write request.
    Write,
    /// T2 = 0, T1 = 1: a read request.
    Read,
    /// T2 = 1, T1 = 0: a page request.
    PageRequest,
    /// T2 = 1, T1 = 1: an atomic operation.
    AtomicOp,
}

/// FRCD.AT (bits 125:124): the PCIe address type of the faulting request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum AddressType {
    /// 00b: an untranslated request.
    Untranslated,
    /// 01b: a translation request (ATS).
    TranslationRequest,
    /// 10b: a translated request.
    Translated,
    /// 11b: reserved.
    Reserved,
}

impl AddressType {
    /// Decodes the 2-bit field.
    pub const fn from_field(at: u8) -> Self {
        match at & 3 {
            0 => AddressType::Untranslated,
            1 => AddressType::TranslationRequest,
            2 => AddressType::Translated,
            _ => AddressType::Reserved,
        }
    }
}

/// The raw 128-bit content of one fault recording register, §10.4.14:
/// `lo` holds bits 63:0, `hi` bits 127:64.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Frcd {
    /// Bits 63:0: FI (bits 63:12).
    pub lo: u64,
    /// Bits 127:64: F, T1, AT, PV, FR, PP, EXE, PRIV, T2, SID.
    pub hi: u64,
}

impl Frcd {
    /// F (bit 127): the register holds a fault.
    pub const fn f(self) -> bool {
        self.hi >> 63 != 0
    }
    /// T1 (bit 126) and T2 (bit 92) decoded.
    pub const fn fault_type(self) -> FaultType {
        match ((self.hi >> 28) & 1 != 0, (self.hi >> 62) & 1 != 0) {
            (false, false) => FaultType::Write,
            (false, true) => FaultType::Read,
            (true, false) => FaultType::PageRequest,
            (true, true) => FaultType::AtomicOp,
        }
    }
    /// AT (bits 125:124).
    pub const fn address_type(self) -> AddressType {
        AddressType::from_field(field(self.hi, 60, 61) as u8)
    }
    /// PV (bits 123:104) when PP (bit 95) is set: the request's PASID.
    pub const fn pasid(self) -> Option<u32> {
        if (self.hi >> 31) & 1 != 0 { Some(field(self.hi, 40, 59) as u32) } else { None }
    }
    /// FR (bits 103:96): the raw fault reason code.
    pub const fn reason_code(self) -> u8 {
        field(self.hi, 32, 39) as u8
    }
    /// FR decoded; `None` for a reserved code.
    pub const fn reason(self) -> Option<FaultReason> {
        FaultReason::from_code(self.reason_code())
    }
    /// EXE (bit 94): execute permission was requested.
    pub const fn exe(self) -> bool {
        (self.hi >> 30) & 1 != 0
    }
    /// PRIV (bit 93): supervisor privilege was requested.
    pub const fn privileged(self) -> bool {
        (self.hi >> 29) & 1 != 0
    }
    /// SID (bits 79:64): the requester.
    pub const fn sid(self) -> SourceId {
        SourceId::from_raw(self.hi as u16)
    }
    /// FI (bits 63:12): the faulting page address of a DMA fault; for an
    /// interrupt-remapping fault, bits 63:48 hold the interrupt index.
    pub const fn fault_info(self) -> u64 {
        self.lo & !0xfff
    }
    /// The interrupt index of an interrupt-remapping fault (FI bits 63:48).
    pub const fn interrupt_index(self) -> u16 {
        (self.lo >> 48) as u16
    }
    /// Builds a record (the unit's side): F set, the given fields.
    pub const fn new(
        sid: SourceId,
        reason: FaultReason,
        kind: FaultType,
        fault_info: u64,
        pasid: Option<u32>,
    ) -> Self {
        let (t2, t1) = match kind {
            FaultType::Write => (0, 0),
            FaultType::Read => (0, 1),
            FaultType::PageRequest => (1, 0),
            FaultType::AtomicOp => (1, 1),
        };
        let pv = match pasid {
            Some(p) => (1u64 << 31) | ((p as u64 & 0xf_ffff) << 40),
            None => 0,
        };
        let hi =
            (1 << 63) | (t1 << 62) | ((reason as u64) << 32) | pv | (t2 << 28) | sid.raw() as u64;
        Self { lo: fault_info & !0xfff, hi }
    }
    /// The typed record at fault recording register `index`.
    pub const fn decode(self, index: u16) -> FaultRecord {
        FaultRecord {
            index,
            source: self.sid(),
            kind: self.fault_type(),
            address_type: self.address_type(),
            pasid: self.pasid(),
            reason_code: self.reason_code(),
            fault_info: self.fault_info(),
        }
    }
}

/// One recorded fault, decoded from a fault recording register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FaultRecord {
    /// Which fault recording register held it.
    pub index: u16,
    /// The requester.
    pub source: SourceId,
    /// The request type.
    pub kind: FaultType,
    /// The request's address type.
    pub address_type: AddressType,
    /// The request's PASID, if it carried one.
    pub pasid: Option<u32>,
    /// The raw fault reason; see [`reason`](Self::reason).
    pub reason_code: u8,
    /// FI: the faulting page address (low 12 bits zero) or, for interrupt
    /// faults, the interrupt index in bits 63:48.
    pub fault_info: u64,
}

impl FaultRecord {
    /// The fault reason, or `None` for a code the specification reserves.
    pub const fn reason(&self) -> Option<FaultReason> {
        FaultReason::from_code(self.reason_code)
    }
}

/// Where a unit's fault recording registers are: CAP.FRO and CAP.NFR.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FaultRecords {
    fro: FaultRecordingOffset,
    count: u16,
}

impl FaultRecords {
    /// The value written to the upper dword of a register (bits 127:96) to
    /// clear F: bit 31 of that dword.
    pub const F_CLEAR: u32 = 1 << 31;

    /// The fault recording registers of a unit with this CAP.
    pub const fn new(cap: Cap) -> Self {
        Self { fro: cap.fro(), count: cap.nfr().count() }
    }
    /// How many registers there are (1..=256).
    pub const fn count(self) -> u16 {
        self.count
    }
    /// The byte offset of register `index`, or `None` if `index` >= count.
    pub const fn offset(self, index: u16) -> Option<usize> {
        if index < self.count { Some(self.fro.record(index)) } else { None }
    }
    /// The register after `index`, wrapping to 0 after the last one.
    pub const fn next(self, index: u16) -> u16 {
        if index as u32 + 1 >= self.count as u32 { 0 } else { index + 1 }
    }
    /// Reads register `index`, or `None` if out of range.
    pub fn read<M: Mmio + ?Sized>(self, mmio: &M, index: u16) -> Option<Frcd> {
        let off = self.offset(index)?;
        Some(Frcd { lo: mmio.read64(off), hi: mmio.read64(off + 8) })
    }
    /// Clears F of register `index` (write 1 to bit 127 via its upper dword);
    /// returns `false` if `index` is out of range.
    pub fn clear<M: Mmio + ?Sized>(self, mmio: &mut M, index: u16) -> bool {
        match self.offset(index) {
            Some(off) => {
                mmio.write32(off + 12, Self::F_CLEAR);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::cap::FaultRecordCount;

    #[test]
    fn decode_qemu_record() {
        // QEMU vtd_record_frcd: hi = F | FR(5) << 32 | SID, lo = addr; a DMA
        // write by 00:03.0 to 0x1234_5678 blocked with reason 5.
        let r = Frcd { lo: 0x1234_5000, hi: 0x8000_0005_0000_0018 };
        assert!(r.f());
        assert_eq!(r.fault_type(), FaultType::Write);
        assert_eq!(r.reason(), Some(FaultReason::WriteNotPermitted));
        assert_eq!(r.sid(), SourceId::new(0, 3, 0).unwrap());
        assert_eq!(r.pasid(), None);
        assert_eq!(r.address_type(), AddressType::Untranslated);
        let rec = r.decode(2);
        assert_eq!(rec.index, 2);
        assert_eq!(rec.fault_info, 0x1234_5000);
        assert_eq!(rec.reason(), Some(FaultReason::WriteNotPermitted));
        // Linux: dma_frcd_type(hi dword) = (d >> 30) & 1 is T1 (bit 126):
        // a read of an unmapped page, reason 6.
        let rd = Frcd { lo: 0, hi: 0xc000_0006_0000_0018 };
        assert_eq!(rd.fault_type(), FaultType::Read);
    }

    #[test]
    fn encode_round_trip() {
        let sid = SourceId::new(2, 1, 3).unwrap();
        let r = Frcd::new(
            sid,
            FaultReason::ReadNotPermitted,
            FaultType::Read,
            0xdead_beef,
            Some(0x1_2345),
        );
        // PP = bit 95 (hi bit 31), PV = bits 123:104 (hi bits 59:40).
        assert_eq!(r.hi, 0xc123_4506_8000_020b);
        assert_eq!(r.lo, 0xdead_b000);
        assert_eq!(r.pasid(), Some(0x1_2345));
        let a = Frcd::new(sid, FaultReason::ReadNotPermitted, FaultType::AtomicOp, 0, None);
        assert_eq!(a.fault_type(), FaultType::AtomicOp);
        assert_eq!(Frcd { lo: 0, hi: u64::MAX }.reason(), None);
        assert_eq!(Frcd { lo: 0x0021_0000_0000_0000, hi: 0 }.interrupt_index(), 0x21);
    }

    #[test]
    fn offsets_wrap() {
        // QEMU: FRO = 0x22 (0x220), NFR = 0 (one register).
        let q = FaultRecords::new(Cap(0x00d2_008c_2226_0206));
        assert_eq!((q.count(), q.offset(0), q.offset(1)), (1, Some(0x220), None));
        assert_eq!(q.next(0), 0);
        let four = FaultRecords::new(
            Cap(0).with_fro(FaultRecordingOffset(0x40)).with_nfr(FaultRecordCount(3)),
        );
        assert_eq!(four.offset(3), Some(0x430));
        assert_eq!((four.next(2), four.next(3)), (3, 0));
        let all = FaultRecords::new(Cap(0).with_nfr(FaultRecordCount(255)));
        assert_eq!((all.count(), all.next(255)), (256, 0));
    }
}
