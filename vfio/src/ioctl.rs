//! The VFIO ioctls (Linux `include/uapi/linux/vfio.h`, structures from
//! rust-vmm's `vfio-bindings`), each issued through one counted wrapper.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use vfio_bindings::bindings::vfio::{VFIO_BASE, VFIO_TYPE};

use crate::error::{Error, Op, Result};

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`: every VFIO ioctl has no size or
/// direction in its number; the argument's `argsz` says its size.
const fn io(nr: u32) -> libc::c_ulong {
    ((VFIO_TYPE as libc::c_ulong) << 8) | (VFIO_BASE + nr) as libc::c_ulong
}

pub(crate) const GET_API_VERSION: libc::c_ulong = io(0);
pub(crate) const CHECK_EXTENSION: libc::c_ulong = io(1);
pub(crate) const SET_IOMMU: libc::c_ulong = io(2);
pub(crate) const GROUP_GET_STATUS: libc::c_ulong = io(3);
pub(crate) const GROUP_SET_CONTAINER: libc::c_ulong = io(4);
pub(crate) const GROUP_GET_DEVICE_FD: libc::c_ulong = io(6);
pub(crate) const DEVICE_GET_INFO: libc::c_ulong = io(7);
pub(crate) const DEVICE_GET_REGION_INFO: libc::c_ulong = io(8);
pub(crate) const IOMMU_GET_INFO: libc::c_ulong = io(12);
pub(crate) const IOMMU_MAP_DMA: libc::c_ulong = io(13);
pub(crate) const IOMMU_UNMAP_DMA: libc::c_ulong = io(14);

/// How many VFIO ioctls a [`Container`](crate::Container) and the devices
/// opened through it issued, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlCounts {
    /// `VFIO_IOMMU_MAP_DMA`.
    pub map: u64,
    /// `VFIO_IOMMU_UNMAP_DMA`.
    pub unmap: u64,
    /// Every other VFIO ioctl (set-up, device and region information).
    pub other: u64,
}

impl IoctlCounts {
    /// The counts since `earlier` was taken.
    #[must_use]
    pub fn since(self, earlier: IoctlCounts) -> IoctlCounts {
        IoctlCounts {
            map: self.map - earlier.map,
            unmap: self.unmap - earlier.unmap,
            other: self.other - earlier.other,
        }
    }
}

impl core::ops::Add for IoctlCounts {
    type Output = IoctlCounts;

    /// The counts of two containers together.
    fn add(self, other: IoctlCounts) -> IoctlCounts {
        IoctlCounts {
            map: self.map + other.map,
            unmap: self.unmap + other.unmap,
            other: self.other + other.other,
        }
    }
}

/// The counters, shared by a container and its devices.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    map: AtomicU64,
    unmap: AtomicU64,
    other: AtomicU64,
}

impl Counters {
    pub(crate) fn get(&self) -> IoctlCounts {
        IoctlCounts {
            map: self.map.load(Ordering::Relaxed),
            unmap: self.unmap.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }

    fn count(&self, request: libc::c_ulong) {
        let counter = match request {
            IOMMU_MAP_DMA => &self.map,
            IOMMU_UNMAP_DMA => &self.unmap,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An ioctl whose argument is a value.
    pub(crate) fn ioctl_val(
        &self,
        fd: BorrowedFd<'_>,
        request: libc::c_ulong,
        arg: libc::c_ulong,
        op: Op,
    ) -> Result<libc::c_int> {
        self.count(request);
        // SAFETY: every request passed here takes an integer argument (or
        // none), so the kernel reads no memory of ours.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
        if ret < 0 { Err(Error::last_os(op)) } else { Ok(ret) }
    }

    /// An ioctl whose argument is a NUL-terminated string the kernel reads
    /// (`VFIO_GROUP_GET_DEVICE_FD`'s device name).
    pub(crate) fn ioctl_str(
        &self,
        fd: BorrowedFd<'_>,
        request: libc::c_ulong,
        arg: &std::ffi::CStr,
        op: Op,
    ) -> Result<libc::c_int> {
        self.count(request);
        // SAFETY: the only request passed here reads a NUL-terminated
        // string, which `arg` is, alive for the call.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg.as_ptr()) };
        if ret < 0 { Err(Error::last_os(op)) } else { Ok(ret) }
    }

    /// An ioctl whose argument is a structure the kernel reads and may
    /// write back.
    ///
    /// # Safety
    ///
    /// `T` is the structure `request` takes, with its `argsz` set to
    /// `size_of::<T>()` (the kernel touches no byte beyond it), and what the
    /// request does with the pointers inside it is the caller's to justify
    /// (only `VFIO_IOMMU_MAP_DMA` carries one, a user address to pin).
    pub(crate) unsafe fn ioctl_ptr<T>(
        &self,
        fd: BorrowedFd<'_>,
        request: libc::c_ulong,
        arg: &mut T,
        op: Op,
    ) -> Result<libc::c_int> {
        self.count(request);
        // SAFETY: `arg` is a live, exclusive `T` of `argsz` bytes (caller's
        // contract), valid for the kernel to read and write during the call.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg as *mut T) };
        if ret < 0 { Err(Error::last_os(op)) } else { Ok(ret) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        // Values as the kernel headers expand them (vfio.h, _IO(';', 100 + n)).
        assert_eq!(GET_API_VERSION, 0x3b64);
        assert_eq!(CHECK_EXTENSION, 0x3b65);
        assert_eq!(SET_IOMMU, 0x3b66);
        assert_eq!(GROUP_GET_STATUS, 0x3b67);
        assert_eq!(GROUP_SET_CONTAINER, 0x3b68);
        assert_eq!(GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(IOMMU_GET_INFO, 0x3b70);
        assert_eq!(IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(IOMMU_UNMAP_DMA, 0x3b72);
    }
}
