//! Test support: QEMU's `intel-iommu`, an independent VT-d implementation,
//! and its `edu` PCI device, which does real DMA through it, driven from a
//! host-side test over QEMU's qtest protocol.
//!
//! The test plays the guest's driver: it writes translation tables into guest
//! RAM ([`QtestMem`], a [`vtd_regs::PhysMem`], with frames from
//! [`GuestFrames`], a [`vtd_regs::FrameAllocator`]), programs the remapping
//! unit's registers ([`QtestMmio`], a [`vtd_regs::Mmio`]) and has the edu
//! device copy through IOVAs ([`Edu`]). A missing QEMU binary is an error
//! ([`Error::QemuNotFound`], naming the Debian package), never a skip.
//!
//! [`diff`] plays one scripted scenario on QEMU and on `vtd-emu` and
//! compares what each did (docs/qemu-vs-vtd-emu.md has the results).
//!
//! ```no_run
//! use viommu_qtest::{Edu, IommuOptions, Qemu, QtestMmio};
//! use vtd_regs::{Mmio, regs::Cap};
//!
//! let qemu = Qemu::start(&IommuOptions::default())?;
//! let cap: Cap = QtestMmio::new(&qemu).read_reg();
//! assert_eq!(cap.mgaw().bits(), 39);
//! let edu = Edu::probe(&qemu)?;
//! assert_eq!(edu.source_id().raw(), 0x0008);
//! qemu.check()?;
//! # Ok::<(), viommu_qtest::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks, missing_docs)]

mod acpi;
pub mod client;
pub mod diff;
pub mod edu;
pub mod error;
pub mod frames;
pub mod mem;
pub mod mmio;
mod msi;
pub mod pci;
pub mod qemu;

pub use client::Qtest;
pub use edu::{EDU_BUFFER_SIZE, Edu};
pub use error::{Error, QEMU_PACKAGE, Result};
pub use frames::GuestFrames;
pub use mem::QtestMem;
pub use mmio::QtestMmio;
pub use qemu::{IommuOptions, Qemu, RAM_SIZE, VTD_BASE};
