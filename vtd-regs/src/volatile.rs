//! [`VolatileMmio`]: [`Mmio`] over a mapped register page, with volatile
//! accesses. This is the only module of the crate with `unsafe` code.

use core::ptr::NonNull;

use crate::mmio::Mmio;

/// Register access to a remapping unit's mapped register page (§10.2) through volatile reads and writes of the access's width. No Rust
/// reference to the device memory is ever formed.
///
/// Every access is bounds- and alignment-checked: an access that does not
/// lie entirely within `len` bytes of `base`, or is not naturally aligned,
/// never touches memory; a read returns all ones (as a read of absent
/// hardware does) and a write is ignored.
///
/// The value is neither `Send` nor `Sync`: moving register access to another
/// thread is for the embedder to decide, by wrapping it.
#[derive(Debug)]
pub struct VolatileMmio {
    base: NonNull<u8>,
    len: usize,
}

impl VolatileMmio {
    /// Register access to the `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// For as long as the returned value (or anything it is moved into)
    /// lives:
    /// - `base .. base + len` must be mapped and valid for volatile reads
    ///   and writes of 4 and 8 bytes at any naturally aligned offset, with
    ///   device (uncached) memory attributes: a remapping unit's register
    ///   page (usually 4 KiB, the DRHD register base address);
    /// - `base` must be 8-byte aligned;
    /// - no Rust reference to that memory may exist, and nothing else may
    ///   access it except through volatile accesses (concurrent use is then
    ///   a protocol problem, not undefined behaviour).
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self { base, len }
    }

    /// The mapped length in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (every access is out of range).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of an access of `size` bytes at `offset`, if it is in range
    /// and naturally aligned.
    fn checked(&self, offset: usize, size: usize) -> Option<NonNull<u8>> {
        let end = offset.checked_add(size)?;
        if end > self.len || !offset.is_multiple_of(size) {
            return None;
        }
        // `offset < len`, and `base .. base + len` is one mapping (contract of
        // `new`), so the sum cannot wrap; `wrapping_add` keeps this safe code.
        NonNull::new(self.base.as_ptr().wrapping_add(offset))
    }
}

impl Mmio for VolatileMmio {
    fn read32(&self, offset: usize) -> u32 {
        match self.checked(offset, 4) {
            // SAFETY: `checked` puts the 4 bytes within `base .. base + len`
            // and aligns them to 4 (with `base` 8-aligned); `new`'s contract
            // makes that range valid for volatile reads with no references.
            Some(p) => unsafe { p.cast::<u32>().as_ptr().read_volatile() },
            None => u32::MAX,
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        if let Some(p) = self.checked(offset, 4) {
            // SAFETY: as in `read32`: in range, aligned, and valid for
            // volatile writes by `new`'s contract.
            unsafe { p.cast::<u32>().as_ptr().write_volatile(value) }
        }
    }

    #[cfg(target_pointer_width = "64")]
    fn read64(&self, offset: usize) -> u64 {
        match self.checked(offset, 8) {
            // SAFETY: `checked` puts the 8 bytes within `base .. base + len`
            // and aligns them to 8; `new`'s contract makes that range valid
            // for volatile reads with no references.
            Some(p) => unsafe { p.cast::<u64>().as_ptr().read_volatile() },
            None => u64::MAX,
        }
    }

    #[cfg(target_pointer_width = "64")]
    fn write64(&mut self, offset: usize, value: u64) {
        if let Some(p) = self.checked(offset, 8) {
            // SAFETY: as in `read64`: in range, aligned, and valid for
            // volatile writes by `new`'s contract.
            unsafe { p.cast::<u64>().as_ptr().write_volatile(value) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(8))]
    struct Page([u8; 64]);

    fn over(page: &mut Page) -> VolatileMmio {
        let base = NonNull::from(&mut page.0).cast::<u8>();
        // SAFETY: the page outlives the returned value in each test, is
        // 8-aligned, and is only accessed through it while it lives.
        unsafe { VolatileMmio::new(base, page.0.len()) }
    }

    #[test]
    fn reads_and_writes_in_range() {
        let mut page = Page([0; 64]);
        {
            let mut m = over(&mut page);
            m.write32(0x18, 0x8000_0000);
            m.write64(0x20, 0x1234_5678_9abc_d000);
            assert_eq!(m.read32(0x18), 0x8000_0000);
            assert_eq!(m.read64(0x20), 0x1234_5678_9abc_d000);
            assert_eq!(m.read32(0x24), 0x1234_5678);
            assert_eq!(m.read64(56), 0);
            assert_eq!(m.len(), 64);
        }
        assert_eq!(page.0[0x1b], 0x80);
        assert_eq!(page.0[0x20], 0x00);
        assert_eq!(page.0[0x21], 0xd0);
    }

    #[test]
    fn out_of_range_and_misaligned_do_nothing() {
        let mut page = Page([0; 64]);
        {
            let mut m = over(&mut page);
            assert_eq!(m.read32(64), u32::MAX);
            assert_eq!(m.read32(62), u32::MAX);
            assert_eq!(m.read64(60), u64::MAX);
            assert_eq!(m.read64(4), u64::MAX);
            assert_eq!(m.read32(2), u32::MAX);
            assert_eq!(m.read32(usize::MAX - 1), u32::MAX);
            m.write32(64, 1);
            m.write64(60, u64::MAX);
            m.write64(usize::MAX - 3, u64::MAX);
            m.write32(1, u32::MAX);
        }
        assert!(page.0.iter().all(|&b| b == 0));
    }
}
