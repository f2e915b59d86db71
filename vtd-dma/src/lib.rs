//! The DMA API of an Intel VT-d remapping unit, for OS kernels, unikernels
//! and hypervisors that own their IOMMU: the one type a driver holds,
//! [`DmaDomain`], built from the viommu crates (`vtd-regs`, `vtd-tables`,
//! `iova-alloc`, `invalidation`, `teardown`) over the platform the OS
//! provides ([`Platform`]: memory, frames, a clock; register access,
//! [`Mmio`]).
//!
//! ```
//! use iommu_platform::StdClock; // `vtd_dma::StdClock` with the `std` feature
//! use vtd_dma::{Direction, DmaConfig, DmaDomain, PhysAddr, SourceId};
//! use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
//!
//! // A software VT-d over simulated RAM stands in for the hardware here.
//! let ram = HeapMemory::new(8 << 20);
//! let frames = SimFrameAllocator::new(&ram, PhysAddr::new(4 << 20), PhysAddr::new(8 << 20));
//! let unit = Emulator::new(&ram, EmuConfig::qemu()).unwrap();
//! let platform = (&ram, &frames, StdClock::new());
//!
//! let mut dma = DmaDomain::new(platform, &unit, DmaConfig::lazy())?;
//! let disk = SourceId::new(0, 3, 0).unwrap();
//! dma.attach(disk)?;
//!
//! // One buffer, a scatter-gather list, coherent memory for a ring.
//! let frame = dma.map(PhysAddr::new(0x10_0000), 4096, Direction::ToDevice)?;
//! let sg = [(PhysAddr::new(0x20_0000), 4096), (PhysAddr::new(0x30_0000), 8192)];
//! let request = dma.map_sg(&sg, Direction::FromDevice)?;
//! let ring = dma.alloc_coherent(4096)?;
//! assert_eq!(unit.translate(disk, ring.iova(), vtd_emu::Access::Write), Ok(ring.phys()));
//!
//! dma.unmap(frame, 4096)?;
//! dma.unmap_sg(request, &sg)?;
//! dma.free_coherent(ring)?;
//! dma.flush()?; // every invalidation owed has completed
//! assert!(unit.translate(disk, frame, vtd_emu::Access::Read).is_err());
//! # Ok::<(), vtd_dma::Error>(())
//! ```
//!
//! References are to the Intel Virtualization Technology for Directed I/O
//! Architecture Specification, revision 3.x (`§x.y`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
pub mod dmar;
mod domain;
mod error;

pub use config::{Direction, DmaConfig};
pub use dmar::{DmarUnit, ReservedRegion};
pub use domain::{Coherent, DmaDomain, DmaStats};
pub use error::{Error, Result};

// What a driver names besides the facade, from the layers below.
pub use invalidation::FlushConfig;
#[cfg(feature = "std")]
pub use iommu_platform::StdClock;
#[cfg(target_arch = "x86_64")]
pub use iommu_platform::TscClock;
pub use iommu_platform::{
    Clock, FrameAllocator, Instant, Iova, MemError, NoClock, PhysAddr, PhysMem, Platform,
    RegionFrames,
};
#[cfg(feature = "alloc")]
pub use teardown::Runtime;
pub use teardown::{Capacity, Fixed, Reuse, sg_iova};
pub use vtd_regs::{DomainId, Mmio, SourceId, VolatileMmio};
