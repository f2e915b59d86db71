//! 128-bit entries (root and legacy context entries, VT-d §9.1–§9.4) as two
//! little-endian 64-bit words in physical memory.

use vtd_regs::{MemError, PhysAddr, PhysMem};

/// Reads the 128-bit entry at `addr` as (low word, high word).
#[inline]
pub(crate) fn read128<M: PhysMem + ?Sized>(
    mem: &M,
    addr: PhysAddr,
) -> Result<(u64, u64), MemError> {
    let hi_addr = addr.checked_add(8).ok_or(MemError::OutOfRange { addr, len: 16 })?;
    Ok((mem.read_u64(addr)?, mem.read_u64(hi_addr)?))
}

/// Writes the 128-bit entry at `addr`: the high word first, then the low
/// word, which holds the present bit, so the unit never sees a present entry
/// with a stale high half; then flushes it for a non-coherent unit (§6.2.1).
#[inline]
pub(crate) fn write128<M: PhysMem + ?Sized>(
    mem: &M,
    addr: PhysAddr,
    lo: u64,
    hi: u64,
) -> Result<(), MemError> {
    let hi_addr = addr.checked_add(8).ok_or(MemError::OutOfRange { addr, len: 16 })?;
    mem.write_u64(hi_addr, hi)?;
    mem.write_u64(addr, lo)?;
    mem.flush_for_device(addr, 16);
    Ok(())
}

/// Mask of the physical-address bits `12..haw` of a table pointer or page
/// frame (addresses above the host address width are reserved, §9.1–§9.8).
#[inline]
pub(crate) const fn haw_frame_mask(haw: u8) -> u64 {
    let top = if haw >= 64 { u64::MAX } else { (1u64 << haw) - 1 };
    top & !0xfff
}
