//! An emulated Intel VT-d for hypervisors (a vIOMMU), after "vIOMMU:
//! Efficient IOMMU Emulation" (Amit, Ben-Yehuda, Tsafrir, Schuster; USENIX
//! ATC 2011).
//!
//! A guest with a directly assigned device programs an emulated VT-d unit
//! ([`Viommu`]: the software VT-d of [`vtd_emu`] over the guest's RAM, with
//! caching mode on, so the guest invalidates after every map, VT-d §6.1).
//! The unit is the only decoder of the guest's registers and invalidation
//! queue; it tells the vIOMMU what it executes through its hook
//! ([`vtd_emu::hook`]), before the guest can see it complete. The vIOMMU
//! then walks the guest's tables over the invalidated range (GIOVA -> GPA)
//! and brings a host domain in step through a backend ([`HostIommu`]): it
//! maps what the guest maps, one call per contiguous range, and unmaps what
//! it stopped mapping; the backend pins what it maps and unpins only after
//! the host IOMMU dropped it, and the guest's invalidation completes only
//! after the backend confirmed that. That gives the guest:
//! - memory overcommit: a guest page is pinned only while its device can
//!   reach it;
//! - intra-guest protection: once the guest's invalidation completed, its
//!   device cannot reach what the guest unmapped, and a blocked request is
//!   reported in the guest unit's fault recording registers (§7.2,
//!   [`Viommu::report_host_fault`]);
//! - DMA redirection: the device sees the guest's IOVAs (a 32-bit device can
//!   reach guest memory above 4 GiB);
//! - without weakening inter-guest protection: the vIOMMU asks a backend to
//!   map only pages of the guest's own RAM ([`GuestRam`]), in host domains
//!   of its own.
//!
//! Interrupt remapping is shadowed too ([`interrupts`]): with
//! [`Viommu::with_interrupts`], the guest's interrupt remapping entries
//! become host interrupt routes ([`InterruptRoutes`]) on each interrupt
//! entry cache invalidation, only for the guest's own devices, vCPUs and
//! vectors.
//!
//! Backends: [`Native`] (`alloc`) drives a VT-d unit the hypervisor owns
//! ([`Host`], shared by every guest's backend) and pins through a
//! [`teardown::PagePinner`] ([`GuestPinner`] by default); a Linux-hosted
//! VMM implements [`HostIommu`] over VFIO or iommufd (see [`host`]).
//!
//! Two front ends drive the unit: trap-and-emulate (`&Viommu` implements
//! [`Mmio`](vtd_regs::Mmio), one call per trapped access) and the sidecore
//! ([`sidecore`]: the register page is shared memory a polling thread
//! serves).
//!
//! Without `alloc`, shadow domains and device lists have fixed capacities
//! ([`EXTENTS`], [`MAX_DOMAINS`], [`MAX_DEVICES`]) and what does not fit
//! is left unmapped and counted; the native backend and [`GuestPinner`]
//! need `alloc`.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use std::sync::Arc;
//! use invalidation::QueuedInvalidator;
//! use viommu::{Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Native, Viommu, ViommuConfig};
//! use vtd_emu::mem::HeapMemory;
//! use vtd_emu::{Access, EmuConfig, Emulator, SimFrameAllocator};
//! use vtd_regs::regs::{QueueSize, rtaddr::TranslationTableMode};
//! use vtd_regs::{ContextScope, DomainId, Drain, IotlbScope, Iova, PageSize, PhysAddr};
//! use vtd_regs::{RemappingUnit, SourceId};
//! use vtd_tables::{ContextManager, Perm, SlPageTable, TableConfig};
//!
//! // The host: 8 MiB of RAM, its own unit (here the software VT-d), tables
//! // from 4 MiB up; the guest's 2 MiB of RAM at host 1 MiB.
//! let ram = HeapMemory::new(8 << 20);
//! let frames = SimFrameAllocator::new(&ram, PhysAddr::new(4 << 20), PhysAddr::new(8 << 20));
//! let hw = Emulator::<_>::new(&ram, EmuConfig::qemu()).unwrap();
//! let unit = RemappingUnit::new(&hw).unwrap();
//! let tables = TableConfig::from_cap(unit.cap(), 39).unwrap();
//! let contexts = ContextManager::new(&ram, &frames).unwrap();
//! let qs = QueueSize::from_order(0).unwrap();
//! let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), &ram, &frames, qs)
//!     .unwrap();
//! let host = Arc::new(Host::new(&ram, &frames, contexts, inv, tables, DomainId::new(1)));
//!
//! // The guest's vIOMMU; its device is 00:01.0 in the guest and on the host.
//! let layout = GuestLayout::new(PhysAddr::new(1 << 20), 2 << 20);
//! let dev = SourceId::new(0, 1, 0).unwrap();
//! let devices = [Assignment { guest: dev, host: dev }];
//! let guest_ram = GuestMemory::new(&ram, layout);
//! let backend = Native::new(host, GuestPinner::new(layout));
//! let viommu = Viommu::new(guest_ram, backend, &devices, ViommuConfig::qemu()).unwrap();
//!
//! // The guest's driver: its tables in its RAM, its registers trapped.
//! let gframes = SimFrameAllocator::new(guest_ram, PhysAddr::new(1 << 20), PhysAddr::new(2 << 20));
//! let mut gunit = RemappingUnit::new(&viommu).unwrap();
//! assert!(gunit.cap().caching_mode());
//! let gtables = TableConfig::from_cap(gunit.cap(), 39).unwrap();
//! let mut table = SlPageTable::new(guest_ram, &gframes, gtables).unwrap();
//! let mut gcontexts = ContextManager::new(guest_ram, &gframes).unwrap();
//! let _ = gcontexts.attach(dev, DomainId::new(7), &table).unwrap();
//! gunit.set_root_table(gcontexts.root_table(), TranslationTableMode::Legacy).unwrap();
//! gunit.enable_translation().unwrap();
//! gunit.invalidate_context(ContextScope::Global).unwrap();
//!
//! // Map GIOVA 0x5000 to guest page 0x3000; caching mode makes the guest
//! // invalidate, and the vIOMMU maps it in the host, pinned.
//! let iova = Iova::new(0x5000);
//! table.map(iova, PhysAddr::new(0x3000), PageSize::Size4KiB, Perm::READ).unwrap();
//! let scope = IotlbScope::pages(DomainId::new(7), iova, 0, false).unwrap();
//! gunit.invalidate_iotlb(scope, Drain::empty()).unwrap();
//! assert_eq!(hw.translate(dev, iova, Access::Read), Ok(PhysAddr::new(0x10_3000)));
//! assert_eq!(viommu.with_backend(|b| b.pinner().pinned_pages()), 1);
//!
//! // Unmap: after the guest's invalidation the page is unreachable and
//! // unpinned; the host's fault, reported, shows in the guest's unit.
//! let token = table.unmap(iova, PageSize::Size4KiB).unwrap();
//! gunit.invalidate_iotlb(scope, Drain::empty()).unwrap();
//! table.release(token).unwrap();
//! assert!(hw.translate(dev, iova, Access::Read).is_err());
//! assert_eq!(viommu.with_backend(|b| b.pinner().pinned_pages()), 0);
//! viommu.report_host_fault(dev, iova, Access::Read).unwrap();
//! assert_eq!(gunit.drain_faults().next().unwrap().fault_info, 0x5000);
//! # }
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod counters;
mod guest_mem;
pub mod host;
pub mod interrupts;
#[cfg(feature = "alloc")]
mod native;
pub mod nested;
#[cfg(feature = "alloc")]
mod pinner;
pub mod shadow;
pub mod sidecore;
mod viommu;

use core::fmt;

pub use config::{Assignment, ViommuConfig};
pub use counters::ViommuCounters;
pub use guest_mem::{GuestLayout, GuestMemory, GuestRam, HIGH_RAM_START};
pub use host::{HostIommu, Placed};
pub use interrupts::{InterruptRoutes, NoInterruptRoutes};
#[cfg(feature = "alloc")]
pub use native::{Host, Native, NativeCounters, NativeDomain, NativeError};
#[cfg(feature = "alloc")]
pub use pinner::GuestPinner;
pub use shadow::extents::EXTENTS;
pub use shadow::{MAX_DEVICES, MAX_DOMAINS, Shadow};
pub use viommu::{GuestUnit, Viommu};

/// Why a vIOMMU could not be set up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The guest-visible unit's configuration is invalid.
    Config(vtd_emu::ConfigError),
    /// More devices than a vIOMMU without `alloc` holds ([`MAX_DEVICES`]).
    TooManyDevices,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "guest unit: {e}"),
            Error::TooManyDevices => write!(f, "more than {MAX_DEVICES} assigned devices"),
        }
    }
}

impl core::error::Error for Error {}
