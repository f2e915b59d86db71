//! The guest's RAM as the driver's [`PhysMem`]: identity-mapped, so a
//! physical address is a pointer. Accesses are volatile (the remapping
//! unit, emulated by the VMM, reads the same memory) and bounds-checked
//! against the RAM the VMM gave the guest.

use vtd_regs::{MemError, PhysAddr, PhysMem};

use crate::abi;

/// Guest-physical `[0, abi::RAM_SIZE)`, identity-mapped.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityRam;

impl IdentityRam {
    fn check(addr: PhysAddr, len: usize) -> Result<*mut u8, MemError> {
        let a = addr.as_u64();
        match a.checked_add(len as u64) {
            // Page 0 is not handed out to anyone: a null pointer never forms.
            Some(end) if a != 0 && end <= abi::RAM_SIZE => Ok(a as *mut u8),
            _ => Err(MemError::OutOfRange { addr, len }),
        }
    }
}

impl PhysMem for IdentityRam {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        let p = Self::check(addr, 8)?;
        // SAFETY: in RAM (checked), aligned, identity-mapped; no Rust
        // reference covers driver memory (tables, ring, buffers).
        Ok(unsafe { p.cast::<u64>().read_volatile() })
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        let p = Self::check(addr, 8)?;
        // SAFETY: as in `read_u64`.
        unsafe { p.cast::<u64>().write_volatile(value) };
        Ok(())
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let p = Self::check(addr, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `i < len` of a checked range.
            *b = unsafe { p.add(i).read_volatile() };
        }
        Ok(())
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        let p = Self::check(addr, data.len())?;
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: `i < len` of a checked range.
            unsafe { p.add(i).write_volatile(b) };
        }
        Ok(())
    }
}
