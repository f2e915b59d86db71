//! VFIO type1 for a Linux-hosted VMM's vIOMMU: the host side that maps
//! and unmaps what the guest's IOMMU translates, through the kernel's
//! IOMMU, by user address.
//!
//! - [`Container`]: one type1v2 I/O address space (`/dev/vfio/vfio`); its
//!   groups and devices ([`Container::open_device`]); DMA
//!   [`map`](Container::map) / [`map_batch`](Container::map_batch) of
//!   [`DmaMapping`]s (IOVA, host virtual address, length, [`Perm`]) and
//!   [`unmap`](Container::unmap) / [`unmap_batch`](Container::unmap_batch)
//!   of IOVA ranges, each complete when it returns (the kernel has flushed
//!   its IOTLB and unpinned the pages). The container tracks its mappings:
//!   type1v2 refuses an unmap that bisects a map, so a partial unmap removes
//!   the whole map and maps the rest again ([`dma`]). A batch costs at most
//!   one map ioctl per range contiguous in IOVA and host address, and one
//!   unmap ioctl (plus at most two re-maps) per contiguous IOVA range.
//! - [`IoctlCounts`]: every VFIO ioctl, counted by kind.
//! - [`Type1`]: the DMA ioctls below a container's bookkeeping, issued by
//!   the [`Kernel`] or, in tests of a VMM's logic on a host without
//!   `/dev/vfio`, modelled by [`fake::FakeType1`]
//!   ([`Container::over`]).
//! - [`Device`]: a PCI function's regions (config space, BARs) and
//!   [`Device::enable_dma`].
//! - With feature `vm-memory`: [`Container::map_guest`] maps a VMM's guest
//!   RAM (rust-vmm `vm-memory`) by guest-physical address, through
//!   `viommu-vm-memory`.
//! - With feature `viommu`: [`VfioBackend`], the vIOMMU's host side
//!   ([`viommu::HostIommu`]) over the containers of the assigned devices,
//!   guest RAM from `vm-memory`: one map ioctl per guest range, one unmap
//!   ioctl per contiguous range a guest invalidation removes, completed
//!   when the ioctl returned; the kernel pins.
//!
//! Built on raw ioctls over rust-vmm's `vfio-bindings` (the kernel's
//! structures) rather than `vfio-ioctls`, whose container maps every range
//! read+write (a guest's read-only mapping must stay read-only), whose
//! region accesses swallow errors, and whose `VfioDevice` sets up IRQs and
//! a KVM device this backend does not need.
//!
//! ```no_run
//! use viommu_vfio::{Container, DmaMapping, Perm, BAR0_REGION};
//!
//! let mut container = Container::new()?;
//! let edu = container.open_device("0000:00:02.0")?; // bound to vfio-pci
//! edu.enable_dma()?;
//! # let guest_ram_hva = 0usize;
//! let before = container.ioctl_counts();
//! // SAFETY: guest RAM of this VMM, only accessed through volatile copies,
//! // mapped for as long as the container maps it.
//! unsafe {
//!     container.map(DmaMapping { iova: 0x10_0000, hva: guest_ram_hva, len: 0x4000, perm: Perm::READ | Perm::WRITE })?
//! };
//! container.unmap(0x11_0000, 0x1000)?; // one unmap + two re-maps
//! let ioctls = container.ioctl_counts().since(before);
//! assert_eq!((ioctls.map, ioctls.unmap), (3, 1));
//! # let _ = edu.read_u32(BAR0_REGION, 0)?;
//! # Ok::<(), viommu_vfio::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks, missing_docs)]

#[cfg(feature = "viommu")]
pub mod backend;
mod container;
mod device;
pub mod dma;
mod error;
pub mod fake;
#[cfg(feature = "vm-memory")]
mod guest;
mod ioctl;

#[cfg(feature = "viommu")]
pub use backend::{ContainerHandle, SharedContainer, VfioBackend, VfioDomain};
pub use container::{Container, Kernel, Type1};
pub use device::{BAR0_REGION, CONFIG_REGION, Device, Region};
pub use dma::{DmaMapping, PAGE_SIZE, Perm};
pub use error::{Error, Op, Result};
pub use ioctl::IoctlCounts;
