//! Where things live in the driver's physical memory (guest-physical in
//! the VM, simulated-physical on bare metal): the same addresses both ways.

use vtd_regs::{DomainId, SourceId};

/// RAM size (one slot at physical 0).
pub const RAM_SIZE: u64 = 64 << 20;
/// The NIC's receive ring ([`crate::ring`]).
pub const RING: u64 = 0x108_0000;
/// The NIC's transmit ring ([`crate::ring::tx_word`]).
pub const TX_RING: u64 = 0x108_1000;
/// Frames for tables and the invalidation queue: `[FRAMES_START, FRAMES_END)`.
pub const FRAMES_START: u64 = 0x110_0000;
/// End of the frame pool.
pub const FRAMES_END: u64 = 0x190_0000;
/// Receive buffers: one 4 KiB page each, `POOL_PAGES` of them.
pub const BUFFERS: u64 = 0x200_0000;
/// Buffer pages the driver cycles through (the pages a NIC driver's
/// receive ring keeps recycling).
pub const POOL_PAGES: u64 = 64;
/// Transmit buffers (the request-response workload's responses): one
/// 4 KiB page each, [`TX_POOL_PAGES`] of them, handed out last-freed
/// first as a kernel's page allocator does.
pub const TX_BUFFERS: u64 = 0x210_0000;
/// Transmit buffer pages.
pub const TX_POOL_PAGES: u64 = 512;
/// The static site's files (the request-response workload with files):
/// file `f` occupies `[FILES + f * FILE_SLOT, + its length)`, physically
/// contiguous, as page-cache pages a web server sends from.
pub const FILES: u64 = 0x230_0000;
/// Bytes reserved per file (the largest file).
pub const FILE_SLOT: u64 = 64 << 10;
/// Files at most.
pub const MAX_FILES: u64 = 64;
/// Per-buffer (receive) or per-request (request-response) samples, for the
/// first [`MAX_SAMPLES`]: three words each. Receive: the cycles of the
/// buffer's map, of its unmap, and from its completion to the end of its
/// unmap (check, work, unmap). Request-response: see
/// [`crate::request_response`].
pub const SAMPLES: u64 = 0x300_0000;
/// Bytes of samples per buffer or request.
pub const SAMPLE_BYTES: u64 = 24;
/// Buffers or requests with samples kept.
pub const MAX_SAMPLES: u64 = (RAM_SIZE - SAMPLES) / SAMPLE_BYTES;
/// Bytes the device writes per buffer (an Ethernet frame).
pub const FRAME_LEN: u64 = 1500;
/// The NIC: 00:01.0.
pub const NIC: SourceId = SourceId::from_raw(0x0008);
/// Its protection domain.
pub const DOMAIN: DomainId = DomainId::new(1);
/// IOVA width of the domain's table.
pub const IOVA_BITS: u8 = 39;

/// Touches every page the driver and the device will use (rings, frame
/// pool, buffer pools), so that first-touch page faults (the host's, and a
/// guest's shadow or nested paging) stay out of the measurements.
pub fn warm_up<M: vtd_regs::PhysMem>(mem: &M) -> Result<(), vtd_regs::MemError> {
    use crate::ring::{SLOT_BYTES, SLOTS, TX_SLOTS};
    let regions = [
        (RING, RING + SLOTS * SLOT_BYTES),
        (TX_RING, TX_RING + TX_SLOTS * SLOT_BYTES),
        (FRAMES_START, FRAMES_END),
        (BUFFERS, BUFFERS + POOL_PAGES * 4096),
        (TX_BUFFERS, TX_BUFFERS + TX_POOL_PAGES * 4096),
        (FILES, FILES + MAX_FILES * FILE_SLOT),
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

// The regions do not overlap, and the samples stay clear of the buffers.
const _: () = {
    assert!(RING + crate::ring::SLOTS * crate::ring::SLOT_BYTES <= TX_RING);
    assert!(TX_RING + crate::ring::TX_SLOTS * crate::ring::SLOT_BYTES <= FRAMES_START);
    assert!(FRAMES_END <= BUFFERS);
    assert!(BUFFERS + POOL_PAGES * 4096 <= TX_BUFFERS);
    assert!(TX_BUFFERS + TX_POOL_PAGES * 4096 <= FILES);
    assert!(FILES + MAX_FILES * FILE_SLOT <= SAMPLES);
};
