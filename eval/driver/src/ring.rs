//! The NIC's receive ring in memory: the driver posts buffers by (IO)VA,
//! the device writes a frame into each and completes it.
//!
//! Slot `i` is three little-endian words at `RING + i * SLOT_BYTES`: the
//! DMA address, the buffer's sequence number, the status.

use vtd_regs::{MemError, PhysAddr, PhysMem};

use crate::layout::RING;

/// Slots in the ring (buffers per doorbell at most).
pub const SLOTS: u64 = 64;
/// Bytes per slot.
pub const SLOT_BYTES: u64 = 32;
/// Status: posted by the driver, not yet filled.
pub const POSTED: u64 = 1;
/// Status: the device wrote the frame.
pub const DONE: u64 = 2;
/// Status: the device's DMA was blocked by the IOMMU.
pub const FAULTED: u64 = 3;

/// Address of word `word` (0 address, 1 sequence, 2 status) of slot `slot`.
#[must_use]
pub const fn word(slot: u64, word: u64) -> PhysAddr {
    PhysAddr::new(RING + slot * SLOT_BYTES + word * 8)
}

/// Posts `addr` for buffer `seq` in `slot`.
pub fn post<M: PhysMem>(mem: &M, slot: u64, addr: u64, seq: u64) -> Result<(), MemError> {
    mem.write_u64(word(slot, 0), addr)?;
    mem.write_u64(word(slot, 1), seq)?;
    mem.write_u64(word(slot, 2), POSTED)
}

/// Byte `offset` of the frame the device writes into buffer `seq`.
#[must_use]
pub const fn pattern(seq: u64, offset: u64) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (offset as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_neighbouring_buffers_differ_everywhere() {
        for seq in 0..256 {
            for offset in 0..1500 {
                assert_ne!(pattern(seq, offset), pattern(seq + 1, offset), "{seq} {offset}");
            }
        }
        // Slots do not overlap.
        assert_eq!(word(1, 0).as_u64() - word(0, 2).as_u64(), SLOT_BYTES - 16);
    }
}
