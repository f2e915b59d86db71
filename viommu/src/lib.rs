//! An emulated Intel VT-d for hypervisors (a vIOMMU), after "vIOMMU:
//! Efficient IOMMU Emulation" (Amit, Ben-Yehuda, Tsafrir, Schuster; USENIX
//! ATC 2011).
//!
//! A guest with a directly assigned device programs an emulated VT-d unit
//! ([`Viommu`], built on [`vtd_emu::Emulator`] with caching mode on, so the
//! guest invalidates after every map, VT-d §6.1). The vIOMMU shadows each
//! invalidation into the host's unit: it walks the guest's tables (GIOVA ->
//! GPA), pins the guest pages ([`teardown::PagePinner`], GPA -> HPA), maps
//! GIOVA -> HPA in a host domain, and unpins only after the host
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
