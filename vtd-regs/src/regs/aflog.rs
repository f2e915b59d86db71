//! AFLOG_REG: the advanced fault log (§10.4.15).

use super::bits::{field, with_field};
use crate::addr::PhysAddr;
use crate::mmio::register;

/// Advanced fault log register (64-bit, offset 0x58), §10.4.15: FLA
/// (bits 63:12), the 4 KiB-aligned log, and FLS (bits 11:9), its size.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Aflog(pub u64);
register!(Aflog, super::offset::AFLOG, u64, ReadWrite);

impl Aflog {
    /// The value for a log at `log` of 2^`size_order` pages.
    pub const fn new(log: PhysAddr, size_order: u8) -> Self {
        Self(0).with_log(log).with_fls(size_order)
    }
    /// FLA, bits 63:12: the log's physical address.
    pub const fn log(self) -> PhysAddr {
        PhysAddr::new(self.0 & !0xfff)
    }
    /// This value with FLA replaced (the address's low 12 bits are dropped).
    #[must_use]
    pub const fn with_log(self, log: PhysAddr) -> Self {
        Self((self.0 & 0xfff) | (log.as_u64() & !0xfff))
    }
    /// FLS, bits 11:9: the log holds 2^FLS 4 KiB pages.
    pub const fn fls(self) -> u8 {
        field(self.0, 9, 11) as u8
    }
    /// This value with FLS replaced.
    #[must_use]
    pub const fn with_fls(self, order: u8) -> Self {
        Self(with_field(self.0, 9, 11, order as u64))
    }
    /// The log size in bytes: 2^FLS × 4 KiB.
    pub const fn size_bytes(self) -> u64 {
        4096u64 << self.fls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let a = Aflog::new(PhysAddr::new(0x8000_0000), 3);
        assert_eq!(a.0, 0x8000_0600);
        assert_eq!(a.log(), PhysAddr::new(0x8000_0000));
        assert_eq!(a.size_bytes(), 32 * 1024);
        assert_eq!(Aflog(u64::MAX).fls(), 7);
        assert_eq!(Aflog(0x1ff).with_fls(1).0, 0x3ff);
    }
}
