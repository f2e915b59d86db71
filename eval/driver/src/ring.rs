//! The NIC's rings in memory: the driver posts buffers by (IO)VA, the
//! device fills (receive) or reads (transmit) each and completes it.
//!
//! Slot `i` of the receive ring is words at `RING + i * SLOT_BYTES`: the
//! DMA address, the buffer's sequence number (the request's id, once the
//! device put a request in it), the status. Slot `i` of the transmit ring
//! is words at `TX_RING + i * SLOT_BYTES`: the DMA address, the frame's
//! tag ([`response_tag`]), the status, and the length with
//! [`LAST_FRAME`] set on the last frame of a response.

use vtd_regs::{MemError, PhysAddr, PhysMem};

use crate::layout::{RING, TX_RING};

/// Slots in the receive ring (buffers per doorbell, or outstanding
/// requests, at most).
pub const SLOTS: u64 = 64;
/// Slots in the transmit ring (frames per doorbell at most).
pub const TX_SLOTS: u64 = 512;
/// Bytes per slot.
pub const SLOT_BYTES: u64 = 32;
/// Status: posted by the driver, not yet filled.
pub const POSTED: u64 = 1;
/// Status: the device wrote (receive) or read (transmit) the buffer.
pub const DONE: u64 = 2;
/// Status: the device's DMA was blocked by the IOMMU.
pub const FAULTED: u64 = 3;
/// Length word of a transmit slot: the frame ends its response.
pub const LAST_FRAME: u64 = 1 << 63;

/// A doorbell the driver rings; when the call returns the device has done
/// what it asks (the model's device is synchronous).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doorbell {
    /// Receive slots `0..n` are posted: fill them with frames.
    Receive(u64),
    /// Transmit slots `0..n` are posted: send them; then the client sends
    /// its next requests into posted receive slots (one per response it
    /// received, keeping its concurrency; at the first doorbell, as many
    /// as its concurrency).
    Transmit(u64),
}

/// Address of word `word` (0 address, 1 sequence, 2 status) of receive
/// slot `slot`.
#[must_use]
pub const fn word(slot: u64, word: u64) -> PhysAddr {
    PhysAddr::new(RING + slot * SLOT_BYTES + word * 8)
}

/// Address of word `word` (0 address, 1 tag, 2 status, 3 length and
/// [`LAST_FRAME`]) of transmit slot `slot`.
#[must_use]
pub const fn tx_word(slot: u64, word: u64) -> PhysAddr {
    PhysAddr::new(TX_RING + slot * SLOT_BYTES + word * 8)
}

/// Posts `addr` for buffer `seq` in receive slot `slot`.
pub fn post<M: PhysMem>(mem: &M, slot: u64, addr: u64, seq: u64) -> Result<(), MemError> {
    mem.write_u64(word(slot, 0), addr)?;
    mem.write_u64(word(slot, 1), seq)?;
    mem.write_u64(word(slot, 2), POSTED)
}

/// Posts the frame `tag` of `len` bytes at `addr` in transmit slot `slot`;
/// `last` if it ends its response.
pub fn post_tx<M: PhysMem>(
    mem: &M,
    slot: u64,
    addr: u64,
    tag: u64,
    len: u64,
    last: bool,
) -> Result<(), MemError> {
    mem.write_u64(tx_word(slot, 0), addr)?;
    mem.write_u64(tx_word(slot, 1), tag)?;
    mem.write_u64(tx_word(slot, 3), len | if last { LAST_FRAME } else { 0 })?;
    mem.write_u64(tx_word(slot, 2), POSTED)
}

/// Byte `offset` of the frame the device writes into buffer `seq` (and,
/// with a [`request_tag`] or [`response_tag`] as `seq`, of a request or a
/// response frame).
#[must_use]
pub const fn pattern(seq: u64, offset: u64) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (offset as u8)
}

/// Frames per response at most: a response's frame index fits in the low
/// byte of its tag.
pub const MAX_FRAMES: u64 = 256;

/// The tag whose [`pattern`] a request's bytes follow.
#[must_use]
pub const fn request_tag(request: u64) -> u64 {
    request | 1 << 63
}

/// The tag whose [`pattern`] the bytes of file `file` follow (at their
/// offset in the file).
#[must_use]
pub const fn file_tag(file: u64) -> u64 {
    file | 3 << 62
}

/// The tag of frame `frame` of the response to `request`.
#[must_use]
pub const fn response_tag(request: u64, frame: u64) -> u64 {
    (request << 8) | (frame & (MAX_FRAMES - 1))
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
        assert_eq!(tx_word(1, 0).as_u64() - tx_word(0, 3).as_u64(), SLOT_BYTES - 24);
    }

    #[test]
    fn requests_and_response_frames_have_distinct_tags() {
        let mut tags: std::vec::Vec<u64> = (0..64)
            .flat_map(|r| (0..16).map(move |f| response_tag(r, f)))
            .chain((0..64).map(request_tag))
            .chain((0..64).map(file_tag))
            .collect();
        let n = tags.len();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), n);
        // A response frame and the next request differ in their bytes.
        assert_ne!(pattern(request_tag(3), 0), pattern(response_tag(3, 0), 0));
    }
}
