//! [`QtestMmio`]: the VT-d register page of QEMU's `intel-iommu`, reached
//! over qtest, as a [`vtd_regs::Mmio`].

use vtd_regs::regs::offset::REGISTER_PAGE_SIZE;
use vtd_regs::{Mmio, PhysAddr};

use crate::error::{Error, Result};
use crate::qemu::{Qemu, VTD_BASE};

/// What a failed register read returns, as a PCI master abort would.
const ALL_ONES: u64 = u64::MAX;

/// The register page of the remapping unit at [`VTD_BASE`].
///
/// QEMU serves only 4- and 8-byte accesses there, so 64-bit registers are
/// accessed with `readq`/`writeq` in one piece. [`Mmio`] cannot return
/// errors: a failed access (QEMU gone, offset outside the page) reads as all
/// ones and is recorded for [`Qemu::check`].
#[derive(Clone, Copy)]
pub struct QtestMmio<'q> {
    qemu: &'q Qemu,
}

impl<'q> QtestMmio<'q> {
    /// The register page of `qemu`'s `intel-iommu`.
    pub fn new(qemu: &'q Qemu) -> Self {
        QtestMmio { qemu }
    }

    /// The physical address of register `offset`, if an access of `width`
    /// bytes there is aligned and inside the page.
    fn addr(offset: usize, width: usize) -> Result<PhysAddr> {
        if !offset.is_multiple_of(width) || offset + width > REGISTER_PAGE_SIZE {
            return Err(Error::OutOfRange {
                addr: PhysAddr::new(VTD_BASE.as_u64() + offset as u64),
                len: width,
            });
        }
        Ok(PhysAddr::new(VTD_BASE.as_u64() + offset as u64))
    }

    fn get<T>(&self, r: Result<T>, failed: T) -> T {
        r.unwrap_or_else(|e| {
            self.qemu.note(e);
            failed
        })
    }
}

impl Mmio for QtestMmio<'_> {
    fn read32(&self, offset: usize) -> u32 {
        let r = Self::addr(offset, 4).and_then(|a| self.qemu.qtest().readl(a));
        self.get(r, ALL_ONES as u32)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        let r = Self::addr(offset, 4).and_then(|a| self.qemu.qtest().writel(a, value));
        self.get(r, ());
    }

    fn read64(&self, offset: usize) -> u64 {
        let r = Self::addr(offset, 8).and_then(|a| self.qemu.qtest().readq(a));
        self.get(r, ALL_ONES)
    }

    fn write64(&mut self, offset: usize, value: u64) {
        let r = Self::addr(offset, 8).and_then(|a| self.qemu.qtest().writeq(a, value));
        self.get(r, ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_addresses_are_checked() {
        assert_eq!(QtestMmio::addr(0x08, 8), Ok(PhysAddr::new(0xFED9_0008)));
        assert_eq!(QtestMmio::addr(0xFFC, 4), Ok(PhysAddr::new(0xFED9_0FFC)));
        assert!(QtestMmio::addr(0xFFC, 8).is_err());
        assert!(QtestMmio::addr(0x1000, 4).is_err());
        assert!(QtestMmio::addr(0x1C, 8).is_err());
    }
}
