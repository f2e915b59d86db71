//! RTADDR_REG: where the root table is and how it is laid out (§10.4.6).

use super::bits::{field, with_field};
use crate::addr::PhysAddr;
use crate::mmio::register;

/// RTADDR.TTM (bits 11:10): the translation table mode, i.e. the format of
/// the root table (§10.4.6).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum TranslationTableMode {
    /// 00b: legacy mode, root and context entries of §9.1/9.3.
    Legacy,
    /// 01b: scalable mode, scalable-mode root and context entries (needs ECAP.SMTS).
    Scalable,
    /// 11b: abort-DMA mode: every request is blocked (needs ECAP.ADMS).
    AbortDma,
}

impl TranslationTableMode {
    /// The 2-bit encoding.
    pub const fn field(self) -> u8 {
        match self {
            TranslationTableMode::Legacy => 0,
            TranslationTableMode::Scalable => 1,
            TranslationTableMode::AbortDma => 3,
        }
    }
    /// Decodes the 2-bit field; 10b is reserved and gives `None`.
    pub const fn from_field(ttm: u8) -> Option<Self> {
        match ttm & 3 {
            0 => Some(TranslationTableMode::Legacy),
            1 => Some(TranslationTableMode::Scalable),
            3 => Some(TranslationTableMode::AbortDma),
            _ => None,
        }
    }
}

/// Root table address register (64-bit, offset 0x20), §10.4.6: RTA
/// (bits 63:12), the 4 KiB-aligned root table, and TTM (bits 11:10).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Rtaddr(pub u64);
register!(Rtaddr, super::offset::RTADDR, u64, ReadWrite);

impl Rtaddr {
    /// The value pointing at `table` (its low 12 bits are dropped) in `mode`.
    pub const fn new(table: PhysAddr, mode: TranslationTableMode) -> Self {
        Self(0).with_table(table).with_mode(mode)
    }
    /// RTA, bits 63:12: the root table's physical address.
    pub const fn table(self) -> PhysAddr {
        PhysAddr::new(self.0 & !0xfff)
    }
    /// This value with RTA replaced (the address's low 12 bits are dropped).
    #[must_use]
    pub const fn with_table(self, table: PhysAddr) -> Self {
        Self((self.0 & 0xfff) | (table.as_u64() & !0xfff))
    }
    /// The raw TTM field, bits 11:10.
    pub const fn ttm(self) -> u8 {
        field(self.0, 10, 11) as u8
    }
    /// TTM decoded; `None` for the reserved value (which the unit reports as
    /// fault reason 31h when translation is enabled).
    pub const fn mode(self) -> Option<TranslationTableMode> {
        TranslationTableMode::from_field(self.ttm())
    }
    /// This value with TTM replaced.
    #[must_use]
    pub const fn with_mode(self, mode: TranslationTableMode) -> Self {
        Self(with_field(self.0, 10, 11, mode.field() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        // QEMU/Linux: VTD_RTADDR_SMT / DMA_RTADDR_SMT = 1 << 10.
        let r = Rtaddr::new(PhysAddr::new(0x1234_5000), TranslationTableMode::Scalable);
        assert_eq!(r.0, 0x1234_5400);
        assert_eq!(r.table(), PhysAddr::new(0x1234_5000));
        assert_eq!(r.mode(), Some(TranslationTableMode::Scalable));
        assert_eq!(Rtaddr(0xc00).mode(), Some(TranslationTableMode::AbortDma));
        assert_eq!(Rtaddr(0x800).mode(), None);
        assert_eq!(Rtaddr(0x800).ttm(), 2);
        let legacy = Rtaddr::new(PhysAddr::new(0xabc_dfff), TranslationTableMode::Legacy);
        assert_eq!(legacy.0, 0xabc_d000);
        // Reserved bits 9:0 are kept as read.
        assert_eq!(Rtaddr(0x3ff).with_table(PhysAddr::new(0x2000)).0, 0x23ff);
    }
}
