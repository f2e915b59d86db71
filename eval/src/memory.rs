//! Guest RAM: one anonymous mapping registered as KVM memory slot 0.

use std::{io, ptr::NonNull};

/// Guest RAM starting at guest-physical 0.
pub struct GuestRam {
    base: NonNull<u8>,
    size: usize,
}

impl GuestRam {
    /// Maps `size` bytes of zeroed, private anonymous memory.
    pub fn new(size: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
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

    /// Reads `count` u64s starting at `gpa`.
    pub fn read_u64s(&self, gpa: u64, count: u64) -> io::Result<Vec<u64>> {
        (0..count).map(|i| self.read_u64(gpa + i * 8)).collect()
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
