//! FSTS_REG: fault status (§10.4.9).

use super::bits::{bit_fields, field};
use crate::mmio::register;

/// Fault status register (32-bit, offset 0x34), §10.4.9.
///
/// The error bits are write-1-to-clear: writing back a value clears the bits
/// it has set. PPF and FRI are read-only and ignored on write.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Fsts(pub u32);
register!(Fsts, super::offset::FSTS, u32, ReadWrite);

bit_fields!(Fsts: u32 {
    /// PFO (bit 0, RW1C): primary fault overflow: a fault was dropped because
    /// every fault recording register was full.
    0 => pfo / with_pfo;
    /// PPF (bit 1, RO): primary pending fault: some fault recording register
    /// has F set.
    1 => ppf / with_ppf;
    /// AFO (bit 2, RW1C): advanced fault overflow.
    2 => afo / with_afo;
    /// APF (bit 3, RW1C): advanced pending fault.
    3 => apf / with_apf;
    /// IQE (bit 4, RW1C): invalidation queue error; IQERCD.IQEI says why.
    4 => iqe / with_iqe;
    /// ICE (bit 5, RW1C): invalidation completion error (device-TLB);
    /// IQERCD.ICESID names the device.
    5 => ice / with_ice;
    /// ITE (bit 6, RW1C): invalidation time-out error (device-TLB);
    /// IQERCD.ITESID names the device.
    6 => ite / with_ite;
});

impl Fsts {
    /// The write-1-to-clear bits: PFO, AFO, APF, IQE, ICE, ITE.
    pub const W1C: u32 = 0x7d;
    /// The invalidation-queue error bits: IQE, ICE, ITE.
    pub const QUEUE_ERRORS: u32 = 0x70;

    /// FRI (bits 15:8): the index of the first fault recording register
    /// holding a pending fault, valid while PPF is set.
    pub const fn fri(self) -> u8 {
        field(self.0 as u64, 8, 15) as u8
    }
    /// This value with FRI replaced (the unit's side).
    #[must_use]
    pub const fn with_fri(self, fri: u8) -> Self {
        Self((self.0 & !0xff00) | (fri as u32) << 8)
    }
    /// Whether any invalidation-queue error (IQE, ICE, ITE) is set.
    pub const fn queue_error(self) -> bool {
        self.0 & Self::QUEUE_ERRORS != 0
    }
    /// The value to write to clear exactly the write-1-to-clear bits in
    /// `mask` that this value has set.
    pub const fn clearing(self, mask: u32) -> Self {
        Self(self.0 & mask & Self::W1C)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Linux: DMA_FSTS_PFO 1 << 0, PPF 1 << 1, IQE 1 << 4, ICE 1 << 5,
        // ITE 1 << 6, dma_fsts_fault_record_index(s) = (s >> 8) & 0xff.
        let s = Fsts(0x0000_0312);
        assert!(s.ppf() && s.iqe() && !s.pfo() && !s.ice());
        assert_eq!(s.fri(), 3);
        assert!(s.queue_error());
        assert_eq!(Fsts(0).with_ite(true).with_ice(true).with_iqe(true).0, Fsts::QUEUE_ERRORS);
        assert_eq!(Fsts(0).with_fri(0xab).with_pfo(true).0, 0xab01);
        // Clearing never writes the read-only PPF/FRI bits.
        assert_eq!(Fsts(0xffff_ffff).clearing(u32::MAX).0, 0x7d);
        assert_eq!(s.clearing(Fsts::QUEUE_ERRORS).0, 0x10);
    }
}
