//! Guest RAM: rust-vmm's [`GuestMemoryMmap`] (one anonymous mapping at
//! guest-physical 0, registered as a KVM memory slot), and the same RAM as
//! a [`PhysMem`] for the VT-d emulator and the device model, which read
//! and write guest memory while the guest runs.

use std::{
    io,
    sync::atomic::{AtomicU32, Ordering},
};

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap, GuestRegionMmap,
    MmapRegion,
};
use vtd_regs::{MemError, PhysAddr, PhysMem};

/// Guest RAM starting at guest-physical 0.
pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: usize,
}

impl GuestRam {
    /// Maps `size` bytes of zeroed, private anonymous memory, populated up
    /// front (first-touch faults stay out of the measurements).
    pub fn new(size: usize) -> io::Result<Self> {
        let region = MmapRegion::build(
            None,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_POPULATE,
        )
        .map_err(io::Error::other)?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or_else(|| io::Error::other("guest RAM larger than the address space"))?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(io::Error::other)?;
        Ok(Self { mem, size })
    }

    /// Host virtual address of guest-physical 0.
    #[must_use]
    pub fn host_addr(&self) -> u64 {
        self.base() as u64
    }

    fn base(&self) -> *mut u8 {
        // Guest-physical 0 is the start of the one region `new` made.
        self.mem.get_host_address(GuestAddress(0)).unwrap_or(std::ptr::null_mut())
    }

    /// Size in bytes.
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Copies `data` to guest-physical `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> io::Result<()> {
        self.mem.write_slice(data, GuestAddress(gpa)).map_err(|e| oob(gpa, &e))
    }

    /// Writes a little-endian u64 at `gpa`.
    pub fn write_u64(&self, gpa: u64, value: u64) -> io::Result<()> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// Reads a little-endian u64 at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        self.read(gpa, &mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }

    /// Fills `buf` from guest-physical `gpa`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> io::Result<()> {
        self.mem.read_slice(buf, GuestAddress(gpa)).map_err(|e| oob(gpa, &e))
    }

    /// Reads `count` u64s starting at `gpa`.
    pub fn read_u64s(&self, gpa: u64, count: u64) -> io::Result<Vec<u64>> {
        (0..count).map(|i| self.read_u64(gpa + i * 8)).collect()
    }

    /// The whole mapping as 32-bit atomic words: the sidecore's view of a
    /// register page the guest writes concurrently.
    pub fn atomic_words(&self) -> io::Result<&[AtomicU32]> {
        let base = self.base();
        if !self.size.is_multiple_of(4) || base.is_null() {
            return Err(io::Error::other("mapping is not a whole number of words"));
        }
        // SAFETY: the region is page-aligned, `size` bytes long and mapped
        // as long as `self.mem` (so as long as the returned borrow of
        // `self`); `AtomicU32` has the size and alignment of `u32` and
        // interior mutability, so shared references to it are sound while
        // the guest (or another thread) writes the same words.
        Ok(unsafe { std::slice::from_raw_parts(base.cast::<AtomicU32>(), self.size / 4) })
    }

    /// `addr`, checked for a naturally aligned access of `size` bytes.
    fn aligned(&self, addr: PhysAddr, size: usize) -> Result<GuestAddress, MemError> {
        if !addr.is_aligned(size as u64) {
            return Err(MemError::Misaligned { addr });
        }
        Ok(GuestAddress(addr.as_u64()))
    }
}

/// The emulator's and the device model's view of guest RAM: every access
/// is bounds-checked by vm-memory; words are accessed atomically (the
/// guest may write them concurrently, e.g. under a sidecore).
impl PhysMem for GuestRam {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        let at = self.aligned(addr, 8)?;
        self.mem.load(at, Ordering::Acquire).map_err(|_| MemError::OutOfRange { addr, len: 8 })
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        let at = self.aligned(addr, 8)?;
        self.mem
            .store(value, at, Ordering::Release)
            .map_err(|_| MemError::OutOfRange { addr, len: 8 })
    }

    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        let at = self.aligned(addr, 4)?;
        self.mem.load(at, Ordering::Acquire).map_err(|_| MemError::OutOfRange { addr, len: 4 })
    }

    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        let at = self.aligned(addr, 4)?;
        self.mem
            .store(value, at, Ordering::Release)
            .map_err(|_| MemError::OutOfRange { addr, len: 4 })
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.read(addr.as_u64(), buf).map_err(|_| MemError::OutOfRange { addr, len: buf.len() })
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        self.write(addr.as_u64(), data).map_err(|_| MemError::OutOfRange { addr, len: data.len() })
    }
}

fn oob(gpa: u64, e: &GuestMemoryError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("guest-physical {gpa:#x}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_bounds_and_alignment_checked() {
        let ram = GuestRam::new(0x2000).expect("mmap");
        ram.write_u64(0x1ff8, 0x1122_3344_5566_7788).expect("last word");
        assert_eq!(PhysMem::read_u64(&ram, PhysAddr::new(0x1ff8)), Ok(0x1122_3344_5566_7788));
        assert_eq!(PhysMem::read_u32(&ram, PhysAddr::new(0x1ffc)), Ok(0x1122_3344));
        assert!(ram.write(0x1ffc, &[0; 8]).is_err(), "straddles the end");
        assert!(ram.read_u64(0x2000).is_err());
        assert_eq!(
            PhysMem::read_u64(&ram, PhysAddr::new(0x1004)),
            Err(MemError::Misaligned { addr: PhysAddr::new(0x1004) })
        );
        assert_eq!(
            PhysMem::write_u32(&ram, PhysAddr::new(0x2000), 1),
            Err(MemError::OutOfRange { addr: PhysAddr::new(0x2000), len: 4 })
        );
        let words = ram.atomic_words().expect("words");
        assert_eq!(words.len(), 0x800);
        assert_eq!(words[0x7fe].load(Ordering::Relaxed), 0x5566_7788);
    }
}
