//! The fixed guest-physical page layout both backends use, so that entry
//! values and DMA results are the same numbers on each.
//!
//! Pages `[0, DATA)` hold tables and the invalidation queue and start
//! zeroed; pages `[DATA, SEED)` are data pages whose every 8-byte word holds
//! [`DATA_MAGIC`] | its own physical address, so that the bytes a DMA read
//! returns say where they came from. [`SEED`] and [`SCRATCH`] belong to the
//! runner.

use vtd_regs::{PAGE_SIZE, PhysAddr};

/// The first page: 16 MiB, clear of the low megabyte of QEMU's guest.
pub const BASE: u64 = 16 << 20;
/// The root table.
pub const ROOT: u64 = 0;
/// The context table of bus 0.
pub const CONTEXT: u64 = 1;
/// The top (level-3) second-level table of a 39-bit domain.
pub const L3: u64 = 2;
/// A level-2 table.
pub const L2: u64 = 3;
/// A level-1 table.
pub const L1: u64 = 4;
/// The invalidation queue (one page, 256 descriptors of 128 bits).
pub const QUEUE: u64 = 5;
/// A spare table page (in scalable mode: the edu device's PASID
/// directory).
pub const SPARE: u64 = 6;
/// The PASID table of PASIDs 0-63 (scalable mode).
pub const PASID_TABLE: u64 = 7;
/// The first data page.
pub const DATA: u64 = 8;
/// The page the runner loads the device buffer from (not scanned).
pub const SEED: u64 = 12;
/// The page the runner copies the device buffer out to (not scanned).
pub const SCRATCH: u64 = 13;
/// How many pages the layout spans.
pub const PAGES: u64 = 14;

/// The tag of every word of a data page: bits 63:48.
pub const DATA_MAGIC: u64 = 0xDA7A << 48;
/// The tag of the words the runner puts in the device buffer: bits 63:48.
pub const MARK_MAGIC: u64 = 0x3A2C << 48;
/// Mask of the tag bits.
pub const MAGIC_MASK: u64 = 0xFFFF << 48;

/// The physical address of `page` of the layout.
pub const fn page(page: u64) -> PhysAddr {
    PhysAddr::new(BASE + page * PAGE_SIZE)
}

/// The physical address `offset` bytes into `page`.
pub const fn at(page: u64, offset: u64) -> PhysAddr {
    PhysAddr::new(BASE + page * PAGE_SIZE + offset)
}

/// The contents of data page `n` (its every word tags its own address).
pub fn data_page(n: u64) -> Vec<u8> {
    let base = page(n).as_u64();
    (0..PAGE_SIZE / 8).flat_map(|i| (DATA_MAGIC | (base + i * 8)).to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_words_tag_their_address() {
        let p = data_page(DATA);
        let word = |i: usize| u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(word(0), DATA_MAGIC | 0x100_8000);
        assert_eq!(word(511), DATA_MAGIC | 0x100_8FF8);
        assert_eq!(at(L1, 8), PhysAddr::new(0x100_4008));
    }
}
