//! IRTA_REG: the interrupt remapping table (§10.4.30).

use super::bits::{bit_fields, field, with_field};
use crate::addr::PhysAddr;
use crate::mmio::register;

/// Interrupt remapping table address register (64-bit, offset 0xB8),
/// §10.4.30: IRTA (bits 63:12), EIME (bit 11) and S (bits 3:0), the
/// table holding 2^(S+1) 16-byte entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Irta(pub u64);
register!(Irta, super::offset::IRTA, u64, ReadWrite);

bit_fields!(Irta: u64 {
    /// EIME (bit 11): extended interrupt mode (x2APIC, 32-bit destination ids).
    11 => eime / with_eime;
});

impl Irta {
    /// The value for a table at `table` of 2^(`size` + 1) entries.
    pub const fn new(table: PhysAddr, size: u8, eime: bool) -> Self {
        Self(0).with_table(table).with_size(size).with_eime(eime)
    }
    /// IRTA, bits 63:12: the table's physical address.
    pub const fn table(self) -> PhysAddr {
        PhysAddr::new(self.0 & !0xfff)
    }
    /// This value with IRTA replaced (the address's low 12 bits are dropped).
    #[must_use]
    pub const fn with_table(self, table: PhysAddr) -> Self {
        Self((self.0 & 0xfff) | (table.as_u64() & !0xfff))
    }
    /// S, bits 3:0.
    pub const fn size(self) -> u8 {
        field(self.0, 0, 3) as u8
    }
    /// This value with S replaced.
    #[must_use]
    pub const fn with_size(self, s: u8) -> Self {
        Self(with_field(self.0, 0, 3, s as u64))
    }
    /// The number of entries, 2^(S+1) (2 to 65536).
    pub const fn entries(self) -> u32 {
        2 << self.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        // Linux programs a 65536-entry table: S = 15 (INTR_REMAP_TABLE_REG_SIZE 0xf),
        // with IR_X2APIC_MODE = 1 << 11 in x2APIC mode.
        let r = Irta::new(PhysAddr::new(0x7654_3000), 15, true);
        assert_eq!(r.0, 0x7654_380f);
        assert_eq!(r.entries(), 65536);
        assert!(r.eime());
        assert_eq!(r.table(), PhysAddr::new(0x7654_3000));
        assert_eq!(Irta(0).entries(), 2);
        // Reserved bits 10:4 kept as read.
        assert_eq!(Irta(0x7f0).with_size(1).0, 0x7f1);
    }
}
