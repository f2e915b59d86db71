//! [`Device`]: a PCI function opened through VFIO, its regions (config
//! space, BARs) read and written at their offsets in the device file.

use std::fs::File;
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE, vfio_device_info, vfio_region_info,
};

use crate::error::{Error, Op, Result};
use crate::ioctl::{self, Counters};

/// The region index of PCI configuration space (vfio-pci).
pub const CONFIG_REGION: u32 = VFIO_PCI_CONFIG_REGION_INDEX;
/// The region index of BAR `n` is `n` (vfio-pci): BAR0.
pub const BAR0_REGION: u32 = 0;

/// The PCI command register's offset in configuration space.
const PCI_COMMAND: u64 = 0x04;
/// Command register: memory space decoding.
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus master (the function may do DMA).
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// One region of a device: where it is in the device file, how large, and
/// what it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Offset of the region in the device file.
    pub offset: u64,
    /// Size in bytes (0: the device has no such region).
    pub size: u64,
    flags: u32,
}

impl Region {
    /// Whether the region may be read.
    pub fn readable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_READ != 0
    }

    /// Whether the region may be written.
    pub fn writable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_WRITE != 0
    }

    /// Whether the region may be mmap'd.
    pub fn mappable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

/// A device opened through a [`Container`](crate::Container).
#[derive(Debug)]
pub struct Device {
    file: File,
    regions: Vec<Region>,
}

impl Device {
    /// Reads the device's information and regions.
    pub(crate) fn new(file: File, counters: Arc<Counters>) -> Result<Self> {
        let mut info =
            vfio_device_info { argsz: size_of::<vfio_device_info>() as u32, ..Default::default() };
        // SAFETY: GET_INFO takes a vfio_device_info with its argsz.
        unsafe {
            counters.ioctl_ptr(
                file.as_fd(),
                ioctl::DEVICE_GET_INFO,
                &mut info,
                Op::DeviceGetInfo,
            )?
        };
        let mut regions = Vec::new();
        for index in 0..info.num_regions {
            let mut r = vfio_region_info {
                argsz: size_of::<vfio_region_info>() as u32,
                index,
                ..Default::default()
            };
            // SAFETY: GET_REGION_INFO takes a vfio_region_info with its argsz
            // (a capability chain, if any, is not asked for).
            let info = unsafe {
                counters.ioctl_ptr(
                    file.as_fd(),
                    ioctl::DEVICE_GET_REGION_INFO,
                    &mut r,
                    Op::DeviceGetRegionInfo,
                )
            };
            match info {
                Ok(_) => {}
                // vfio-pci counts the VGA region (index 8) on every device
                // and refuses its information on a device without VGA.
                Err(Error::Os { errno: libc::EINVAL, .. }) => r.size = 0,
                Err(e) => return Err(e),
            }
            regions.push(Region { offset: r.offset, size: r.size, flags: r.flags });
        }
        Ok(Device { file, regions })
    }

    /// Region `index` ([`CONFIG_REGION`], [`BAR0_REGION`], ...).
    pub fn region(&self, index: u32) -> Option<Region> {
        self.regions.get(index as usize).copied().filter(|r| r.size > 0)
    }

    /// The file offset of `len` bytes at `offset` in region `index`, if the
    /// region has them and allows the access.
    fn locate(&self, index: u32, offset: u64, len: usize, write: bool) -> Result<u64> {
        let err = Error::RegionAccess { index, offset, len: len as u64 };
        let r = self.region(index).ok_or(err)?;
        let allowed = if write { r.writable() } else { r.readable() };
        let end = offset.checked_add(len as u64).ok_or(err)?;
        if !allowed || end > r.size {
            return Err(err);
        }
        r.offset.checked_add(offset).ok_or(err)
    }

    /// Reads `buf.len()` bytes at `offset` in region `index` (a BAR access
    /// of 1, 2, 4 or 8 aligned bytes is one device access).
    pub fn read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.locate(index, offset, buf.len(), false)?;
        self.file.read_exact_at(buf, at).map_err(|e| Error::Os {
            op: Op::RegionRead,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })
    }

    /// Writes `data` at `offset` in region `index`.
    pub fn write(&self, index: u32, offset: u64, data: &[u8]) -> Result<()> {
        let at = self.locate(index, offset, data.len(), true)?;
        self.file.write_all_at(data, at).map_err(|e| Error::Os {
            op: Op::RegionWrite,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })
    }

    /// Reads the little-endian 32-bit value at `offset` in region `index`.
    pub fn read_u32(&self, index: u32, offset: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(index, offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a little-endian 32-bit value at `offset` in region `index`.
    pub fn write_u32(&self, index: u32, offset: u64, value: u32) -> Result<()> {
        self.write(index, offset, &value.to_le_bytes())
    }

    /// Writes a little-endian 64-bit value at `offset` in region `index`.
    ///
    /// One 8-byte `pwrite`; vfio-pci (Linux 6.1, x86-64) does not pass it
    /// to the device as one 8-byte access: QEMU's edu sees only a 4-byte
    /// write of the low half.
    pub fn write_u64(&self, index: u32, offset: u64, value: u64) -> Result<()> {
        self.write(index, offset, &value.to_le_bytes())
    }

    /// Turns on memory decoding and bus mastering in the command register:
    /// vfio-pci leaves bus mastering to the user, and a function without it
    /// does no DMA.
    pub fn enable_dma(&self) -> Result<()> {
        let mut b = [0u8; 2];
        self.read(CONFIG_REGION, PCI_COMMAND, &mut b)?;
        let command = u16::from_le_bytes(b) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        self.write(CONFIG_REGION, PCI_COMMAND, &command.to_le_bytes())
    }
}
