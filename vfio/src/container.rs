//! [`Container`]: one VFIO type1v2 IOMMU address space (a host domain), its
//! groups, and the DMA mappings the kernel holds in it; [`Type1`], the
//! three DMA ioctls below its bookkeeping, and [`Kernel`], the real ones.

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

/// The DMA operations of a type1v2 IOMMU address space, as the kernel's
/// `VFIO_IOMMU_MAP_DMA` and `VFIO_IOMMU_UNMAP_DMA` perform them: what a
/// [`Container`] issues below its bookkeeping. [`Kernel`] is the real one;
/// [`FakeType1`](crate::fake::FakeType1) models it in memory, for tests of
/// a VMM's (and this crate's) logic on a host without `/dev/vfio`.
///
/// Type1v2's rules, which an implementation keeps: a map overlapping an
/// existing one fails (`EEXIST`); an unmap whose range bisects a mapping
/// fails (`EINVAL`) and otherwise removes every mapping inside the range,
/// returning their total size (0 when there were none); when an unmap
/// returns, no device reaches what it removed.
pub trait Type1 {
    /// `VFIO_IOMMU_MAP_DMA` of one validated mapping ([`DmaMapping`]:
    /// whole pages, some permission).
    ///
    /// # Safety
    ///
    /// As [`Container::map_batch`], for `m`.
    unsafe fn map_dma(&mut self, m: &DmaMapping) -> Result<()>;

    /// `VFIO_IOMMU_UNMAP_DMA` of `[iova, iova + len)` (whole pages, not
    /// empty): the bytes unmapped.
    fn unmap_dma(&mut self, iova: u64, len: u64) -> Result<u64>;

    /// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_ALL`: the bytes
    /// unmapped.
    fn unmap_all_dma(&mut self) -> Result<u64>;

    /// The ioctls issued so far (through this address space and the
    /// devices opened with it).
    fn ioctl_counts(&self) -> IoctlCounts;
}

/// The kernel's type1v2 IOMMU: a `/dev/vfio/vfio` container and the groups
/// attached to it ([`Container::new`], [`Container::open_device`]).
#[derive(Debug)]
pub struct Kernel {
    file: File,
    /// Open groups by id; the first one attached set the IOMMU.
    groups: Vec<(u32, File)>,
    counters: Arc<Counters>,
}

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
///
/// `K` is what performs the DMA ioctls: the [`Kernel`], or another
/// [`Type1`] ([`Container::over`]) such as
/// [`FakeType1`](crate::fake::FakeType1) in tests.
#[derive(Debug)]
pub struct Container<K = Kernel> {
    type1: K,
    maps: Mappings,
}

impl Container {
    /// Opens `/dev/vfio/vfio` and checks the API version and type1v2.
    pub fn new() -> Result<Self> {
        let file =
            OpenOptions::new().read(true).write(true).open("/dev/vfio/vfio").map_err(|e| {
                Error::Os { op: Op::OpenContainer, errno: e.raw_os_error().unwrap_or(0) }
            })?;
        let k = Kernel { file, groups: Vec::new(), counters: Arc::default() };
        let version =
            k.counters.ioctl_val(k.file.as_fd(), ioctl::GET_API_VERSION, 0, Op::GetApiVersion)?;
        if version != VFIO_API_VERSION as i32 {
            return Err(Error::ApiVersion { found: version });
        }
        let type1v2 = libc::c_ulong::from(VFIO_TYPE1v2_IOMMU);
        if k.counters.ioctl_val(
            k.file.as_fd(),
            ioctl::CHECK_EXTENSION,
            type1v2,
            Op::CheckExtension,
        )? != 1
        {
            return Err(Error::NoType1v2);
        }
        Ok(Container::over(k))
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
        let group = &self.type1.groups[index].1;
        let name = CString::new(address).map_err(|_| Error::BadDeviceName)?;
        let fd = self.type1.counters.ioctl_str(
            group.as_fd(),
            ioctl::GROUP_GET_DEVICE_FD,
            &name,
            Op::GroupGetDeviceFd,
        )?;
        // SAFETY: a successful GET_DEVICE_FD returns a new descriptor that
        // nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Device::new(File::from(fd), Arc::clone(&self.type1.counters))
    }

    /// The index in `groups` of group `id`, opened and attached to this
    /// container.
    fn attach_group(&mut self, id: u32) -> Result<usize> {
        if let Some(i) = self.type1.groups.iter().position(|(g, _)| *g == id) {
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
            self.type1.counters.ioctl_ptr(
                group.as_fd(),
                ioctl::GROUP_GET_STATUS,
                &mut status,
                Op::GroupGetStatus,
            )?
        };
        if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(Error::GroupNotViable { group: id });
        }
        let mut container = std::os::fd::AsRawFd::as_raw_fd(&self.type1.file);
        // SAFETY: SET_CONTAINER reads an int, the container's descriptor.
        unsafe {
            self.type1.counters.ioctl_ptr(
                group.as_fd(),
                ioctl::GROUP_SET_CONTAINER,
                &mut container,
                Op::GroupSetContainer,
            )?
        };
        if self.type1.groups.is_empty() {
            let type1v2 = libc::c_ulong::from(VFIO_TYPE1v2_IOMMU);
            self.type1.counters.ioctl_val(
                self.type1.file.as_fd(),
                ioctl::SET_IOMMU,
                type1v2,
                Op::SetIommu,
            )?;
        }
        self.type1.groups.push((id, group));
        Ok(self.type1.groups.len() - 1)
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
            self.type1.counters.ioctl_ptr(
                self.type1.file.as_fd(),
                ioctl::IOMMU_GET_INFO,
                &mut info,
                Op::IommuGetInfo,
            )?
        };
        Ok(info.iova_pgsizes)
    }
}

impl<K: Type1> Container<K> {
    /// A container whose DMA ioctls `type1` performs, with nothing mapped
    /// (as `type1` must be).
    pub fn over(type1: K) -> Self {
        Container { type1, maps: Mappings::default() }
    }

    /// What performs the DMA ioctls.
    pub fn type1(&self) -> &K {
        &self.type1
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
    /// nothing: on an error, what this batch mapped is unmapped again
    /// (should the kernel refuse that too, it stays mapped and recorded in
    /// [`mappings`](Self::mappings), for a later unmap).
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
        // SAFETY: the caller's contract.
        unsafe { self.type1.map_dma(m)? };
        self.maps.insert(*m);
        Ok(())
    }

    /// Unmaps `[iova, iova + len)` (whole pages): one `VFIO_IOMMU_UNMAP_DMA`
    /// over the mappings it touches, then at most two `VFIO_IOMMU_MAP_DMA`
    /// for the parts of those mappings outside the range; no ioctl when
    /// nothing there is mapped. When it returns, no device reaches the range
    /// (the kernel has flushed the IOTLB) and its pages are unpinned.
    ///
    /// On an error the records stay what the kernel holds, as far as it
    /// said: a refused unmap leaves them as they were; after an unmap, a
    /// re-map that fails leaves that part unmapped (the device loses access
    /// to it, never gains it).
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<()> {
        check_range(iova, len)?;
        let Some(plan) = self.maps.plan_unmap(iova, len) else { return Ok(()) };
        let unmapped = self.type1.unmap_dma(plan.iova, plan.len)?;
        for m in &plan.removed {
            self.maps.remove(m.iova);
        }
        let expected: u64 = plan.removed.iter().map(|m| m.len).sum();
        if unmapped != expected {
            return Err(Error::UnmapMismatch { expected, unmapped });
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
        let unmapped = self.type1.unmap_all_dma()?;
        self.maps = Mappings::default();
        if unmapped != expected {
            return Err(Error::UnmapMismatch { expected, unmapped });
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
        self.type1.ioctl_counts()
    }
}

impl Type1 for Kernel {
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
        Ok(())
    }

    fn unmap_dma(&mut self, iova: u64, len: u64) -> Result<u64> {
        self.unmap(0, iova, len)
    }

    fn unmap_all_dma(&mut self) -> Result<u64> {
        self.unmap(VFIO_DMA_UNMAP_FLAG_ALL, 0, 0)
    }

    fn ioctl_counts(&self) -> IoctlCounts {
        self.counters.get()
    }
}

impl Kernel {
    /// One `VFIO_IOMMU_UNMAP_DMA`: the size the kernel unmapped.
    fn unmap(&self, flags: u32, iova: u64, size: u64) -> Result<u64> {
        let mut arg = vfio_iommu_type1_dma_unmap {
            argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            flags,
            iova,
            size,
            ..Default::default()
        };
        // SAFETY: UNMAP_DMA takes a vfio_iommu_type1_dma_unmap with its
        // argsz (no dirty bitmap asked for: flags 0 or FLAG_ALL, with iova
        // and size 0); it writes back the size unmapped.
        unsafe {
            self.counters.ioctl_ptr(
                self.file.as_fd(),
                ioctl::IOMMU_UNMAP_DMA,
                &mut arg,
                Op::UnmapDma,
            )?
        };
        Ok(arg.size)
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
