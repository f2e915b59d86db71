//! The `PhysMem` and `FrameAllocator` plug-in points: how the library reaches
//! the memory that holds translation tables and the invalidation queue.
//!
//! A native driver implements them over its direct map and its frame
//! allocator; a hypervisor over a guest's RAM; tests over the simulated memory
//! of `vtd-emu`. The remapping unit reads the same memory without the CPU's
//! help, so whatever a driver writes there is read by "hardware", and whatever
//! a guest writes there is hostile input to an emulator.

use core::fmt;

use crate::addr::{PAGE_SIZE, PhysAddr};

/// An access to physical memory the implementation cannot serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// The range is not backed by memory (beyond the end, or a hole).
    OutOfRange {
        /// First byte of the access.
        addr: PhysAddr,
        /// Length of the access in bytes.
        len: usize,
    },
    /// A word access whose address is not a multiple of its size.
    Misaligned {
        /// The address of the access.
        addr: PhysAddr,
    },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::OutOfRange { addr, len } => {
                write!(f, "physical range {:#x}+{:#x} is not backed by memory", addr.as_u64(), len)
            }
            MemError::Misaligned { addr } => {
                write!(f, "misaligned physical access at {:#x}", addr.as_u64())
            }
        }
    }
}

impl core::error::Error for MemError {}

/// Reads and writes physical memory by address.
///
/// Methods take `&self`: the memory is shared with the remapping unit (and, in
/// a hypervisor, with the guest), so implementations use interior mutability
/// and must tolerate concurrent access to the same bytes (torn values are
/// acceptable, undefined behaviour is not). Every access is bounds-checked by
/// the implementation and fails with [`MemError`] rather than touching memory
/// it does not own: callers pass addresses read from untrusted tables.
///
/// Word accesses are little-endian, like VT-d's in-memory structures, and
/// must be naturally aligned.
pub trait PhysMem {
    /// Reads the 64-bit word at `addr` (8-byte aligned).
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError>;

    /// Writes the 64-bit word at `addr` (8-byte aligned).
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError>;

    /// Reads `buf.len()` bytes starting at `addr`.
    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError>;

    /// Writes `data` starting at `addr`.
    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError>;

    /// Reads the 32-bit word at `addr` (4-byte aligned).
    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        if !addr.is_aligned(4) {
            return Err(MemError::Misaligned { addr });
        }
        let mut b = [0u8; 4];
        self.read_bytes(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes the 32-bit word at `addr` (4-byte aligned), e.g. the status
    /// write of an invalidation wait descriptor.
    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        if !addr.is_aligned(4) {
            return Err(MemError::Misaligned { addr });
        }
        self.write_bytes(addr, &value.to_le_bytes())
    }

    /// Zeroes the 4 KiB frame at `frame` (4 KiB aligned).
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        if !frame.is_aligned(PAGE_SIZE) {
            return Err(MemError::Misaligned { addr: frame });
        }
        self.write_bytes(frame, &[0u8; PAGE_SIZE as usize])
    }

    /// Replaces the 64-bit word at `addr` (8-byte aligned) with `new` if it
    /// holds `current`: `Ok(Ok(current))` when it did, `Ok(Err(found))`
    /// with the word found otherwise (nothing written). One atomic
    /// operation (a `lock cmpxchg` on real memory) for a memory that
    /// implements [`AtomicPhysMem`]; the provided method reads then writes,
    /// which is right only for memory one thread updates.
    fn compare_exchange_u64(
        &self,
        addr: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        let found = self.read_u64(addr)?;
        if found != current {
            return Ok(Err(found));
        }
        self.write_u64(addr, new)?;
        Ok(Ok(found))
    }

    /// Reads `out.len()` consecutive 64-bit words from `addr` (8-byte
    /// aligned), each as [`read_u64`](Self::read_u64) reads it (word by
    /// word: a word is never torn). Implementations override it to check
    /// the bounds once.
    fn read_u64s(&self, addr: PhysAddr, out: &mut [u64]) -> Result<(), MemError> {
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.read_u64(word_at(addr, i)?)?;
        }
        Ok(())
    }

    /// Writes `values` to consecutive 64-bit words from `addr` (8-byte
    /// aligned), each as [`write_u64`](Self::write_u64) writes it, in
    /// order (a run of table entries: the unit never sees a torn entry).
    /// Implementations override it to check the bounds once.
    fn write_u64s(&self, addr: PhysAddr, values: &[u64]) -> Result<(), MemError> {
        for (i, &w) in values.iter().enumerate() {
            self.write_u64(word_at(addr, i)?, w)?;
        }
        Ok(())
    }

    /// Makes the CPU's writes to `[addr, addr + len)` visible to a remapping
    /// unit that does not snoop the CPU caches when it walks tables (ECAP.C = 0,
    /// §6.2.1): a `clflush` loop on real hardware. The default
    /// does nothing, which is right for coherent units and simulations.
    fn flush_for_device(&self, addr: PhysAddr, len: usize) {
        let _ = (addr, len);
    }
}

impl<T: PhysMem + ?Sized> PhysMem for &T {
    #[inline]
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        (**self).read_u64(addr)
    }
    #[inline]
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        (**self).write_u64(addr, value)
    }
    #[inline]
    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read_bytes(addr, buf)
    }
    #[inline]
    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        (**self).write_bytes(addr, data)
    }
    #[inline]
    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        (**self).read_u32(addr)
    }
    #[inline]
    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        (**self).write_u32(addr, value)
    }
    #[inline]
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        (**self).zero_frame(frame)
    }
    #[inline]
    fn flush_for_device(&self, addr: PhysAddr, len: usize) {
        (**self).flush_for_device(addr, len)
    }
    #[inline]
    fn compare_exchange_u64(
        &self,
        addr: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        (**self).compare_exchange_u64(addr, current, new)
    }
    #[inline]
    fn read_u64s(&self, addr: PhysAddr, out: &mut [u64]) -> Result<(), MemError> {
        (**self).read_u64s(addr, out)
    }
    #[inline]
    fn write_u64s(&self, addr: PhysAddr, values: &[u64]) -> Result<(), MemError> {
        (**self).write_u64s(addr, values)
    }
}

/// A [`PhysMem`] whose [`compare_exchange_u64`](PhysMem::compare_exchange_u64)
/// is one atomic operation with respect to every other access of the
/// memory, from any thread: what code that updates tables from several
/// CPUs at once (`vtd-tables`' shared table) requires. The provided method
/// is not atomic, so an implementation that overrides it says so by
/// implementing this trait.
pub trait AtomicPhysMem: PhysMem {}

impl<T: AtomicPhysMem + ?Sized> AtomicPhysMem for &T {}

/// The address of word `i` of a run starting at `addr`.
fn word_at(addr: PhysAddr, i: usize) -> Result<PhysAddr, MemError> {
    addr.checked_add(8 * i as u64).ok_or(MemError::OutOfRange { addr, len: 8 * (i + 1) })
}

/// Hands out naturally aligned blocks of 2^order contiguous 4 KiB frames for
/// tables and queues, reachable through the [`PhysMem`] they are used with.
///
/// # Implementation safety
///
/// A block returned by [`allocate`](Self::allocate) must not be in use by
/// anything else until it is given back: the library writes to it through
/// `PhysMem` and the remapping unit reads it as tables. Returning memory that
/// Rust code or another device also uses corrupts both. The contents of a new
/// block are unspecified; the library zeroes what it needs.
///
/// [`deallocate`](Self::deallocate) is safe to call, so the implementation
/// must stay sound when a caller breaks its contract (a double free, a wrong
/// order, freeing a block still in use): such a block may be handed out again
/// only to users that reach it through [`PhysMem`], never as memory Rust code
/// holds references to (e.g. keep table frames in their own pool).
#[allow(unsafe_code)] // reason: unsafe to implement (see above), safe to call
pub unsafe trait FrameAllocator {
    /// Allocates 2^`order` contiguous frames aligned to their total size, or
    /// `None` when out of memory.
    fn allocate(&self, order: u8) -> Option<PhysAddr>;

    /// Gives back a block.
    ///
    /// The caller passes `addr` and `order` of one earlier `allocate` on this
    /// allocator, frees the block once, and only when nothing (neither
    /// software nor the remapping unit, so any cached copy must have been
    /// invalidated) uses it any more. The method is safe to call because a
    /// broken promise cannot cause undefined behaviour in Rust code: the block
    /// is only ever reached through [`PhysMem`], whose accesses are checked,
    /// so misuse corrupts the allocator's bookkeeping and the translations
    /// that still use the block (a logic error, like writing a wrong entry
    /// through `PhysMem`), not Rust memory. Implementations must keep it so:
    /// a bad `addr` or `order` is ignored or reported, never trusted to
    /// index memory unchecked.
    fn deallocate(&self, addr: PhysAddr, order: u8);
}

// SAFETY: forwards to `T`, which upholds the contract.
#[allow(unsafe_code)]
unsafe impl<T: FrameAllocator + ?Sized> FrameAllocator for &T {
    #[inline]
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        (**self).allocate(order)
    }
    #[inline]
    fn deallocate(&self, addr: PhysAddr, order: u8) {
        (**self).deallocate(addr, order)
    }
}
