//! The protected memory regions: PMEN_REG (§10.4.16) and the
//! base/limit registers of the low region (PLMBASE, PLMLIMIT; §10.4.17 and §10.4.18) and of the high region (PHMBASE, PHMLIMIT; §10.4.19 and §10.4.20).
//!
//! The base and limit registers hold an address whose low N bits are
//! reserved: N is implementation-specific, found by writing all ones and
//! reading back. The unit decodes the reserved bits as zeros in a base and as
//! ones in a limit, so the region is `base ..= limit | (2^(N+1) - 1)`.

use super::bits::bit_fields;
use crate::addr::PhysAddr;
use crate::mmio::register;

/// Protected memory enable register (32-bit, offset 0x64), §10.4.16.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Pmen(pub u32);
register!(Pmen, super::offset::PMEN, u32, ReadWrite);

bit_fields!(Pmen: u32 {
    /// EPM (bit 31): enable the protected memory regions.
    31 => epm / with_epm;
    /// PRS (bit 0, RO): the protected regions are in effect.
    0 => prs / with_prs;
});

macro_rules! region_bound {
    ($(#[$doc:meta])* $ty:ident: $raw:ty, $offset:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
        #[repr(transparent)]
        pub struct $ty(pub $raw);
        register!($ty, super::offset::$offset, $raw, ReadWrite);

        impl $ty {
            /// The address as programmed (reserved low bits as read).
            pub const fn address(self) -> PhysAddr {
                PhysAddr::new(self.0 as u64)
            }
            /// The value for `addr`, truncated to the register's width.
            pub const fn new(addr: PhysAddr) -> Self {
                Self(addr.as_u64() as $raw)
            }
        }
    };
}

region_bound!(
    /// Protected low-memory base register (32-bit, offset 0x68), §10.4.17.
    Plmbase: u32, PLMBASE
);
region_bound!(
    /// Protected low-memory limit register (32-bit, offset 0x6C), §10.4.18.
    Plmlimit: u32, PLMLIMIT
);
region_bound!(
    /// Protected high-memory base register (64-bit, offset 0x70), §10.4.19.
    Phmbase: u64, PHMBASE
);
region_bound!(
    /// Protected high-memory limit register (64-bit, offset 0x78), §10.4.20.
    Phmlimit: u64, PHMLIMIT
);

/// The number of reserved low bits (N + 1, for reserved bits N:0) of a
/// base/limit register, from the value read back after writing all ones
/// (§10.4.17). `None` if nothing reads back (no such region).
pub const fn reserved_low_bits(read_back: u64) -> Option<u32> {
    if read_back == 0 { None } else { Some(read_back.trailing_zeros()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::Register;

    #[test]
    fn encodings() {
        // Linux: DMA_PMEN_EPM = 1 << 31, DMA_PMEN_PRS = 1 << 0.
        assert_eq!(Pmen(0).with_epm(true).0, 0x8000_0000);
        assert!(Pmen(1).prs());
        assert_eq!(Plmbase::new(PhysAddr::new(0x1_0010_0000)).0, 0x0010_0000);
        assert_eq!(
            Phmlimit::new(PhysAddr::new(0x1_0010_0000)).address(),
            PhysAddr::new(0x1_0010_0000)
        );
        assert_eq!(<Plmlimit as Register>::OFFSET, 0x6c);
        assert_eq!(<Phmbase as Register>::OFFSET, 0x70);
        // A datasheet PLMBASE implements bits 31:20: all ones reads back 0xfff0_0000.
        assert_eq!(reserved_low_bits(0xfff0_0000), Some(20));
        assert_eq!(reserved_low_bits(0), None);
    }
}
