//! [`Edu`]: QEMU's educational PCI device (`edu`, 1234:11e8) as a DMA engine:
//! it copies between its 4 KiB buffer and any device address, and so through
//! the IOMMU.
//!
//! Its registers (BAR0, 1 MiB): 0x00 identification, 0x60 raise interrupt,
//! 0x64 acknowledge interrupt, 0x80 DMA source, 0x88
//! DMA destination, 0x90 count, 0x98 command (bit 0 run, bit 1 direction:
//! set = buffer to memory). The buffer is device address 0x40000..0x41000
//! (see [`EDU_BUFFER_SIZE`] for its usable part); it is not visible over
//! MMIO. A transfer completes when its 100 ms virtual
//! timer fires, at once under `-icount sleep=off`; a transfer the IOMMU
//! blocks completes too, without moving data.

use std::time::{Duration, Instant};

use vtd_regs::irq::MsiMessage;
use vtd_regs::{Iova, PhysAddr, SourceId};

use crate::error::{Error, Result};
use crate::pci::{COMMAND_BUS_MASTER, COMMAND_MEMORY, ConfigSpace, REG_BAR0};
use crate::qemu::Qemu;

/// The edu device's PCI vendor id (QEMU).
pub const EDU_VENDOR: u16 = 0x1234;
/// The edu device's PCI device id.
pub const EDU_DEVICE: u16 = 0x11e8;
/// Where [`Edu::probe`] places BAR0: in the PCI hole, clear of RAM, the
/// PCIe MMCONFIG window (0xB000_0000) and the VT-d page.
pub const EDU_BAR0: PhysAddr = PhysAddr::new(0xE000_0000);
/// The usable size of the DMA buffer in bytes: one less than its 4 KiB.
/// QEMU 7.2 stops with a hardware error on a transfer that ends exactly at
/// the end of the buffer (an off-by-one in its range check, fixed in later
/// versions, which also only log out-of-range transfers), so the last byte
/// is never used.
pub const EDU_BUFFER_SIZE: usize = 4095;
pub use regs::*;

/// edu's DMA registers (BAR0 offsets) and buffer, as QEMU 7.2's
/// `hw/misc/edu.c` defines them: shared by every driver of the device in
/// this workspace (over qtest here, over VFIO in `viommu-vfio`'s examples).
pub mod regs {
    /// The device address of the DMA buffer.
    pub const BUFFER_BASE: u64 = 0x4_0000;
    /// Identification register: 0xRRrr00ed, major.minor version and 0xed.
    pub const REG_IDENT: u64 = 0x00;
    /// The low byte of the identification register.
    pub const IDENT_MAGIC: u32 = 0xed;
    /// DMA source address.
    pub const REG_DMA_SRC: u64 = 0x80;
    /// DMA destination address.
    pub const REG_DMA_DST: u64 = 0x88;
    /// DMA transfer count in bytes.
    pub const REG_DMA_COUNT: u64 = 0x90;
    /// DMA command.
    pub const REG_DMA_CMD: u64 = 0x98;
    /// DMA command: start; reads as set until the transfer is done.
    pub const CMD_RUN: u32 = 1 << 0;
    /// DMA command: from the buffer to memory (a DMA write).
    pub const CMD_TO_MEMORY: u32 = 1 << 1;
}

/// How long a transfer may take in wall time before [`Error::DeviceTimeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The edu device's MSI capability.
const MSI_CAP: u8 = 0x40;
/// The MSI capability id.
const MSI_CAP_ID: u32 = 0x05;
/// Message control bit 0 (bit 16 of the capability's first dword): enable.
const MSI_ENABLE: u32 = 1 << 16;
/// Message control bit 7: the capability has a 64-bit address.
const MSI_64BIT: u32 = 1 << 23;
/// The edu register that raises an interrupt with the value written.
const REG_RAISE: u64 = 0x60;
/// The edu register that acknowledges (clears) interrupt status bits.
const REG_ACK: u64 = 0x64;

/// An enabled edu device.
pub struct Edu<'q> {
    qemu: &'q Qemu,
    bar0: PhysAddr,
    function: SourceId,
    timeout: Duration,
}

impl<'q> Edu<'q> {
    /// Finds the edu device on bus 0, places BAR0 at [`EDU_BAR0`], enables
    /// memory decoding and bus mastering, and checks its identification.
    pub fn probe(qemu: &'q Qemu) -> Result<Self> {
        let config = ConfigSpace::new(qemu.qtest());
        let function = config.find(EDU_VENDOR, EDU_DEVICE)?;
        // A 32-bit memory BAR: the address is all that is written.
        config.write32(function, REG_BAR0, EDU_BAR0.as_u64() as u32)?;
        config.enable(function, COMMAND_MEMORY | COMMAND_BUS_MASTER)?;
        let edu = Edu { qemu, bar0: EDU_BAR0, function, timeout: DEFAULT_TIMEOUT };
        if edu.reg(REG_IDENT).and_then(|a| qemu.qtest().readl(a))? & 0xff != IDENT_MAGIC {
            return Err(Error::DeviceNotFound { vendor: EDU_VENDOR, device: EDU_DEVICE });
        }
        Ok(edu)
    }

    /// The requester id of the device's DMA: 0x0008 (00:01.0) on the
    /// machine [`Qemu`] builds.
    pub fn source_id(&self) -> SourceId {
        self.function
    }

    /// Bounds a transfer's wall time (default 5 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// DMA read: the device reads `len` bytes at `from` into its buffer at
    /// `offset`. Returns once the transfer is done, whether or not the IOMMU
    /// let it through.
    pub fn read_memory(&self, from: Iova, offset: usize, len: usize) -> Result<()> {
        let dst = buffer_address(offset, len)?;
        self.transfer(from.as_u64(), dst, len, 0)
    }

    /// DMA write: the device writes `len` bytes of its buffer at `offset` to
    /// `to`. Returns once the transfer is done, whether or not the IOMMU let
    /// it through.
    pub fn write_memory(&self, offset: usize, to: Iova, len: usize) -> Result<()> {
        let src = buffer_address(offset, len)?;
        self.transfer(src, to.as_u64(), len, CMD_TO_MEMORY)
    }

    fn transfer(&self, src: u64, dst: u64, len: usize, direction: u32) -> Result<()> {
        // Register writes are ignored while a transfer runs.
        self.wait()?;
        let q = self.qemu.qtest();
        q.writeq(self.reg(REG_DMA_SRC)?, src)?;
        q.writeq(self.reg(REG_DMA_DST)?, dst)?;
        q.writeq(self.reg(REG_DMA_COUNT)?, len as u64)?;
        q.writel(self.reg(REG_DMA_CMD)?, CMD_RUN | direction)?;
        self.wait()
    }

    /// Polls until no transfer runs, for at most the timeout.
    fn wait(&self) -> Result<()> {
        let cmd = self.reg(REG_DMA_CMD)?;
        let deadline = Instant::now() + self.timeout;
        while self.qemu.qtest().readl(cmd)? & CMD_RUN != 0 {
            if Instant::now() >= deadline {
                return Err(Error::DeviceTimeout { what: "edu DMA completion" });
            }
        }
        Ok(())
    }

    /// Programs the device's MSI with `msg` (one vector) and enables it.
    pub fn enable_msi(&self, msg: MsiMessage) -> Result<()> {
        let config = ConfigSpace::new(self.qemu.qtest());
        let f = self.function;
        let head = config.read32(f, MSI_CAP)?;
        if head & 0xff != MSI_CAP_ID {
            return Err(Error::DeviceNotFound { vendor: 0x1234, device: 0x11e8 });
        }
        config.write32(f, MSI_CAP + 4, msg.address as u32)?;
        let data_at = if head & MSI_64BIT != 0 {
            config.write32(f, MSI_CAP + 8, (msg.address >> 32) as u32)?;
            MSI_CAP + 12
        } else {
            MSI_CAP + 8
        };
        config.write32(f, data_at, msg.data)?;
        config.write32(f, MSI_CAP, (head & !(0x70 << 16)) | MSI_ENABLE)
    }

    /// Raises the device's interrupt (one MSI) and acknowledges it.
    pub fn raise_interrupt(&self) -> Result<()> {
        let q = self.qemu.qtest();
        q.writel(self.reg(REG_RAISE)?, 1)?;
        q.writel(self.reg(REG_ACK)?, 1)
    }

    fn reg(&self, offset: u64) -> Result<PhysAddr> {
        self.bar0.checked_add(offset).ok_or(Error::OutOfRange { addr: self.bar0, len: 4 })
    }
}

/// The device address of `len` bytes at `offset` in the buffer, if they fit
/// in its usable part (QEMU would stop, or copy past the buffer).
fn buffer_address(offset: usize, len: usize) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if len > 0 && end <= EDU_BUFFER_SIZE => Ok(BUFFER_BASE + offset as u64),
        _ => Err(Error::InvalidArgument { what: "edu transfer outside its 4 KiB buffer" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_stay_in_the_buffer() {
        assert_eq!(buffer_address(0, 4095), Ok(0x4_0000));
        assert_eq!(buffer_address(0x800, 0x10), Ok(0x4_0800));
        assert!(buffer_address(0, 0).is_err());
        assert!(buffer_address(0, 4096).is_err());
        assert!(buffer_address(1, 4095).is_err());
        assert!(buffer_address(usize::MAX, 2).is_err());
    }
}
