//! [`QtestMem`]: guest RAM, reached over qtest, as a [`vtd_regs::PhysMem`].

use vtd_regs::{MemError, PhysAddr, PhysMem};

use crate::error::Error;
use crate::qemu::{Qemu, RAM_SIZE};

/// Guest RAM `[0, RAM_SIZE)` of a running QEMU, the memory the tables and
/// DMA buffers live in. Accesses go through the CPU's view, not the IOMMU.
///
/// An access beyond RAM fails with [`MemError::OutOfRange`] without reaching
/// QEMU; a protocol failure also reads as `OutOfRange` (the trait has no
/// other way to say it) and is recorded for [`Qemu::check`].
#[derive(Clone, Copy)]
pub struct QtestMem<'q> {
    qemu: &'q Qemu,
}

impl<'q> QtestMem<'q> {
    /// The RAM of `qemu`.
    pub fn new(qemu: &'q Qemu) -> Self {
        QtestMem { qemu }
    }

    /// Checks that `[addr, addr + len)` is RAM and, for word accesses, that
    /// `addr` is aligned to `align`.
    fn check(addr: PhysAddr, len: usize, align: u64) -> Result<(), MemError> {
        if !addr.is_aligned(align) {
            return Err(MemError::Misaligned { addr });
        }
        match addr.as_u64().checked_add(len as u64) {
            Some(end) if end <= RAM_SIZE => Ok(()),
            _ => Err(MemError::OutOfRange { addr, len }),
        }
    }

    /// Passes a protocol result on as a [`MemError`], recording the cause.
    fn relay<T>(&self, r: Result<T, Error>, addr: PhysAddr, len: usize) -> Result<T, MemError> {
        r.map_err(|e| {
            self.qemu.note(e);
            MemError::OutOfRange { addr, len }
        })
    }
}

impl PhysMem for QtestMem<'_> {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        Self::check(addr, 8, 8)?;
        self.relay(self.qemu.qtest().readq(addr), addr, 8)
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        Self::check(addr, 8, 8)?;
        self.relay(self.qemu.qtest().writeq(addr, value), addr, 8)
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        Self::check(addr, buf.len(), 1)?;
        self.relay(self.qemu.qtest().read(addr, buf), addr, buf.len())
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        Self::check(addr, data.len(), 1)?;
        self.relay(self.qemu.qtest().write(addr, data), addr, data.len())
    }

    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        Self::check(addr, 4, 4)?;
        self.relay(self.qemu.qtest().readl(addr), addr, 4)
    }

    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        Self::check(addr, 4, 4)?;
        self.relay(self.qemu.qtest().writel(addr, value), addr, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_alignment() {
        assert_eq!(QtestMem::check(PhysAddr::new(0x1000), 8, 8), Ok(()));
        assert_eq!(QtestMem::check(PhysAddr::new(RAM_SIZE - 8), 8, 8), Ok(()));
        assert_eq!(
            QtestMem::check(PhysAddr::new(RAM_SIZE - 4), 8, 4),
            Err(MemError::OutOfRange { addr: PhysAddr::new(RAM_SIZE - 4), len: 8 })
        );
        assert_eq!(
            QtestMem::check(PhysAddr::new(0x1004), 8, 8),
            Err(MemError::Misaligned { addr: PhysAddr::new(0x1004) })
        );
        assert!(QtestMem::check(PhysAddr::new(u64::MAX), 2, 1).is_err());
    }
}
