//! The posted-interrupt descriptor (§9.12): 64 bytes, 64-byte aligned,
//! that a posted-format IRTE (§9.11) points at. The unit sets the virtual
//! vector's bit in PIR, then, unless a notification is outstanding (ON) or
//! suppressed (SN, for non-urgent interrupts), sets ON and sends the
//! notification vector NV to the CPU NDST (§5.2.3).
//!
//! Bits: PIR 255:0, ON 256, SN 257, reserved 271:258, NV 279:272, reserved
//! 287:280, NDST 319:288 (xAPIC mode: the APIC id in 303:296), reserved
//! 511:320. The layout of Linux's `struct pi_desc`
//! (arch/x86/include/asm/posted_intr.h).

use zerocopy::byteorder::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::delivery::InterruptMode;
use crate::regs::bits::field;

/// A posted-interrupt descriptor.
#[derive(
    Clone, Copy, PartialEq, Eq, Default, Debug, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(64))]
pub struct PostedInterruptDescriptor {
    /// PIR: one pending bit per vector, vector v in bit v % 64 of word v / 64.
    pir: [U64; 4],
    /// ON, SN, NV and NDST.
    control: U64,
    reserved: [U64; 3],
}

static_assertions::const_assert_eq!(core::mem::size_of::<PostedInterruptDescriptor>(), 64);
static_assertions::const_assert_eq!(core::mem::align_of::<PostedInterruptDescriptor>(), 64);

impl PostedInterruptDescriptor {
    /// Bytes of a descriptor (and its alignment).
    pub const SIZE: u64 = 64;

    /// A descriptor with nothing pending, notifying `nv` to `ndst` in
    /// `mode`'s destination form (xAPIC: the 8-bit id in NDST bits 15:8).
    pub const fn new(nv: u8, ndst: u32, mode: InterruptMode) -> Self {
        let dst = match mode {
            InterruptMode::XApic => (ndst & 0xff) << 8,
            InterruptMode::X2Apic => ndst,
        };
        let zero = U64::new(0);
        Self {
            pir: [zero; 4],
            control: U64::new((nv as u64) << 16 | (dst as u64) << 32),
            reserved: [zero; 3],
        }
    }

    /// Whether `vector` is pending in PIR.
    pub const fn pending(&self, vector: u8) -> bool {
        self.pir[(vector / 64) as usize].get() >> (vector % 64) & 1 != 0
    }
    /// ON (bit 256): a notification is outstanding.
    pub const fn on(&self) -> bool {
        self.control.get() & 1 != 0
    }
    /// SN (bit 257): non-urgent notifications are suppressed.
    pub const fn sn(&self) -> bool {
        self.control.get() & 2 != 0
    }
    /// NV (bits 279:272): the notification vector.
    pub const fn nv(&self) -> u8 {
        field(self.control.get(), 16, 23) as u8
    }
    /// NDST (bits 319:288) in `mode`'s form: the notification destination.
    pub const fn ndst(&self, mode: InterruptMode) -> u32 {
        let d = field(self.control.get(), 32, 63) as u32;
        match mode {
            InterruptMode::XApic => (d >> 8) & 0xff,
            InterruptMode::X2Apic => d,
        }
    }
    /// This descriptor with SN set or cleared.
    #[must_use]
    pub const fn with_sn(mut self, sn: bool) -> Self {
        let c = self.control.get();
        self.control = U64::new(if sn { c | 2 } else { c & !2 });
        self
    }

    /// Posts `vector` as the unit does (§5.2.3): sets its PIR bit; if ON is
    /// clear and SN is clear (or the interrupt is `urgent`), sets ON and
    /// returns `true`: the notification NV must be sent to NDST.
    pub fn post(&mut self, vector: u8, urgent: bool) -> bool {
        let w = &mut self.pir[usize::from(vector / 64)];
        *w = U64::new(w.get() | 1 << (vector % 64));
        if self.on() || (self.sn() && !urgent) {
            return false;
        }
        self.control = U64::new(self.control.get() | 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn known_answers() {
        // Linux's pi_desc: pir[8] (u32) then control: on bit 0, sn bit 1,
        // nv in bits 23:16, ndst in 63:32; in xAPIC mode KVM writes
        // ndst = (apic_id << 8) & 0xff00.
        let d = PostedInterruptDescriptor::new(0xf2, 3, InterruptMode::XApic);
        assert_eq!(&d.as_bytes()[32..40], &0x0000_0300_00f2_0000u64.to_le_bytes());
        assert_eq!((d.nv(), d.ndst(InterruptMode::XApic)), (0xf2, 3));
        let x2 = PostedInterruptDescriptor::new(0xf2, 0x1_0003, InterruptMode::X2Apic);
        assert_eq!(x2.ndst(InterruptMode::X2Apic), 0x1_0003);

        let mut d = d;
        assert!(d.post(0x41, false));
        assert!(d.on() && d.pending(0x41) && !d.pending(0x40));
        // Byte 8, bit 1: vector 0x41 is bit 65 of PIR.
        assert_eq!(d.as_bytes()[8], 2);
        assert!(!d.post(0xff, false), "ON already set");
        assert_eq!(d.as_bytes()[31], 0x80);
        let mut s = PostedInterruptDescriptor::new(1, 0, InterruptMode::X2Apic).with_sn(true);
        assert!(!s.post(7, false) && s.pending(7) && !s.on());
        assert!(s.post(8, true), "urgent ignores SN");
    }
}
