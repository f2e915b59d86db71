//! VER_REG: the architecture version the unit implements (§10.4.1).

use crate::mmio::register;

/// Version register: major (bits 7:4) and minor (bits 3:0) architecture version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct Ver(pub u32);
register!(Ver, super::offset::VER, u32, ReadOnly);

impl Ver {
    /// Builds the value for `major.minor` (each 0..=15).
    pub const fn new(major: u8, minor: u8) -> Self {
        Self((((major & 0xf) as u32) << 4) | (minor & 0xf) as u32)
    }
    /// Major version number (bits 7:4).
    pub const fn major(self) -> u8 {
        ((self.0 >> 4) & 0xf) as u8
    }
    /// Minor version number (bits 3:0).
    pub const fn minor(self) -> u8 {
        (self.0 & 0xf) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_version() {
        // QEMU 7.2 intel-iommu reports VER = 0x10: architecture version 1.0.
        let v = Ver(0x10);
        assert_eq!((v.major(), v.minor()), (1, 0));
        assert_eq!(Ver::new(1, 0), v);
    }
}
