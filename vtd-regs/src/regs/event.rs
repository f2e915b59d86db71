//! The two interrupt-message register groups: fault events (FECTL, FEDATA,
//! FEADDR, FEUADDR; §10.4.10 to §10.4.13) and invalidation
//! completion events (IECTL, IEDATA, IEADDR, IEUADDR; §10.4.25 to
//! §10.4.28). Both groups have the same layout, four 32-bit registers in a
//! row, so one type, [`EventRegs`], serves both.

use super::bits::bit_fields;
use super::offset;
use crate::mmio::Mmio;

/// An event control register (FECTL or IECTL, 32-bit).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct EventControl(pub u32);

bit_fields!(EventControl: u32 {
    /// IM (bit 31): interrupt mask: no message is sent while set.
    31 => im / with_im;
    /// IP (bit 30, RO): interrupt pending: a message was held back by IM.
    30 => ip / with_ip;
});

/// The MSI message an event register group sends (§10.4.11 to
/// §10.4.13 and §10.4.26 to §10.4.28).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct EventMessage {
    /// The data register: ID in bits 15:0, EID (extended data, if
    /// ECAP.EIM) in bits 31:16.
    pub data: u32,
    /// The message address: bits 31:2 from the address register (bits 1:0
    /// are reserved and written as zero), bits 63:32 from the upper address
    /// register (used with x2APIC).
    pub address: u64,
}

/// One event register group, by base offset: the control register at `base`,
/// data at `base + 4`, address at `base + 8`, upper address at `base + 12`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EventRegs {
    base: usize,
}

impl EventRegs {
    /// The fault event registers, at FECTL (0x38).
    pub const FAULT: Self = Self { base: offset::FECTL };
    /// The invalidation completion event registers, at IECTL (0xA0).
    pub const INVALIDATION: Self = Self { base: offset::IECTL };

    /// Offset of the control register.
    pub const fn control_offset(self) -> usize {
        self.base
    }
    /// Offset of the data register.
    pub const fn data_offset(self) -> usize {
        self.base + 4
    }
    /// Offset of the address register.
    pub const fn address_offset(self) -> usize {
        self.base + 8
    }
    /// Offset of the upper address register.
    pub const fn upper_address_offset(self) -> usize {
        self.base + 12
    }
    /// Reads the control register.
    pub fn control<M: Mmio + ?Sized>(self, mmio: &M) -> EventControl {
        EventControl(mmio.read32(self.control_offset()))
    }
    /// Writes the control register (IP is read-only and ignored).
    pub fn set_control<M: Mmio + ?Sized>(self, mmio: &mut M, value: EventControl) {
        mmio.write32(self.control_offset(), value.0);
    }
    /// Reads the programmed message.
    pub fn message<M: Mmio + ?Sized>(self, mmio: &M) -> EventMessage {
        let lo = mmio.read32(self.address_offset()) as u64;
        let hi = mmio.read32(self.upper_address_offset()) as u64;
        EventMessage { data: mmio.read32(self.data_offset()), address: (hi << 32) | (lo & !3) }
    }
    /// Programs the message: data, address, upper address.
    pub fn set_message<M: Mmio + ?Sized>(self, mmio: &mut M, msg: EventMessage) {
        mmio.write32(self.data_offset(), msg.data);
        mmio.write32(self.address_offset(), msg.address as u32 & !3);
        mmio.write32(self.upper_address_offset(), (msg.address >> 32) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Page([u32; 64]);
    impl Mmio for Page {
        fn read32(&self, offset: usize) -> u32 {
            self.0[offset / 4]
        }
        fn write32(&mut self, offset: usize, value: u32) {
            self.0[offset / 4] = value;
        }
    }

    #[test]
    fn offsets() {
        let f = EventRegs::FAULT;
        assert_eq!(
            (f.control_offset(), f.data_offset(), f.address_offset(), f.upper_address_offset()),
            (offset::FECTL, offset::FEDATA, offset::FEADDR, offset::FEUADDR)
        );
        let i = EventRegs::INVALIDATION;
        assert_eq!(
            (i.control_offset(), i.data_offset(), i.address_offset(), i.upper_address_offset()),
            (offset::IECTL, offset::IEDATA, offset::IEADDR, offset::IEUADDR)
        );
    }

    #[test]
    fn control_bits_and_message() {
        // Linux: DMA_FECTL_IM = 1 << 31; QEMU: VTD_FECTL_IP = 1 << 30.
        assert_eq!(EventControl(0).with_im(true).0, 0x8000_0000);
        assert!(EventControl(0x4000_0000).ip());
        let mut p = Page([0; 64]);
        let msg = EventMessage { data: 0x41, address: 0x1_fee0_1003 };
        EventRegs::INVALIDATION.set_message(&mut p, msg);
        assert_eq!(p.0[offset::IEADDR / 4], 0xfee0_1000);
        assert_eq!(p.0[offset::IEUADDR / 4], 1);
        assert_eq!(
            EventRegs::INVALIDATION.message(&p),
            EventMessage { data: 0x41, address: 0x1_fee0_1000 }
        );
        EventRegs::FAULT.set_control(&mut p, EventControl(0).with_im(true));
        assert!(EventRegs::FAULT.control(&p).im());
        assert!(!EventRegs::INVALIDATION.control(&p).im());
    }
}
