//! An emulated Intel VT-d for hypervisors (a vIOMMU), after "vIOMMU:
//! Efficient IOMMU Emulation" (Amit, Ben-Yehuda, Tsafrir, Schuster; USENIX
//! ATC 2011).
//!
//! A guest with a directly assigned device programs an emulated VT-d unit
//! ([`Viommu`], built on [`vtd_emu::Emulator`] with caching mode on, so the
//! guest invalidates after every map, VT-d §6.1). The vIOMMU shadows each
//! invalidation into the host's unit: it walks the guest's tables (GIOVA ->
//! GPA), pins the guest pages ([`teardown::PagePinner`], GPA -> HPA), maps
//! GIOVA -> HPA in a host domain through a [`teardown::Mapper`] of placed
//! mappings (`Mapper::map_at`), and unpins only after the host
//! invalidation removing a translation completed. That gives the guest:
//! - memory overcommit: a guest page is pinned only while the host unit can
//!   reach it;
//! - intra-guest protection: once the guest's invalidation completed, its
//!   device cannot reach what the guest unmapped, and the fault is reported
//!   in the guest unit's fault recording registers (§7.2);
//! - DMA redirection: the device sees the guest's IOVAs (a 32-bit device can
//!   reach guest memory above 4 GiB);
//! - without weakening inter-guest protection: every host translation points
//!   at a pinned page of the guest's own RAM ([`GuestMemory`],
//!   [`GuestPinner`]), in a host domain of its own.
//!
//! Two front ends drive it: trap-and-emulate (`&Viommu` implements
//! [`Mmio`](vtd_regs::Mmio), one call per trapped access) and the sidecore
//! ([`sidecore`]: the register page is shared memory a polling thread
//! serves).
//!
//! Without the `alloc` feature only [`GuestMemory`] and the sidecore's
//! register page are available.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use invalidation::QueuedInvalidator;
//! use viommu::{Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Viommu, ViommuConfig};
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
//! let host = spin::Mutex::new(Host::new(&ram, &frames, contexts, inv, tables, DomainId::new(1)));
//!
//! // The guest's vIOMMU; its device is 00:01.0 in the guest and on the host.
//! let layout = GuestLayout::new(PhysAddr::new(1 << 20), 2 << 20);
//! let dev = SourceId::new(0, 1, 0).unwrap();
//! let devices = [Assignment { guest: dev, host: dev }];
//! let guest_ram = GuestMemory::new(&ram, layout);
//! let pinner = GuestPinner::new(layout);
//! let viommu = Viommu::new(guest_ram, &host, pinner, &devices, ViommuConfig::qemu()).unwrap();
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
//! // invalidate, and the vIOMMU shadows the mapping with the host frame.
//! let iova = Iova::new(0x5000);
//! table.map(iova, PhysAddr::new(0x3000), PageSize::Size4KiB, Perm::READ).unwrap();
//! let scope = IotlbScope::pages(DomainId::new(7), iova, 0, false).unwrap();
//! gunit.invalidate_iotlb(scope, Drain::empty()).unwrap();
//! assert_eq!(viommu.dma(&hw, dev, iova, Access::Read), Ok(PhysAddr::new(0x10_3000)));
//! assert_eq!(viommu.with_pinner(|p| p.pinned_pages()), 1);
//!
//! // Unmap: after the guest's invalidation the page is unreachable and
//! // unpinned.
//! let token = table.unmap(iova, PageSize::Size4KiB).unwrap();
//! gunit.invalidate_iotlb(scope, Drain::empty()).unwrap();
//! table.release(token).unwrap();
//! assert!(viommu.dma(&hw, dev, iova, Access::Read).is_err());
//! assert_eq!(viommu.with_pinner(|p| p.pinned_pages()), 0);
//! # }
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod counters;
mod guest_mem;
#[cfg(feature = "alloc")]
mod host;
#[cfg(feature = "alloc")]
mod pinner;
#[cfg(feature = "alloc")]
mod scan;
#[cfg(feature = "alloc")]
mod shadow;
pub mod sidecore;
#[cfg(feature = "alloc")]
mod viommu;

use core::fmt;

pub use counters::ViommuCounters;
pub use guest_mem::{GuestLayout, GuestMemory, HIGH_RAM_START};
#[cfg(feature = "alloc")]
pub use host::Host;
#[cfg(feature = "alloc")]
pub use pinner::GuestPinner;
#[cfg(feature = "alloc")]
pub use viommu::{Assignment, Viommu, ViommuConfig};

/// Why a vIOMMU could not be set up or could not do its work.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The guest-visible unit's configuration is invalid.
    Config(vtd_emu::ConfigError),
    /// A host table could not be built or changed.
    Table(vtd_tables::Error),
    /// The host unit's invalidation failed.
    Invalidation(invalidation::Error),
    /// Every host domain id is in use.
    OutOfDomains,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "guest unit: {e}"),
            Error::Table(e) => write!(f, "host table: {e}"),
            Error::Invalidation(e) => write!(f, "host invalidation: {e}"),
            Error::OutOfDomains => f.write_str("no host domain id left"),
        }
    }
}

impl core::error::Error for Error {}
