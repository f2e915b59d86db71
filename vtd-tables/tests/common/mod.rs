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

/// `PhysMem::read_bytes` for a memory of 64-bit words: word by word.
pub fn read_by_words(mem: &impl PhysMem, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
    for (k, chunk) in buf.chunks_mut(8).enumerate() {
        let w = mem.read_u64(PhysAddr::new(addr.as_u64() + 8 * k as u64))?.to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
    Ok(())
}

/// `PhysMem::write_bytes` for a memory of 64-bit words: word by word.
pub fn write_by_words(mem: &impl PhysMem, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
    for (k, chunk) in data.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        mem.write_u64(PhysAddr::new(addr.as_u64() + 8 * k as u64), u64::from_le_bytes(w))?;
    }
    Ok(())
}

/// Physical memory of atomic words, shareable between threads, with an
/// atomic compare-exchange (what a shared table needs).
pub struct AtomicMem {
    words: Vec<std::sync::atomic::AtomicU64>,
}

impl AtomicMem {
    pub fn new(bytes: usize) -> Self {
        Self { words: (0..bytes / 8).map(|_| Default::default()).collect() }
    }

    fn at(&self, addr: PhysAddr) -> Result<&std::sync::atomic::AtomicU64, MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        self.words.get((addr.as_u64() / 8) as usize).ok_or(MemError::OutOfRange { addr, len: 8 })
    }
}

impl vtd_regs::AtomicPhysMem for AtomicMem {}

impl PhysMem for AtomicMem {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        Ok(self.at(addr)?.load(std::sync::atomic::Ordering::Acquire))
    }
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.at(addr)?.store(value, std::sync::atomic::Ordering::Release);
        Ok(())
    }
    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        read_by_words(self, addr, buf)
    }
    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        write_by_words(self, addr, data)
    }
    fn compare_exchange_u64(
        &self,
        addr: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        Ok(self.at(addr)?.compare_exchange(current, new, AcqRel, Acquire))
    }
}

/// [`CountingAlloc`] for threads: 4 KiB frames of `[base, base + frames *
/// 4 KiB)` behind a lock, counting the live ones and the allocations.
pub struct SyncAlloc {
    free: std::sync::Mutex<Vec<PhysAddr>>,
    pub live: std::sync::atomic::AtomicUsize,
    pub allocations: std::sync::atomic::AtomicUsize,
}

impl SyncAlloc {
    pub fn new(base: u64, frames: usize) -> Self {
        let free = (0..frames as u64).rev().map(|i| PhysAddr::new(base + i * 4096)).collect();
        Self { free: std::sync::Mutex::new(free), live: 0.into(), allocations: 0.into() }
    }

    pub fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::SeqCst)
    }
}

// SAFETY: every frame is handed out at most once until it is given back, and
// is only reached through `AtomicMem`.
unsafe impl FrameAllocator for SyncAlloc {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        assert_eq!(order, 0);
        let f = self.free.lock().unwrap().pop()?;
        self.live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.allocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(f)
    }
    fn deallocate(&self, addr: PhysAddr, order: u8) {
        assert_eq!(order, 0);
        let mut free = self.free.lock().unwrap();
        assert!(!free.contains(&addr), "double free of {addr:?}");
        free.push(addr);
        self.live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
