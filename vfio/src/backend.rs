//! [`VfioBackend`]: the vIOMMU's host side ([`viommu::HostIommu`]) over VFIO
//! type1 containers, for a Linux-hosted VMM whose guest RAM is rust-vmm
//! `vm-memory` (feature `viommu`).
//!
//! # Host domains and containers
//! A VFIO group belongs to one container at a time, and cannot leave it
//! while one of its devices is open (`VFIO_GROUP_UNSET_CONTAINER` fails with
//! `EBUSY`), which a VMM's are for as long as the guest runs. So a host
//! domain cannot be a container the device moves into. As QEMU's VFIO
//! does under its vIOMMU, each group keeps its container (one I/O address
//! space per group: [`add_container`](VfioBackend::add_container)), and a
//! host domain ([`VfioDomain`]) is the record of what the guest domain
//! maps, installed in the containers of the devices attached to it:
//! - [`map`](viommu::HostIommu::map): one `VFIO_IOMMU_MAP_DMA` per
//!   container attached (the range is one vm-memory region, so one host
//!   virtual range);
//! - [`unmap`](viommu::HostIommu::unmap): recorded, no ioctl;
//!   [`complete`](viommu::HostIommu::complete) then unmaps everything the
//!   guest's invalidation removed, ranges that touch merged: one
//!   `VFIO_IOMMU_UNMAP_DMA` per contiguous range (plus at most two re-maps
//!   when it cuts into a mapping, see [`dma`](crate::dma)), and returns
//!   `Ok` only after those ioctls returned: type1 has then cleared the
//!   translations, flushed the IOTLB and unpinned the pages;
//! - [`attach`](viommu::HostIommu::attach): a device moving to another
//!   domain gets its container emptied (one `VFIO_IOMMU_UNMAP_DMA` with
//!   `VFIO_DMA_UNMAP_FLAG_ALL`) and the new domain's mappings installed
//!   (one map per run contiguous in IOVA and host address);
//!   [`detach`](viommu::HostIommu::detach) empties it: with nothing mapped,
//!   type1 blocks every DMA of the group.
//!
//! The backend owns its containers, or shares them
//! ([`SharedContainer`]: a VMM that builds a new vIOMMU when its guest
//! reboots keeps its containers and device files; a test harness maps
//! scratch buffers of its own).
//!
//! Devices of one group share its container: the host IOMMU cannot tell
//! them apart. Attaching one of them to a domain other than the one its
//! group-mates are attached to, or detaching it while they stay attached,
//! fails ([`Error::SharedGroup`]) rather than give the guest an isolation
//! it does not have.
//!
//! # Who pins
//! The kernel: `VFIO_IOMMU_MAP_DMA` pins the pages (charged to
//! `RLIMIT_MEMLOCK`) and `VFIO_IOMMU_UNMAP_DMA` unpins them after its IOTLB
//! invalidation. The backend needs no `PagePinner`.

use core::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use viommu::{HostIommu, Placed};
use viommu_vm_memory::{GuestRam, host_range_in};
use vm_memory::{GuestAddressSpace, GuestMemoryBackend};
use vtd_regs::SourceId;

use crate::container::{Container, Kernel, Type1};
use crate::dma::{DmaMapping, Mappings, Perm, check_range, merge_ranges};
use crate::error::{Error, Result};
use crate::ioctl::IoctlCounts;

/// A host domain of a [`VfioBackend`]: what one guest domain maps (IOVA,
/// host virtual address, length, permission), installed in the container
/// of every device attached to it, and the unmaps the next
/// [`complete`](viommu::HostIommu::complete) performs.
#[derive(Debug)]
pub struct VfioDomain {
    id: u64,
    maps: Mappings,
    pending: Vec<(u64, u64)>,
}

impl VfioDomain {
    /// The domain's mappings, in IOVA order (unmaps not completed yet
    /// excluded).
    pub fn mappings(&self) -> impl Iterator<Item = &DmaMapping> {
        self.maps.iter()
    }

    /// Whether unmaps are waiting for [`complete`](viommu::HostIommu::complete).
    pub fn has_pending_unmaps(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// How a [`VfioBackend`] holds a container: owned ([`Container`]) or
/// shared ([`SharedContainer`]), over the kernel or another [`Type1`].
pub trait ContainerHandle {
    /// What performs the container's DMA ioctls.
    type Type1: Type1;

    /// Runs `f` on the container.
    fn with<R>(&mut self, f: impl FnOnce(&mut Container<Self::Type1>) -> R) -> R;
}

impl<K: Type1> ContainerHandle for Container<K> {
    type Type1 = K;

    fn with<R>(&mut self, f: impl FnOnce(&mut Container<K>) -> R) -> R {
        f(self)
    }
}

/// A container shared with its VMM.
pub type SharedContainer<K = Kernel> = Arc<Mutex<Container<K>>>;

impl<K: Type1> ContainerHandle for SharedContainer<K> {
    type Type1 = K;

    fn with<R>(&mut self, f: impl FnOnce(&mut Container<K>) -> R) -> R {
        // A panic under the lock left the container as the kernel has it:
        // its records were updated after each ioctl.
        f(&mut self.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One container, the devices of its group(s), and the domain they are
/// attached to.
#[derive(Debug)]
struct Space<C> {
    container: C,
    devices: Vec<SourceId>,
    /// The devices attached through the vIOMMU; all in `domain`.
    attached: Vec<SourceId>,
    domain: Option<u64>,
}

/// The vIOMMU's VFIO type1 backend: guest domains shadowed into the
/// containers of the assigned devices, guest RAM mapped by its host
/// virtual address from a `vm-memory` address space (see the
/// [module](self) documentation).
///
/// ```no_run
/// use viommu::{Assignment, Viommu, ViommuConfig};
/// use viommu_vfio::{Container, VfioBackend};
/// use viommu_vm_memory::GuestRam;
/// use vm_memory::{GuestAddress, GuestMemoryMmap};
/// use vtd_regs::SourceId;
///
/// let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 256 << 20)]).unwrap();
/// let mut container = Container::new()?;
/// let nic = container.open_device("0000:03:00.0")?; // bound to vfio-pci
/// nic.enable_dma()?;
/// // The device is 00:04.0 in the guest, 03:00.0 on the host.
/// let (guest, host) = (SourceId::new(0, 4, 0).unwrap(), SourceId::new(3, 0, 0).unwrap());
/// // SAFETY: guest RAM, reached only through vm-memory, mapped until the
/// // backend (and the vIOMMU holding it) is dropped.
/// let mut backend = unsafe { VfioBackend::new(GuestRam::new(&mem)) };
/// backend.add_container(container, &[host])?;
/// let viommu = Viommu::new(GuestRam::new(&mem), backend, &[Assignment { guest, host }], ViommuConfig::qemu())
///     .expect("a valid configuration");
/// // Trap the guest's accesses to the unit's register page into
/// // `viommu.read_register` / `viommu.write_register`.
/// # let _ = viommu;
/// # Ok::<(), viommu_vfio::Error>(())
/// ```
pub struct VfioBackend<A, C = Container> {
    ram: GuestRam<A>,
    spaces: Vec<Space<C>>,
    next_domain: u64,
}

impl<A, C: fmt::Debug> fmt::Debug for VfioBackend<A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioBackend").field("spaces", &self.spaces).finish_non_exhaustive()
    }
}

impl<A, C> VfioBackend<A, C>
where
    A: GuestAddressSpace,
    A::M: GuestMemoryBackend,
    C: ContainerHandle,
{
    /// A backend mapping guest RAM from `ram`, with no container yet.
    ///
    /// # Safety
    ///
    /// [`Container::map_batch`]'s contract for all of `ram`'s guest RAM:
    /// the assigned devices may read and write any of it the guest maps,
    /// at any time, until the backend is dropped. So no Rust reference to
    /// guest RAM may exist meanwhile (vm-memory gives out none: it copies
    /// with volatile accesses), and every region stays mapped in the
    /// process for as long as the backend lives (a VMM that removes guest
    /// memory first makes the guest unmap it, or drops the backend).
    pub unsafe fn new(ram: GuestRam<A>) -> Self {
        VfioBackend { ram, spaces: Vec::new(), next_domain: 0 }
    }

    /// Adds `container` with the devices (host source ids) of the group(s)
    /// attached to it, blocked until the vIOMMU attaches them: whatever it
    /// maps is unmapped. A device already added is refused
    /// ([`Error::DuplicateDevice`]).
    pub fn add_container(&mut self, mut container: C, devices: &[SourceId]) -> Result<()> {
        if let Some(&d) = devices.iter().find(|d| self.space_of(**d).is_some()) {
            return Err(Error::DuplicateDevice { source_id: d.raw() });
        }
        container.with(Container::unmap_all)?;
        self.spaces.push(Space {
            container,
            devices: devices.to_vec(),
            attached: Vec::new(),
            domain: None,
        });
        Ok(())
    }

    /// Runs `f` on the container of host device `device`; `None` for a
    /// device the backend does not hold.
    pub fn with_container<R>(
        &mut self,
        device: SourceId,
        f: impl FnOnce(&mut Container<C::Type1>) -> R,
    ) -> Option<R> {
        let i = self.space_of(device)?;
        Some(self.spaces[i].container.with(f))
    }

    /// The VFIO ioctls issued so far, summed over the containers (and the
    /// devices opened through them).
    pub fn ioctl_counts(&mut self) -> IoctlCounts {
        self.spaces
            .iter_mut()
            .map(|s| s.container.with(|c| c.ioctl_counts()))
            .fold(IoctlCounts::default(), |a, b| a + b)
    }

    /// The guest RAM.
    pub fn ram(&self) -> &GuestRam<A> {
        &self.ram
    }

    fn space_of(&self, device: SourceId) -> Option<usize> {
        self.spaces.iter().position(|s| s.devices.contains(&device))
    }

    /// The containers `domain` is installed in.
    fn installed(&mut self, domain: u64) -> impl Iterator<Item = &mut C> {
        self.spaces.iter_mut().filter(move |s| s.domain == Some(domain)).map(|s| &mut s.container)
    }

    /// Performs `domain`'s pending unmaps in every container it is
    /// installed in; they stay pending on an error (a retry does again
    /// only what is left: a range no longer mapped costs no ioctl).
    fn flush(&mut self, domain: &mut VfioDomain) -> Result<()> {
        if domain.pending.is_empty() {
            return Ok(());
        }
        let ranges = merge_ranges(&domain.pending);
        for container in self.installed(domain.id) {
            container.with(|c| c.unmap_batch(&ranges))?;
        }
        domain.pending.clear();
        Ok(())
    }

    /// Empties the container of space `i`: its devices are blocked.
    fn block(&mut self, i: usize) -> Result<()> {
        let space = &mut self.spaces[i];
        space.domain = None;
        space.attached.clear();
        space.container.with(Container::unmap_all)
    }
}

impl<A, C> HostIommu for VfioBackend<A, C>
where
    A: GuestAddressSpace,
    A::M: GuestMemoryBackend,
    C: ContainerHandle,
{
    type Domain = VfioDomain;
    type Error = Error;

    fn create_domain(&mut self) -> Result<VfioDomain> {
        self.next_domain += 1;
        Ok(VfioDomain { id: self.next_domain, maps: Mappings::default(), pending: Vec::new() })
    }

    fn destroy_domain(&mut self, domain: VfioDomain) {
        // The vIOMMU detached every device first; should one still be in
        // it, it is blocked (best effort: a container that fails to empty
        // is dropped with the backend).
        let stale: Vec<usize> =
            (0..self.spaces.len()).filter(|&i| self.spaces[i].domain == Some(domain.id)).collect();
        for i in stale {
            let _ = self.block(i);
        }
    }

    fn attach(&mut self, domain: &mut VfioDomain, device: SourceId) -> Result<()> {
        let i = self.space_of(device).ok_or(Error::UnknownDevice { source_id: device.raw() })?;
        let space = &mut self.spaces[i];
        if space.domain == Some(domain.id) {
            if !space.attached.contains(&device) {
                space.attached.push(device);
            }
            return Ok(());
        }
        if space.attached.iter().any(|d| *d != device) {
            return Err(Error::SharedGroup { source_id: device.raw() });
        }
        self.block(i)?;
        let batch: Vec<DmaMapping> = domain.maps.iter().copied().collect();
        let space = &mut self.spaces[i];
        // SAFETY: guest RAM resolved through `self.ram` when the domain
        // mapped it; `new`'s contract keeps it mapped and unaliased.
        space.container.with(|c| unsafe { c.map_batch(&batch) })?;
        space.domain = Some(domain.id);
        space.attached.push(device);
        Ok(())
    }

    fn detach(&mut self, device: SourceId) -> Result<()> {
        let i = self.space_of(device).ok_or(Error::UnknownDevice { source_id: device.raw() })?;
        let space = &self.spaces[i];
        if space.attached.iter().any(|d| *d != device) {
            return Err(Error::SharedGroup { source_id: device.raw() });
        }
        if space.domain.is_none() {
            return Ok(());
        }
        self.block(i)
    }

    fn map(&mut self, domain: &mut VfioDomain, range: Placed) -> Result<()> {
        let (iova, gpa, len) = (range.iova.as_u64(), range.gpa, range.len);
        let mut perm = Perm::empty();
        perm.set(Perm::READ, range.perm.contains(vtd_tables::Perm::READ));
        perm.set(Perm::WRITE, range.perm.contains(vtd_tables::Perm::WRITE));
        check_range(iova, len)?;
        // An unmap of this invalidation not performed yet may hold the
        // IOVAs (the guest moved them to other pages): perform it first.
        let end = iova + len;
        if domain.pending.iter().any(|&(a, l)| a < end && iova < a + l) {
            self.flush(domain)?;
        }
        if domain.maps.overlaps(iova, len) {
            return Err(Error::Overlap { iova, len });
        }
        // The snapshot the address comes from stays alive over the ioctls.
        let mem = self.ram.memory();
        let host = host_range_in(&*mem, gpa, len)
            .map_err(|_| Error::OutsideGuestRam { gpa: gpa.as_u64(), len })?;
        let m = DmaMapping { iova, hva: host.hva, len, perm };
        m.validate()?;
        let id = domain.id;
        let mut done = 0;
        let mut result = Ok(());
        for container in self.installed(id) {
            // SAFETY: guest RAM of `mem`, under `new`'s contract.
            result = container.with(|c| unsafe { c.map(m) });
            if result.is_err() {
                break;
            }
            done += 1;
        }
        if result.is_err() {
            // All or nothing: the containers that mapped it unmap it; what
            // one of them fails to unmap is owed by the next completion
            // (the guest's wait then completes only once it is gone).
            let mut undone = true;
            for container in self.installed(id).take(done) {
                undone &= container.with(|c| c.unmap(iova, len)).is_ok();
            }
            if !undone {
                domain.pending.push((iova, len));
            }
            return result;
        }
        domain.maps.insert(m);
        Ok(())
    }

    fn unmap(&mut self, domain: &mut VfioDomain, range: Placed) -> Result<()> {
        let (iova, len) = (range.iova.as_u64(), range.len);
        check_range(iova, len)?;
        let Some(plan) = domain.maps.plan_unmap(iova, len) else { return Ok(()) };
        for m in &plan.removed {
            domain.maps.remove(m.iova);
        }
        for rest in plan.remap {
            domain.maps.insert(rest);
        }
        domain.pending.push((iova, len));
        Ok(())
    }

    fn complete(&mut self, domain: &mut VfioDomain) -> Result<()> {
        self.flush(domain)
    }
}
