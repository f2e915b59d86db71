//! `SimMemory`: physical memory made of `AtomicU64` words.
//!
//! Atomic words make `&SimMemory` shareable between a driver thread, a device
//! thread and the emulated unit without `unsafe`: concurrent accesses to the
//! same bytes may tear (as on real hardware for unaligned or multi-word
//! data), but never cause undefined behaviour. Every access is bounds-checked
//! and an address outside the memory gives [`MemError::OutOfRange`].

use core::sync::atomic::{AtomicU64, Ordering};

use vtd_regs::{MemError, PAGE_SIZE, PhysAddr, PhysMem};

/// Physical memory `[0, size)` backed by words of storage `S`.
///
/// Loads use `Acquire` and stores `Release`, so a status word written by the
/// unit (an invalidation wait descriptor's status write) publishes what the
/// unit did before it to a thread that polls it.
#[derive(Debug)]
pub struct SimMemory<S> {
    words: S,
}

/// Memory over a `'static` array, for `no_std` users without a heap:
/// `static RAM: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];`.
pub type StaticMemory = SimMemory<&'static [AtomicU64]>;

/// Memory over a heap allocation.
#[cfg(feature = "alloc")]
pub type HeapMemory = SimMemory<alloc::boxed::Box<[AtomicU64]>>;

#[cfg(feature = "alloc")]
impl SimMemory<alloc::boxed::Box<[AtomicU64]>> {
    /// Zeroed memory of `bytes` bytes, rounded up to a whole word.
    ///
    /// The words come from a zeroed allocation, so a large memory costs
    /// nothing until its pages are touched (the allocator hands out fresh
    /// zero pages), rather than a store per word.
    pub fn new(bytes: usize) -> Self {
        let words = bytes.div_ceil(8);
        let Ok(layout) = core::alloc::Layout::array::<AtomicU64>(words) else {
            panic!("{bytes} bytes of simulated memory do not fit the address space");
        };
        if layout.size() == 0 {
            return Self { words: alloc::boxed::Box::new([]) };
        }
        // SAFETY: `layout` has a non-zero size.
        #[allow(unsafe_code)]
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) }.cast::<AtomicU64>();
        if ptr.is_null() {
            alloc::alloc::handle_alloc_error(layout);
        }
        let slice = core::ptr::slice_from_raw_parts_mut(ptr, words);
        // SAFETY: `ptr` is a fresh allocation of `layout` (an array of
        // `words` `AtomicU64`s) from the global allocator, zeroed, and an
        // all-zero `AtomicU64` is a valid `AtomicU64::new(0)`; the box takes
        // ownership and frees it with the same layout.
        #[allow(unsafe_code)]
        let words = unsafe { alloc::boxed::Box::from_raw(slice) };
        Self { words }
    }
}

impl<S: AsRef<[AtomicU64]>> SimMemory<S> {
    /// Memory over `words`: byte `8 * i + j` is byte `j` (little-endian) of
    /// word `i`.
    pub const fn from_words(words: S) -> Self {
        Self { words }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.words.as_ref().len() as u64 * 8
    }

    /// The byte index of `[addr, addr + len)`, if it lies in the memory.
    fn range(&self, addr: PhysAddr, len: usize) -> Result<usize, MemError> {
        let err = MemError::OutOfRange { addr, len };
        let end = addr.as_u64().checked_add(len as u64).ok_or(err)?;
        if end > self.size() {
            return Err(err);
        }
        usize::try_from(addr.as_u64()).map_err(|_| err)
    }

    /// The word at byte index `byte` (a multiple of 8 within the memory).
    fn word(&self, byte: usize) -> &AtomicU64 {
        &self.words.as_ref()[byte / 8]
    }

    /// The words of `[addr, addr + 8 * n)`, `addr` 8-byte aligned.
    fn words_at(&self, addr: PhysAddr, n: usize) -> Result<&[AtomicU64], MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        let len = n.checked_mul(8).ok_or(MemError::OutOfRange { addr, len: usize::MAX })?;
        let start = self.range(addr, len)? / 8;
        Ok(&self.words.as_ref()[start..start + n])
    }

    /// Writes `data` into bytes `off..off + data.len()` of the word at `byte`
    /// without touching its other bytes.
    fn merge(&self, byte: usize, off: usize, data: &[u8]) {
        let mut val = [0u8; 8];
        let mut mask = [0u8; 8];
        val[off..off + data.len()].copy_from_slice(data);
        mask[off..off + data.len()].fill(0xff);
        let (val, mask) = (u64::from_le_bytes(val), u64::from_le_bytes(mask));
        let w = self.word(byte);
        if mask == u64::MAX {
            w.store(val, Ordering::Release);
        } else {
            // Two atomic steps: concurrent writers of *other* bytes of the
            // word are never lost; writers of the same bytes may interleave.
            w.fetch_and(!mask, Ordering::AcqRel);
            w.fetch_or(val, Ordering::AcqRel);
        }
    }
}

/// The words are atomics: a compare-exchange is one atomic operation.
impl<S: AsRef<[AtomicU64]>> vtd_regs::AtomicPhysMem for SimMemory<S> {}

impl<S: AsRef<[AtomicU64]>> PhysMem for SimMemory<S> {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        let b = self.range(addr, 8)?;
        Ok(self.word(b).load(Ordering::Acquire))
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        let b = self.range(addr, 8)?;
        self.word(b).store(value, Ordering::Release);
        Ok(())
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let start = self.range(addr, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let pos = start + done;
            let off = pos % 8;
            let n = (8 - off).min(buf.len() - done);
            let w = self.word(pos).load(Ordering::Acquire).to_le_bytes();
            buf[done..done + n].copy_from_slice(&w[off..off + n]);
            done += n;
        }
        Ok(())
    }

    /// Half a word: one load, not a byte copy.
    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        if !addr.is_aligned(4) {
            return Err(MemError::Misaligned { addr });
        }
        let b = self.range(addr, 4)?;
        Ok((self.word(b).load(Ordering::Acquire) >> (8 * (b % 8))) as u32)
    }

    /// Half a word: one atomic read-modify-write of its word, so a
    /// concurrent writer of the other half is never lost. The first
    /// compare-exchange guesses the word instead of loading it: a load of a
    /// word another core polls (a wait descriptor's status) fetches its line
    /// shared and the exchange then fetches it again for ownership; the
    /// guess, when wrong, fetches it once, owned, with the word's value.
    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        if !addr.is_aligned(4) {
            return Err(MemError::Misaligned { addr });
        }
        let b = self.range(addr, 4)?;
        let shift = 8 * (b % 8);
        let (mask, val) = (u64::from(u32::MAX) << shift, u64::from(value) << shift);
        let w = self.word(b);
        let mut old = 0;
        while let Err(now) =
            w.compare_exchange_weak(old, (old & !mask) | val, Ordering::AcqRel, Ordering::Relaxed)
        {
            old = now;
        }
        Ok(())
    }

    fn compare_exchange_u64(
        &self,
        addr: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        let [w] = self.words_at(addr, 1)? else {
            return Err(MemError::OutOfRange { addr, len: 8 });
        };
        Ok(w.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }

    /// One bounds check, then one load per word.
    fn read_u64s(&self, addr: PhysAddr, out: &mut [u64]) -> Result<(), MemError> {
        let words = self.words_at(addr, out.len())?;
        for (o, w) in out.iter_mut().zip(words) {
            *o = w.load(Ordering::Acquire);
        }
        Ok(())
    }

    /// One bounds check, then one store per word, in order.
    fn write_u64s(&self, addr: PhysAddr, values: &[u64]) -> Result<(), MemError> {
        for (&v, w) in values.iter().zip(self.words_at(addr, values.len())?) {
            w.store(v, Ordering::Release);
        }
        Ok(())
    }

    /// One store per word (the default goes through `write_bytes`).
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        if !frame.is_aligned(PAGE_SIZE) {
            return Err(MemError::Misaligned { addr: frame });
        }
        let start = self.range(frame, PAGE_SIZE as usize)? / 8;
        for w in &self.words.as_ref()[start..start + PAGE_SIZE as usize / 8] {
            w.store(0, Ordering::Relaxed);
        }
        core::sync::atomic::fence(Ordering::Release);
        Ok(())
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        let start = self.range(addr, data.len())?;
        let mut done = 0;
        while done < data.len() {
            let pos = start + done;
            let off = pos % 8;
            let n = (8 - off).min(data.len() - done);
            if n == 8 {
                // A whole word: one store (a descriptor, a zeroed frame).
                let mut word = [0u8; 8];
                word.copy_from_slice(&data[done..done + 8]);
                self.word(pos).store(u64::from_le_bytes(word), Ordering::Release);
            } else {
                self.merge(pos, off, &data[done..done + n]);
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static RAM: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
    static PAGES: [AtomicU64; 1024] = [const { AtomicU64::new(u64::MAX) }; 1024];

    #[test]
    fn zero_frame_clears_exactly_one_frame() {
        let m = StaticMemory::from_words(&PAGES);
        m.zero_frame(PhysAddr::new(0x1000)).unwrap();
        assert_eq!(m.read_u64(PhysAddr::new(0xff8)).unwrap(), u64::MAX);
        assert_eq!(m.read_u64(PhysAddr::new(0x1000)).unwrap(), 0);
        assert_eq!(m.read_u64(PhysAddr::new(0x1ff8)).unwrap(), 0);
        assert!(m.zero_frame(PhysAddr::new(0x2000)).is_err());
        assert!(m.zero_frame(PhysAddr::new(0x800)).is_err());
    }

    #[test]
    fn words_bytes_and_bounds() {
        let m = StaticMemory::from_words(&RAM);
        assert_eq!(m.size(), 32);
        m.write_u64(PhysAddr::new(8), 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u32(PhysAddr::new(8)).unwrap(), 0x5566_7788);
        assert_eq!(m.read_u32(PhysAddr::new(12)).unwrap(), 0x1122_3344);
        m.write_u32(PhysAddr::new(12), 0xdead_beef).unwrap();
        assert_eq!(m.read_u64(PhysAddr::new(8)).unwrap(), 0xdead_beef_5566_7788);
        // An unaligned byte range spanning two words.
        m.write_bytes(PhysAddr::new(6), &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 6];
        m.read_bytes(PhysAddr::new(5), &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3, 4, 0x66]);
        assert_eq!(
            m.read_u64(PhysAddr::new(32)),
            Err(MemError::OutOfRange { addr: PhysAddr::new(32), len: 8 })
        );
        assert_eq!(
            m.read_u64(PhysAddr::new(4)),
            Err(MemError::Misaligned { addr: PhysAddr::new(4) })
        );
        assert!(m.read_bytes(PhysAddr::new(u64::MAX), &mut b).is_err());
        assert!(m.write_bytes(PhysAddr::new(30), &[0; 3]).is_err());
        assert!(m.zero_frame(PhysAddr::new(0)).is_err());
        // Whole words through write_bytes, and dword accesses out of range
        // or misaligned.
        m.write_bytes(PhysAddr::new(16), &[0xab; 16]).unwrap();
        assert_eq!(m.read_u64(PhysAddr::new(24)).unwrap(), 0xabab_abab_abab_abab);
        assert!(m.read_u32(PhysAddr::new(32)).is_err());
        assert!(m.write_u32(PhysAddr::new(30), 1).is_err());
        assert!(m.read_u32(PhysAddr::new(2)).is_err());
    }

    #[test]
    fn word_runs_and_compare_exchange() {
        static W: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
        let m = StaticMemory::from_words(&W);
        m.write_u64s(PhysAddr::new(8), &[1, 2, 3]).unwrap();
        let mut out = [0; 4];
        m.read_u64s(PhysAddr::new(0), &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 3]);
        assert!(m.write_u64s(PhysAddr::new(16), &[0; 3]).is_err());
        assert!(m.read_u64s(PhysAddr::new(4), &mut out[..1]).is_err());
        assert_eq!(m.compare_exchange_u64(PhysAddr::new(8), 1, 9), Ok(Ok(1)));
        assert_eq!(m.compare_exchange_u64(PhysAddr::new(8), 1, 7), Ok(Err(9)));
        assert_eq!(m.read_u64(PhysAddr::new(8)), Ok(9));
        assert!(m.compare_exchange_u64(PhysAddr::new(32), 0, 1).is_err());
        assert!(m.compare_exchange_u64(PhysAddr::new(12), 0, 1).is_err());
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn heap_memory_starts_zeroed() {
        let m = HeapMemory::new(1 << 20);
        assert_eq!(m.size(), 1 << 20);
        assert_eq!(m.read_u64(PhysAddr::new((1 << 20) - 8)), Ok(0));
        assert_eq!(HeapMemory::new(0).size(), 0);
        assert_eq!(HeapMemory::new(3).size(), 8);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn heap_memory_is_shared_between_threads() {
        let m = HeapMemory::new(4096 * 2);
        assert_eq!(m.size(), 8192);
        m.zero_frame(PhysAddr::new(4096)).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..64u64 {
                        // Each thread owns one byte lane of every word.
                        let a = PhysAddr::new(i * 8 + t);
                        m.write_bytes(a, &[t as u8 + 1]).unwrap();
                    }
                });
            }
        });
        for i in 0..64u64 {
            assert_eq!(m.read_u32(PhysAddr::new(i * 8)).unwrap(), 0x0403_0201);
        }
    }
}
