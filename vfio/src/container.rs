//! [`Container`]: one VFIO type1v2 IOMMU address space (a host domain), its
//! groups, and the DMA mappings the kernel holds in it.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::mem::size_of;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    VFIO_API_VERSION, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL,
    VFIO_GROUP_FLAGS_VIABLE, VFIO_TYPE1v2_IOMMU, vfio_group_status, vfio_iommu_type1_dma_map,
    vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
};

use crate::device::Device;
use crate::dma::{DmaMapping, Mappings, Perm, check_range, coalesce, merge_ranges};
use crate::error::{Error, Op, Result};
use crate::ioctl::{self, Counters, IoctlCounts};

/// A VFIO container with the type1v2 IOMMU: the I/O address space of the
/// devices opened through it.
///
/// Maps and unmaps complete synchronously: when [`unmap`](Self::unmap)
/// returns, the kernel has removed the translations and flushed the IOTLB
/// (type1 invalidates before `VFIO_IOMMU_UNMAP_DMA` returns) and unpinned
/// the pages. The container tracks its mappings, so an unmap of part of an
/// earlier map works (see the [`dma`](crate::dma) module), and counts every
/// ioctl ([`ioctl_counts`](Self::ioctl_counts)).
///
/// The kernel pins the pages of every mapping and charges them to the
/// process's `RLIMIT_MEMLOCK` (unless it has `CAP_IPC_LOCK`), and holds at
/// most `vfio_iommu_type1 dma_entry_limit` mappings (65535 by default):
/// batches that coalesce keep that count low.
///
/// Dropping the container closes it: the kernel unmaps everything.
#[derive(Debug)]
pub struct Container {
    file: File,
    /// Open groups by id; the first one attached set the IOMMU.
    groups: Vec<(u32, File)>,
    maps: Mappings,
    counters: Arc<Counters>,
}

impl Container {
    /// Opens `/dev/vfio/vfio` and checks the API version and type1v2.
    pub fn new() -> Result<Self> {
        let file =
            OpenOptions::new().read(true).write(true).open("/dev/vfio/vfio").map_err(|e| {
                Error::Os { op: Op::OpenContainer, errno: e.raw_os_error().unwrap_or(0) }
            })?;
        let c = Container {
            file,
            groups: Vec::new(),
            maps: Mappings::default(),
            counters: Arc::default(),
        };
        let version =
            c.counters.ioctl_val(c.file.as_fd(), ioctl::GET_API_VERSION, 0, Op::GetApiVersion)?;
        if version != VFIO_API_VERSION as i32 {
            return Err(Error::ApiVersion { found: version });
        }
        let type1v2 = libc::c_ulong::from(VFIO_TYPE1v2_IOMMU);
        if c.counters.ioctl_val(
            c.file.as_fd(),
            ioctl::CHECK_EXTENSION,
            type1v2,
            Op::CheckExtension,
        )? != 1
        {
            return Err(Error::NoType1v2);
        }
        Ok(c)
    }

    /// Opens the PCI function `address` (`0000:00:02.0`, bound to
    /// `vfio-pci`): attaches its IOMMU group to this container (the first
    /// group sets the type1v2 IOMMU) and gets the device.
    pub fn open_device(&mut self, address: &str) -> Result<Device> {
        let plain = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
        if address.is_empty() || !address.chars().all(plain) {
            return Err(Error::BadDeviceName);
        }
        let group_id = iommu_group(address)?;
        let index = self.attach_group(group_id)?;
        let group = &self.groups[index].1;
        let name = CString::new(address).map_err(|_| Error::BadDeviceName)?;
        let fd = self.counters.ioctl_str(
            group.as_fd(),
            ioctl::GROUP_GET_DEVICE_FD,
            &name,
            Op::GroupGetDeviceFd,
        )?;
        // SAFETY: a successful GET_DEVICE_FD returns a new descriptor that
        // nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Device::new(File::from(fd), Arc::clone(&self.counters))
    }

    /// The index in `groups` of group `id`, opened and attached to this
    /// container.
    fn attach_group(&mut self, id: u32) -> Result<usize> {
        if let Some(i) = self.groups.iter().position(|(g, _)| *g == id) {
            return Ok(i);
        }
        let group =
            OpenOptions::new().read(true).write(true).open(format!("/dev/vfio/{id}")).map_err(
                |e| Error::Os { op: Op::OpenGroup, errno: e.raw_os_error().unwrap_or(0) },
            )?;
        let mut status =
            vfio_group_status { argsz: size_of::<vfio_group_status>() as u32, flags: 0 };
        // SAFETY: GET_STATUS takes a vfio_group_status with its argsz.
        unsafe {
            self.counters.ioctl_ptr(
                group.as_fd(),
                ioctl::GROUP_GET_STATUS,
                &mut status,
                Op::GroupGetStatus,
            )?
        };
        if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(Error::GroupNotViable { group: id });
        }
        let mut container = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        // SAFETY: SET_CONTAINER reads an int, the container's descriptor.
        unsafe {
            self.counters.ioctl_ptr(
                group.as_fd(),
                ioctl::GROUP_SET_CONTAINER,
                &mut container,
                Op::GroupSetContainer,
            )?
        };
        if self.groups.is_empty() {
            let type1v2 = libc::c_ulong::from(VFIO_TYPE1v2_IOMMU);
            self.counters.ioctl_val(self.file.as_fd(), ioctl::SET_IOMMU, type1v2, Op::SetIommu)?;
        }
        self.groups.push((id, group));
        Ok(self.groups.len() - 1)
    }

    /// The page sizes the IOMMU maps, as a bit mask (bit n = 2^n bytes);
    /// needs a device opened first (the IOMMU is set with the first group).
    pub fn page_sizes(&self) -> Result<u64> {
        let mut info = vfio_iommu_type1_info {
            argsz: size_of::<vfio_iommu_type1_info>() as u32,
            ..Default::default()
        };
        // SAFETY: GET_INFO takes a vfio_iommu_type1_info with its argsz; no
        // capability chain is asked for (argsz is the bare structure's).
        unsafe {
            self.counters.ioctl_ptr(
                self.file.as_fd(),
                ioctl::IOMMU_GET_INFO,
                &mut info,
                Op::IommuGetInfo,
            )?
        };
        Ok(info.iova_pgsizes)
    }

    /// Maps one range: [`map_batch`](Self::map_batch) of one.
    ///
    /// # Safety
    ///
    /// As [`map_batch`](Self::map_batch).
    pub unsafe fn map(&mut self, mapping: DmaMapping) -> Result<()> {
        // SAFETY: the caller's contract is map_batch's.
        unsafe { self.map_batch(&[mapping]) }
    }

    /// Maps a batch of ranges (whole 4 KiB pages, each with read and/or
    /// write permission): runs contiguous in IOVA and host address with the
    /// same permission become one `VFIO_IOMMU_MAP_DMA` each. All or
    /// nothing: on an error, what this batch mapped is unmapped again.
    ///
    /// Fails with [`Error::Overlap`] on a range already mapped (type1 would
    /// refuse it with `EEXIST`), [`Error::Misaligned`] or
    /// [`Error::NoPermission`] before any ioctl.
    ///
    /// # Safety
    ///
    /// Each `[hva, hva + len)` is memory of this process that the device may
    /// read and write at any time until the range is unmapped through this
    /// container (a partial unmap maps the rest again from the same
    /// addresses), such as a VMM's guest RAM: no Rust reference to it may
    /// exist meanwhile, and it stays mapped in the process (or is replaced
    /// only by memory with the same guarantee) until then.
    pub unsafe fn map_batch(&mut self, batch: &[DmaMapping]) -> Result<()> {
        for m in batch {
            m.validate()?;
        }
        let runs = coalesce(batch);
        for (done, run) in runs.iter().enumerate() {
            let result = if self.maps.overlaps(run.iova, run.len) {
                Err(Error::Overlap { iova: run.iova, len: run.len })
            } else {
                // SAFETY: the caller's contract covers every run.
                unsafe { self.map_dma(run) }
            };
            if let Err(e) = result {
                for undone in &runs[..done] {
                    // Best effort: a failure leaves it tracked, as mapped.
                    let _ = self.unmap(undone.iova, undone.len);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// One `VFIO_IOMMU_MAP_DMA`, tracked.
    ///
    /// # Safety
    ///
    /// As [`map_batch`](Self::map_batch), for `m`.
    unsafe fn map_dma(&mut self, m: &DmaMapping) -> Result<()> {
        let mut flags = 0;
        if m.perm.contains(Perm::READ) {
            flags |= VFIO_DMA_MAP_FLAG_READ;
        }
        if m.perm.contains(Perm::WRITE) {
            flags |= VFIO_DMA_MAP_FLAG_WRITE;
        }
        let mut arg = vfio_iommu_type1_dma_map {
            argsz: size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags,
            vaddr: m.hva as u64,
            iova: m.iova,
            size: m.len,
        };
        // SAFETY: MAP_DMA takes a vfio_iommu_type1_dma_map with its argsz;
        // the kernel pins `[vaddr, vaddr + size)` for the device, which the
        // caller's contract allows.
        unsafe {
            self.counters.ioctl_ptr(
                self.file.as_fd(),
                ioctl::IOMMU_MAP_DMA,
                &mut arg,
                Op::MapDma,
            )?
        };
        self.maps.insert(*m);
        Ok(())
    }

    /// Unmaps `[iova, iova + len)` (whole pages): one `VFIO_IOMMU_UNMAP_DMA`
    /// over the mappings it touches, then at most two `VFIO_IOMMU_MAP_DMA`
    /// for the parts of those mappings outside the range; no ioctl when
    /// nothing there is mapped. When it returns, no device reaches the range
    /// (the kernel has flushed the IOTLB) and its pages are unpinned.
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<()> {
        check_range(iova, len)?;
        let Some(plan) = self.maps.plan_unmap(iova, len) else { return Ok(()) };
        let mut arg = vfio_iommu_type1_dma_unmap {
            argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova: plan.iova,
            size: plan.len,
            ..Default::default()
        };
        // SAFETY: UNMAP_DMA takes a vfio_iommu_type1_dma_unmap with its
        // argsz (no dirty bitmap asked for: flags 0); it writes back the size
        // unmapped.
        unsafe {
            self.counters.ioctl_ptr(
                self.file.as_fd(),
                ioctl::IOMMU_UNMAP_DMA,
                &mut arg,
                Op::UnmapDma,
            )?
        };
        for m in &plan.removed {
            self.maps.remove(m.iova);
        }
        let expected: u64 = plan.removed.iter().map(|m| m.len).sum();
        if arg.size != expected {
            return Err(Error::UnmapMismatch { expected, unmapped: arg.size });
        }
        for rest in &plan.remap {
            // SAFETY: `rest` is part of a mapping made under map_batch's
            // contract, which lasts until this container unmaps it; it has
            // not unmapped `rest`.
            unsafe { self.map_dma(rest)? };
        }
        Ok(())
    }

    /// Unmaps every mapping with one `VFIO_IOMMU_UNMAP_DMA`
    /// (`VFIO_DMA_UNMAP_FLAG_ALL`, Linux 5.13 and later); no ioctl when
    /// nothing is mapped. The host domain is then empty, as when it was
    /// created.
    pub fn unmap_all(&mut self) -> Result<()> {
        let expected: u64 = self.maps.iter().map(|m| m.len).sum();
        if expected == 0 {
            return Ok(());
        }
        let mut arg = vfio_iommu_type1_dma_unmap {
            argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            flags: VFIO_DMA_UNMAP_FLAG_ALL,
            ..Default::default()
        };
        // SAFETY: UNMAP_DMA takes a vfio_iommu_type1_dma_unmap with its
        // argsz; with FLAG_ALL, iova and size are 0 and the kernel writes
        // back the size unmapped.
        unsafe {
            self.counters.ioctl_ptr(
                self.file.as_fd(),
                ioctl::IOMMU_UNMAP_DMA,
                &mut arg,
                Op::UnmapDma,
            )?
        };
        self.maps = Mappings::default();
        if arg.size != expected {
            return Err(Error::UnmapMismatch { expected, unmapped: arg.size });
        }
        Ok(())
    }

    /// Unmaps a batch of ranges: ranges that touch or overlap are merged, and
    /// each merged range is one [`unmap`](Self::unmap). Stops at the first
    /// error.
    pub fn unmap_batch(&mut self, ranges: &[(u64, u64)]) -> Result<()> {
        for &(iova, len) in ranges {
            check_range(iova, len)?;
        }
        merge_ranges(ranges).into_iter().try_for_each(|(iova, len)| self.unmap(iova, len))
    }

    /// The mappings the kernel holds, in IOVA order.
    pub fn mappings(&self) -> impl Iterator<Item = &DmaMapping> {
        self.maps.iter()
    }

    /// The VFIO ioctls issued so far by this container and its devices.
    pub fn ioctl_counts(&self) -> IoctlCounts {
        self.counters.get()
    }
}

/// The IOMMU group of PCI function `address`, from sysfs.
fn iommu_group(address: &str) -> Result<u32> {
    let link = fs::read_link(format!("/sys/bus/pci/devices/{address}/iommu_group"))
        .map_err(|e| Error::Os { op: Op::ReadIommuGroup, errno: e.raw_os_error().unwrap_or(0) })?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or(Error::Os { op: Op::ReadIommuGroup, errno: libc::EINVAL })
}
