//! Guest RAM: one anonymous mapping registered as KVM memory slot 0, and
//! the same RAM as a [`PhysMem`] for the VT-d emulator and the device
//! model, which read and write guest memory while the guest runs.

use std::{io, ptr::NonNull};

use vtd_regs::{MemError, PhysAddr, PhysMem};

/// Guest RAM starting at guest-physical 0.
pub struct GuestRam {
    base: NonNull<u8>,
    size: usize,
}

// SAFETY: `GuestRam` owns its mapping (freed only in `Drop`); every access
// goes through bounds-checked raw-pointer copies, never references, so
// sharing it between the vCPU thread and a sidecore thread is sound: the
// guest and the VMM threads race on guest memory only as hardware and
// software race on RAM (torn values, never undefined behaviour in the
// VMM's own memory).
unsafe impl Send for GuestRam {}
// SAFETY: see `Send` above.
unsafe impl Sync for GuestRam {}

impl GuestRam {
    /// Maps `size` bytes of zeroed, private anonymous memory.
    pub fn new(size: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { base, size })
    }

    /// Host virtual address of guest-physical 0.
    #[must_use]
    pub fn host_addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Size in bytes.
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    fn range(&self, gpa: u64, len: usize) -> io::Result<usize> {
        let start = usize::try_from(gpa).map_err(|_| oob(gpa))?;
        match start.checked_add(len) {
            Some(end) if end <= self.size => Ok(start),
            _ => Err(oob(gpa)),
        }
    }

    /// Copies `data` to guest-physical `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> io::Result<()> {
        let start = self.range(gpa, data.len())?;
        // SAFETY: `range` checked the destination lies inside the mapping;
        // the vCPU is not running while the VMM writes (single thread).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(start), data.len())
        };
        Ok(())
    }

    /// Writes a little-endian u64 at `gpa`.
    pub fn write_u64(&self, gpa: u64, value: u64) -> io::Result<()> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// Reads a little-endian u64 at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> io::Result<u64> {
        let start = self.range(gpa, 8)?;
        let mut buf = [0u8; 8];
        // SAFETY: `range` checked the source lies inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(start), buf.as_mut_ptr(), 8)
        };
        Ok(u64::from_le_bytes(buf))
    }

    /// Fills `buf` from guest-physical `gpa`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = self.range(gpa, buf.len())?;
        // SAFETY: `range` checked the source lies inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// The whole mapping as 32-bit atomic words: the sidecore's view of a
    /// register page the guest writes concurrently.
    pub fn atomic_words(&self) -> io::Result<&[std::sync::atomic::AtomicU32]> {
        if !self.size.is_multiple_of(4) {
            return Err(io::Error::other("mapping is not a whole number of words"));
        }
        // SAFETY: the mapping is page-aligned, `size` bytes long and lives
        // as long as `self`; `AtomicU32` has the size and alignment of
        // `u32` and interior mutability, so shared references to it are
        // sound while the guest (or another thread) writes the same words.
        Ok(unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().cast::<std::sync::atomic::AtomicU32>(),
                self.size / 4,
            )
        })
    }

    /// Host pointer to the naturally aligned word of `size` bytes at `gpa`.
    fn word(&self, gpa: PhysAddr, size: usize) -> Result<*mut u8, MemError> {
        if !gpa.is_aligned(size as u64) {
            return Err(MemError::Misaligned { addr: gpa });
        }
        let start = self
            .range(gpa.as_u64(), size)
            .map_err(|_| MemError::OutOfRange { addr: gpa, len: size })?;
        // SAFETY: `range` put `start + size` within the mapping.
        Ok(unsafe { self.base.as_ptr().add(start) })
    }

    /// Reads `count` u64s starting at `gpa`.
    pub fn read_u64s(&self, gpa: u64, count: u64) -> io::Result<Vec<u64>> {
        (0..count).map(|i| self.read_u64(gpa + i * 8)).collect()
    }
}

/// The emulator's and the device model's view of guest RAM: every access
/// is bounds-checked against the mapping; words are accessed atomically
/// (the guest may write them concurrently, e.g. under a sidecore).
impl PhysMem for GuestRam {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        let p = self.word(addr, 8)?;
        // SAFETY: in the mapping and 8-aligned (`word`); an atomic load
        // tolerates the guest's concurrent writes.
        Ok(unsafe {
            (*p.cast::<std::sync::atomic::AtomicU64>()).load(std::sync::atomic::Ordering::Acquire)
        })
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        let p = self.word(addr, 8)?;
        // SAFETY: as in `read_u64`.
        unsafe {
            (*p.cast::<std::sync::atomic::AtomicU64>())
                .store(value, std::sync::atomic::Ordering::Release)
        };
        Ok(())
    }

    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        let p = self.word(addr, 4)?;
        // SAFETY: in the mapping and 4-aligned (`word`).
        Ok(unsafe {
            (*p.cast::<std::sync::atomic::AtomicU32>()).load(std::sync::atomic::Ordering::Acquire)
        })
    }

    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        let p = self.word(addr, 4)?;
        // SAFETY: as in `read_u32`.
        unsafe {
            (*p.cast::<std::sync::atomic::AtomicU32>())
                .store(value, std::sync::atomic::Ordering::Release)
        };
        Ok(())
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.read(addr.as_u64(), buf).map_err(|_| MemError::OutOfRange { addr, len: buf.len() })
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        self.write(addr.as_u64(), data).map_err(|_| MemError::OutOfRange { addr, len: data.len() })
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` created; the VM using it
        // is dropped first (field order in `Vm`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

fn oob(gpa: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("guest-physical {gpa:#x} outside RAM"))
}
