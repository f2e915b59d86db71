//! GCMD_REG and GSTS_REG: the global command register and the status register
//! that reports each command's effect, bit for bit (§10.4.4 and
//! §10.4.5).
//!
//! Each command bit of GCMD has its status bit at the same position in GSTS, so
//! one flag set, [`GlobalBits`], names both. Some bits are persistent enables
//! (TE, EAFL, QIE, IRE, CFI): the unit keeps them as long as they are written
//! as 1. The others (SRTP, SFL, WBF, SIRTP) are one-shot commands: writing 1
//! starts an operation, and software must not write them again when it
//! changes another bit.

use crate::mmio::register;

bitflags::bitflags! {
    /// The command/status bits shared by GCMD (§10.4.4) and GSTS
    /// (§10.4.5). Bits 22:0 are reserved.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct GlobalBits: u32 {
        /// Bit 31, TE/TES: translation enable / translation enabled.
        const TE = 1 << 31;
        /// Bit 30, SRTP/RTPS: set root table pointer / root table pointer set.
        const SRTP = 1 << 30;
        /// Bit 29, SFL/FLS: set fault log / fault log pointer set (deprecated).
        const SFL = 1 << 29;
        /// Bit 28, EAFL/AFLS: enable advanced fault logging / enabled.
        const EAFL = 1 << 28;
        /// Bit 27, WBF/WBFS: write buffer flush / flush still in progress.
        const WBF = 1 << 27;
        /// Bit 26, QIE/QIES: queued invalidation enable / enabled.
        const QIE = 1 << 26;
        /// Bit 25, IRE/IRES: interrupt remapping enable / enabled.
        const IRE = 1 << 25;
        /// Bit 24, SIRTP/IRTPS: set interrupt remap table pointer / set.
        const SIRTP = 1 << 24;
        /// Bit 23, CFI/CFIS: compatibility format interrupts allowed.
        const CFI = 1 << 23;
    }
}

impl GlobalBits {
    /// The one-shot command bits. Writing one starts an operation; a read-
    /// modify-write of GCMD from GSTS must clear them (§10.4.4).
    pub const ONE_SHOT: Self = Self::SRTP.union(Self::SFL).union(Self::WBF).union(Self::SIRTP);

    /// The value to write to GCMD to issue `command`, given the current GSTS:
    /// keep the persistent enables and reserved bits as read, drop the
    /// one-shot status bits, then set (or, for an enable, clear) `command`.
    pub const fn command(status: Gsts, command: Self, on: bool) -> Gcmd {
        Gcmd(status.0 & !Self::ONE_SHOT.bits()).with(command, on)
    }
}

/// Global command register (write-only, 32-bit, offset 0x18), §10.4.4.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Gcmd(pub u32);
register!(Gcmd, super::offset::GCMD, u32, WriteOnly);

/// Global status register (read-only, 32-bit, offset 0x1C), §10.4.5.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Gsts(pub u32);
register!(Gsts, super::offset::GSTS, u32, ReadOnly);

macro_rules! global_register {
    ($ty:ident) => {
        impl $ty {
            /// The value holding exactly `bits` (reserved bits zero).
            pub const fn from_bits(bits: GlobalBits) -> Self {
                Self(bits.bits())
            }
            /// The defined bits of the value (reserved bits dropped).
            pub const fn bits(self) -> GlobalBits {
                GlobalBits::from_bits_truncate(self.0)
            }
            /// Whether every bit of `bits` is set.
            pub const fn contains(self, bits: GlobalBits) -> bool {
                self.0 & bits.bits() == bits.bits()
            }
            /// This value with `bits` set or cleared; reserved bits are kept.
            #[must_use]
            pub const fn with(self, bits: GlobalBits, on: bool) -> Self {
                Self(if on { self.0 | bits.bits() } else { self.0 & !bits.bits() })
            }
        }
    };
}
global_register!(Gcmd);
global_register!(Gsts);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_positions() {
        // Linux intel/iommu.h: DMA_GCMD_TE (1 << 31), SRTP (1 << 30),
        // QIE (1 << 26), IRE (1 << 25), SIRTP (1 << 24), CFI (1 << 23).
        assert_eq!(GlobalBits::TE.bits(), 0x8000_0000);
        assert_eq!(GlobalBits::SRTP.bits(), 0x4000_0000);
        assert_eq!(GlobalBits::WBF.bits(), 0x0800_0000);
        assert_eq!(GlobalBits::QIE.bits(), 0x0400_0000);
        assert_eq!(GlobalBits::IRE.bits(), 0x0200_0000);
        assert_eq!(GlobalBits::SIRTP.bits(), 0x0100_0000);
        assert_eq!(GlobalBits::CFI.bits(), 0x0080_0000);
        assert_eq!(GlobalBits::all().bits(), 0xff80_0000);
    }

    #[test]
    fn command_keeps_persistent_and_drops_one_shot() {
        // Linux masks GSTS with 0x96ffffff before setting a command bit: the
        // one-shot bits 30, 29, 27 and 24 are dropped.
        assert_eq!(!GlobalBits::ONE_SHOT.bits(), 0x96ff_ffff);
        // TE, RTPS, QIES and IRTPS set; enabling IRE.
        let gsts = Gsts(0xc500_0000);
        let cmd = GlobalBits::command(gsts, GlobalBits::IRE, true);
        assert_eq!(cmd, Gcmd(0x8600_0000));
        assert!(cmd.contains(GlobalBits::TE | GlobalBits::QIE | GlobalBits::IRE));
        // Disabling TE from the same status.
        assert_eq!(GlobalBits::command(gsts, GlobalBits::TE, false), Gcmd(0x0400_0000));
        // Reserved bits as read are kept.
        assert_eq!(GlobalBits::command(Gsts(0x1), GlobalBits::SRTP, true), Gcmd(0x4000_0001));
    }

    #[test]
    fn accessors() {
        let s = Gsts::from_bits(GlobalBits::TE).with(GlobalBits::QIE, true);
        assert_eq!(s.0, 0x8400_0000);
        assert_eq!(s.bits(), GlobalBits::TE | GlobalBits::QIE);
        assert!(!s.with(GlobalBits::TE, false).contains(GlobalBits::TE));
        assert_eq!(Gsts(0xffff_ffff).bits(), GlobalBits::all());
    }
}
