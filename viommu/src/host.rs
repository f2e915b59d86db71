//! The vIOMMU's physical side: [`HostIommu`], what a backend does for it on
//! the host's IOMMU, whatever that IOMMU is and whoever drives it.
//!
//! The vIOMMU shadows each guest domain into one host domain (an address
//! space translating guest IOVAs); it attaches the guest's assigned devices
//! to the host domain of the guest domain their guest context entry names,
//! maps what the guest's tables map, and unmaps what they stop mapping.
//! Backends:
//!
//! - **native VT-d** ([`Native`](crate::Native), `alloc`): a hypervisor that
//!   owns the unit writes the host's context entries and second-level
//!   tables and invalidates through its queue (`vtd-tables`,
//!   `invalidation`); it pins each guest page through a
//!   [`PagePinner`](teardown::PagePinner) and maps host-physical addresses.
//! - **VFIO type1** (std, its own crate): a Linux-hosted VMM maps with
//!   `VFIO_IOMMU_MAP_DMA` (IOVA, host virtual address, size, R/W) and
//!   unmaps with `VFIO_IOMMU_UNMAP_DMA`; the kernel pins on map and unpins
//!   after the IOTLB invalidation, and the unmap ioctl returns only after
//!   it, so its [`unmap`](HostIommu::unmap) completes at once and
//!   [`complete`](HostIommu::complete) has nothing left to do. A domain is
//!   a container (one IOVA space; a group is attached by
//!   `VFIO_GROUP_SET_CONTAINER`). The backend resolves guest-physical to
//!   host-virtual addresses itself (from the VMM's guest memory,
//!   `vm-memory`'s `GuestMemory::get_host_address`).
//! - **iommufd** (designed, not written): a domain is an IOAS
//!   (`IOMMU_IOAS_ALLOC`), map and unmap are `IOMMU_IOAS_MAP` /
//!   `IOMMU_IOAS_UNMAP` (synchronous, as VFIO's), attach is
//!   `VFIO_DEVICE_ATTACH_IOMMUFD_PT` with the IOAS (or an HWPT allocated
//!   from it). A later nested mode does not shadow at all: it allocates a
//!   nested HWPT over the IOAS holding all guest RAM, with the guest's
//!   first-stage table as its data, and forwards the guest's PASID-based
//!   invalidations (`IOMMU_HWPT_INVALIDATE`); that is a different hook
//!   implementation over the same unit, not this trait.
//!
//! # Who pins
//! A guest page must stay resident, at the same host location, from the
//! moment a host translation can reach it until the unmap removing the
//! last such translation has completed. The backend decides how: it pins
//! itself (the native one through a `PagePinner`, as a bare-metal
//! hypervisor does), or its kernel pins (VFIO pins on map and unpins after
//! the unmap's invalidation). The vIOMMU never pins.
//!
//! # What a backend is asked to map
//! [`Placed`] ranges: guest IOVAs onto guest-physical memory. The vIOMMU
//! checks that every byte of `[gpa, gpa + len)` is RAM of the guest, and
//! within one region of it ([`GuestRam::ram_from`](crate::GuestRam::ram_from)),
//! before it calls [`map`](HostIommu::map); the backend resolves the range
//! to what it maps (host-physical pages for the native backend, one host
//! virtual range for VFIO: regions are contiguous in the VMM's address
//! space) and must refuse what it cannot resolve. The vIOMMU coalesces
//! contiguous pages with one permission into one call: a guest mapping of
//! 16 contiguous pages is one `map` (one `VFIO_IOMMU_MAP_DMA`), and its
//! removal one `unmap`; a guest 2 MiB page is one `map` of 2 MiB, which the
//! native backend installs as one 2 MiB host page when the host memory is
//! contiguous and the unit supports it.
//!
//! # Unmapping part of a mapping
//! [`unmap`](HostIommu::unmap) may name any page-aligned part of what one
//! or several earlier [`map`](HostIommu::map) calls installed (the guest
//! may unmap one page of a range it mapped as a whole): afterwards the
//! pages named are unmapped and the rest of each earlier mapping stays
//! mapped, unchanged. A backend whose interface cannot unmap part of a
//! mapping (VFIO type1v2 refuses an unmap that bisects an earlier map)
//! keeps its own record of its maps, unmaps each whole mapping the range
//! touches and maps the remainders again; pages of a remainder may be
//! unreachable for a moment (a device's DMA to them then faults, as on a
//! unit that dropped a cached translation). The vIOMMU only ever unmaps
//! what it mapped, and describes it as mapped (the same IOVA-to-GPA
//! offset and permission), so a backend needs no lookup to unpin.
//!
//! # Completion
//! Unmaps of one domain may be batched: after [`unmap`](HostIommu::unmap)
//! the host IOMMU may still translate the range (a cached IOTLB entry);
//! only when [`complete`](HostIommu::complete) returns `Ok` for the domain
//! are all of its unmaps so far gone from every host translation, and
//! their pages unpinned. The vIOMMU calls it once per domain per guest
//! invalidation, after all the unmaps that invalidation caused, and lets
//! the guest's invalidation complete (its wait descriptor's status write,
//! §6.5.2.8) only after it returned `Ok`; an error holds the guest's
//! invalidation back (it is retried), so the guest never believes a
//! translation is gone while the host still has it.

use vtd_regs::{Iova, PhysAddr, SourceId};
use vtd_tables::Perm;

/// A range of guest IOVAs a backend maps onto guest-physical memory: `len`
/// bytes from `iova` translate to `[gpa, gpa + len)` with `perm`. All three
/// are multiples of 4 KiB, `len` is not zero, and `[gpa, gpa + len)` lies
/// in one RAM region of the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Placed {
    /// The first guest IOVA.
    pub iova: Iova,
    /// The guest-physical address `iova` translates to.
    pub gpa: PhysAddr,
    /// Bytes.
    pub len: u64,
    /// Read, write or both (never neither).
    pub perm: Perm,
}

/// The host side of a vIOMMU: host domains, the devices attached to them,
/// and the guest mappings installed in them (see the [module](self) docs
/// for what each backend does and for the guarantees every one keeps).
///
/// The vIOMMU owns one backend per guest; backends of several guests that
/// share one physical unit share it through their own handle (the native
/// backend holds an `Arc` of the unit).
pub trait HostIommu {
    /// One host address space, shadowing one guest domain (native: a domain
    /// id and its second-level table; VFIO: a container; iommufd: an IOAS).
    type Domain;
    /// Why an operation failed.
    type Error: core::fmt::Debug;

    /// A new, empty domain.
    fn create_domain(&mut self) -> Result<Self::Domain, Self::Error>;

    /// Frees `domain`. The vIOMMU calls it only when no device is attached
    /// to it and every mapping in it was unmapped and completed.
    fn destroy_domain(&mut self, domain: Self::Domain);

    /// Makes `device` (its host source id) translate through `domain`,
    /// moving it from the domain it was attached to, if any. When this
    /// returns `Ok`, the device's DMA is translated by `domain` only (any
    /// invalidation the move needs has completed). On error the device is
    /// blocked or still in its old domain.
    fn attach(&mut self, domain: &mut Self::Domain, device: SourceId) -> Result<(), Self::Error>;

    /// Blocks `device`: when this returns `Ok`, none of its DMA is
    /// translated by any domain.
    fn detach(&mut self, device: SourceId) -> Result<(), Self::Error>;

    /// Maps `range` in `domain`, pinning what it maps (or having it
    /// pinned). All or nothing: on error nothing of `range` is mapped (the
    /// backend undoes a partial map itself). `range` overlaps nothing
    /// mapped in `domain`.
    fn map(&mut self, domain: &mut Self::Domain, range: Placed) -> Result<(), Self::Error>;

    /// Removes the translations of `range`, which was mapped as described
    /// (see [Unmapping part of a mapping](self#unmapping-part-of-a-mapping)).
    /// The host IOMMU may keep translating it until
    /// [`complete`](Self::complete).
    fn unmap(&mut self, domain: &mut Self::Domain, range: Placed) -> Result<(), Self::Error>;

    /// Completes every unmap in `domain` so far: when this returns `Ok`, no
    /// host translation of them is left anywhere and their pages are
    /// unpinned. On error they may still be reachable (and stay pinned);
    /// the vIOMMU calls it again before it lets the guest believe they are
    /// gone.
    fn complete(&mut self, domain: &mut Self::Domain) -> Result<(), Self::Error>;
}
