//! A guest's RAM as the vIOMMU sees it: guest-physical ranges backed by
//! windows of host memory, as a PC lays out RAM below 4 GiB and, above the
//! PCI hole, from 4 GiB up.
//!
//! Every table pointer, queue address and status address the guest writes
//! is a guest-physical address; reading or writing it through
//! [`GuestMemory`] can never reach host memory outside the guest's windows:
//! an address outside the guest's RAM is a [`MemError::OutOfRange`], which
//! the walker and the queue engine turn into the VT-d fault or queue error
//! real hardware reports for an unreadable address (VT-d §7.1.3,
//! §6.5.2.10).

use vtd_regs::{MemError, PhysAddr, PhysMem};

/// Where RAM above the PCI hole starts in guest-physical space.
pub const HIGH_RAM_START: u64 = 1 << 32;

/// Which host memory backs which guest-physical addresses: `[0, low)` at
/// host `low_base`, and `[4 GiB, 4 GiB + high)` at host `high_base`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestLayout {
    low_base: PhysAddr,
    low: u64,
    high_base: PhysAddr,
    high: u64,
}

impl GuestLayout {
    /// `low` bytes of RAM below 4 GiB (at most 4 GiB) at host address
    /// `base`, none above.
    pub const fn new(base: PhysAddr, low: u64) -> Self {
        let low = if low > HIGH_RAM_START { HIGH_RAM_START } else { low };
        Self { low_base: base, low, high_base: PhysAddr::ZERO, high: 0 }
    }

    /// This layout with `high` bytes of RAM from guest-physical 4 GiB, at
    /// host address `base`.
    #[must_use]
    pub const fn with_high(mut self, base: PhysAddr, high: u64) -> Self {
        self.high_base = base;
        self.high = high;
        self
    }

    /// The host address of `[gpa, gpa + len)`, if it lies in one window.
    pub fn host_address(&self, gpa: PhysAddr, len: u64) -> Result<PhysAddr, MemError> {
        let err = MemError::OutOfRange { addr: gpa, len: len as usize };
        let g = gpa.as_u64();
        let end = g.checked_add(len).ok_or(err)?;
        let (base, off) = if end <= self.low {
            (self.low_base, g)
        } else if g >= HIGH_RAM_START && end - HIGH_RAM_START <= self.high {
            (self.high_base, g - HIGH_RAM_START)
        } else {
            return Err(err);
        };
        base.checked_add(off).ok_or(err)
    }
}

/// Guest-physical memory over host memory `M`, laid out by a
/// [`GuestLayout`].
#[derive(Clone, Copy, Debug)]
pub struct GuestMemory<M> {
    host: M,
    layout: GuestLayout,
}

impl<M: PhysMem> GuestMemory<M> {
    /// The guest RAM `layout` places in `host`.
    pub const fn new(host: M, layout: GuestLayout) -> Self {
        Self { host, layout }
    }

    /// The layout.
    pub const fn layout(&self) -> &GuestLayout {
        &self.layout
    }
}

impl<M: PhysMem> PhysMem for GuestMemory<M> {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        self.host.read_u64(self.layout.host_address(addr, 8)?)
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.host.write_u64(self.layout.host_address(addr, 8)?, value)
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.host.read_bytes(self.layout.host_address(addr, buf.len() as u64)?, buf)
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        self.host.write_bytes(self.layout.host_address(addr, data.len() as u64)?, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_emu::mem::HeapMemory;

    #[test]
    fn windows_are_bounded() {
        let host = HeapMemory::new(0x4000);
        let layout = GuestLayout::new(PhysAddr::new(0x1000), 0x1000)
            .with_high(PhysAddr::new(0x3000), 0x1000);
        let g = GuestMemory::new(&host, layout);
        g.write_u64(PhysAddr::new(0x8), 7).unwrap();
        assert_eq!(host.read_u64(PhysAddr::new(0x1008)), Ok(7));
        g.write_u64(PhysAddr::new(HIGH_RAM_START + 0x10), 9).unwrap();
        assert_eq!(host.read_u64(PhysAddr::new(0x3010)), Ok(9));
        assert!(g.read_u64(PhysAddr::new(0x1000)).is_err());
        assert!(g.read_u64(PhysAddr::new(0xffc)).is_err());
        assert!(g.read_u64(PhysAddr::new(HIGH_RAM_START + 0x1000)).is_err());
        assert!(g.read_u64(PhysAddr::new(HIGH_RAM_START - 8)).is_err());
        assert!(g.read_u64(PhysAddr::new(u64::MAX - 3)).is_err());
        assert!(g.write_bytes(PhysAddr::new(0xff0), &[0; 17]).is_err());
        assert_eq!(layout.host_address(PhysAddr::new(0x10), 8), Ok(PhysAddr::new(0x1010)));
    }
}
