//! A unikernel's receive path, written as an OS author would with
//! `vtd-dma`: bring the VT-d unit the NIC sits behind up from the DMAR
//! table, attach the NIC, and map each receive buffer for the NIC's DMA,
//! 1000 of them over a ring of 64, with optimistic reuse over deferred
//! invalidation. `no_std`, no heap, no generic parameter for the caller.
//!
//! The same code runs on the software VT-d (`cargo run -p viommu-examples
//! --bin unikernel`) and on QEMU's `intel-iommu` (the `viommu-qtest` test
//! `unikernel`), where the `edu` device does the DMA.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use vtd_dma::{Direction, DmaConfig, DmaDomain, Error, Iova, Mmio, PhysAddr, Platform, SourceId};

/// Buffers received.
pub const BUFFERS: u64 = 1000;
/// Buffers in the receive ring, 2 KiB apart: the driver keeps recycling them.
pub const RING: u64 = 64;
/// Bytes per frame.
pub const FRAME: u64 = 1500;

/// What the run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Buffers mapped.
    pub maps: u64,
    /// Maps served by a mapping kept from an earlier unmap.
    pub reused: u64,
    /// Writes of the invalidation queue's tail (VM exits under emulation).
    pub tail_writes: u64,
}

/// Receives [`BUFFERS`] frames from `nic` into the ring at `ring`: each
/// buffer mapped for the NIC to write, handed to `device` (its IOVA and
/// where it is), and unmapped. The unit is found in `dmar` and its
/// registers reached through `registers`.
///
/// # Errors
/// The DMA API's: no unit for the NIC, a unit that does not answer, ...
pub fn receive<R: Mmio>(
    platform: impl Platform,
    dmar: &[u8],
    registers: impl FnOnce(PhysAddr) -> Option<R>,
    nic: SourceId,
    ring: PhysAddr,
    mut device: impl FnMut(Iova, PhysAddr),
) -> Result<Report, Error> {
    let mut dma = DmaDomain::from_dmar(platform, dmar, nic, registers, DmaConfig::optimistic())?;
    dma.attach(nic)?;
    for n in 0..BUFFERS {
        let buffer = PhysAddr::new(ring.as_u64() + (n % RING) * 2048);
        let iova = dma.map(buffer, FRAME, Direction::FromDevice)?;
        device(iova, buffer);
        dma.unmap(iova, FRAME)?;
    }
    dma.flush()?;
    let stats = dma.stats();
    let (maps, reused) = (stats.mapper.maps, stats.mapper.reuse_hits);
    Ok(Report { maps, reused, tail_writes: stats.invalidator.tail_writes })
}
