//! Test memory: a `Vec<u64>`-backed `PhysMem` and a frame allocator over it
//! that counts live frames.
#![allow(dead_code, unreachable_pub)] // reason: shared by several test binaries, each uses a part

use std::cell::{Cell, RefCell};

use vtd_regs::{FrameAllocator, MemError, PhysAddr, PhysMem};

/// Physical memory `[0, words * 8)`, counting 64-bit reads.
pub struct VecMem {
    words: RefCell<Vec<u64>>,
    pub reads: Cell<usize>,
}

impl VecMem {
    pub fn new(bytes: usize) -> Self {
        Self { words: RefCell::new(vec![0; bytes / 8]), reads: Cell::new(0) }
    }

    /// Memory of `bytes` bytes filled with `pattern`, so code that forgets
    /// to zero a new frame reads garbage.
    pub fn filled(bytes: usize, pattern: u64) -> Self {
        Self { words: RefCell::new(vec![pattern; bytes / 8]), reads: Cell::new(0) }
    }

    pub fn from_words(words: Vec<u64>) -> Self {
        Self { words: RefCell::new(words), reads: Cell::new(0) }
    }

    fn word(&self, addr: PhysAddr, len: usize) -> Result<usize, MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        let i =
            usize::try_from(addr.as_u64() / 8).map_err(|_| MemError::OutOfRange { addr, len })?;
        if i >= self.words.borrow().len() {
            return Err(MemError::OutOfRange { addr, len });
        }
        Ok(i)
    }
}

impl PhysMem for VecMem {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        self.reads.set(self.reads.get() + 1);
        let i = self.word(addr, 8)?;
        Ok(self.words.borrow()[i])
    }
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        let i = self.word(addr, 8)?;
        self.words.borrow_mut()[i] = value;
        Ok(())
    }
    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        for (k, b) in buf.iter_mut().enumerate() {
            let a = addr.as_u64() + k as u64;
            let w = self.read_u64(PhysAddr::new(a & !7))?;
            *b = (w >> ((a & 7) * 8)) as u8;
        }
        Ok(())
    }
    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        for (k, b) in data.iter().enumerate() {
            let a = addr.as_u64() + k as u64;
            let i = self.word(PhysAddr::new(a & !7), 1)?;
            let sh = (a & 7) * 8;
            let mut words = self.words.borrow_mut();
            words[i] = (words[i] & !(0xff << sh)) | ((*b as u64) << sh);
        }
        Ok(())
    }
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        let i = self.word(frame, 4096)?;
        let mut words = self.words.borrow_mut();
        let end = (i + 512).min(words.len());
        words[i..end].fill(0);
        Ok(())
    }
}

/// Hands out 4 KiB frames of `[base, base + frames * 4 KiB)` and counts the
/// live ones.
pub struct CountingAlloc {
    free: RefCell<Vec<PhysAddr>>,
    pub live: Cell<usize>,
    pub limit: Cell<usize>,
}

impl CountingAlloc {
    pub fn new(base: u64, frames: usize) -> Self {
        let free = (0..frames as u64).rev().map(|i| PhysAddr::new(base + i * 4096)).collect();
        Self { free: RefCell::new(free), live: Cell::new(0), limit: Cell::new(usize::MAX) }
    }
}

// SAFETY: every frame is handed out at most once until it is given back, and
// is only reached through `VecMem`.
unsafe impl FrameAllocator for CountingAlloc {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        if order != 0 || self.live.get() >= self.limit.get() {
            return None;
        }
        let f = self.free.borrow_mut().pop()?;
        self.live.set(self.live.get() + 1);
        Some(f)
    }
    fn deallocate(&self, addr: PhysAddr, order: u8) {
        assert_eq!(order, 0);
        assert!(!self.free.borrow().contains(&addr), "double free of {addr:?}");
        self.free.borrow_mut().push(addr);
        self.live.set(self.live.get() - 1);
    }
}
