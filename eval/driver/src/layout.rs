//! Where things live in the driver's physical memory (guest-physical in
//! the VM, simulated-physical on bare metal): the same addresses both ways.

use vtd_regs::{DomainId, SourceId};

/// RAM size (one slot at physical 0).
pub const RAM_SIZE: u64 = 64 << 20;
/// The NIC's receive ring ([`crate::ring`]).
pub const RING: u64 = 0x108_0000;
/// Frames for tables and the invalidation queue: `[FRAMES_START, FRAMES_END)`.
pub const FRAMES_START: u64 = 0x110_0000;
/// End of the frame pool.
pub const FRAMES_END: u64 = 0x190_0000;
/// Receive buffers: one 4 KiB page each, `POOL_PAGES` of them.
pub const BUFFERS: u64 = 0x200_0000;
/// Buffer pages the driver cycles through (the pages a NIC driver's
/// receive ring keeps recycling).
pub const POOL_PAGES: u64 = 64;
/// Per-buffer samples, for the first [`MAX_SAMPLES`] buffers: three words
/// per buffer, the cycles of its map, of its unmap, and from its
/// completion to the end of its unmap (check, work, unmap).
pub const SAMPLES: u64 = 0x300_0000;
/// Bytes of samples per buffer.
pub const SAMPLE_BYTES: u64 = 24;
/// Buffers with samples kept.
pub const MAX_SAMPLES: u64 = (RAM_SIZE - SAMPLES) / SAMPLE_BYTES;
/// Bytes the device writes per buffer (an Ethernet frame).
pub const FRAME_LEN: u64 = 1500;
/// The NIC: 00:01.0.
pub const NIC: SourceId = SourceId::from_raw(0x0008);
/// Its protection domain.
pub const DOMAIN: DomainId = DomainId::new(1);
/// IOVA width of the domain's table.
pub const IOVA_BITS: u8 = 39;

/// Touches every page the driver and the device will use (ring, frame
/// pool, buffer pool), so that first-touch page faults (the host's, and a
/// guest's shadow or nested paging) stay out of the measurements.
pub fn warm_up<M: vtd_regs::PhysMem>(mem: &M) -> Result<(), vtd_regs::MemError> {
    let regions = [
        (RING, RING + crate::ring::SLOTS * crate::ring::SLOT_BYTES),
        (FRAMES_START, FRAMES_END),
        (BUFFERS, BUFFERS + POOL_PAGES * 4096),
    ];
    for (start, end) in regions {
        let mut page = start & !0xfff;
        while page < end {
            let at = vtd_regs::PhysAddr::new(page);
            let v = mem.read_u64(at)?;
            mem.write_u64(at, v)?;
            page += 4096;
        }
    }
    Ok(())
}
