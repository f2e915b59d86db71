//! A guest's RAM as the vIOMMU sees it: guest-physical memory it reads the
//! guest's tables and invalidation queue from ([`PhysMem`] at guest-physical
//! addresses), and where that RAM is ([`GuestRam::ram_from`]), so that the
//! vIOMMU never asks a backend to map anything outside it.
//!
//! Every table pointer, queue address and status address the guest writes
//! is a guest-physical address; reading or writing it through a
//! [`GuestRam`] can never reach host memory outside the guest: an address
//! outside its RAM is a [`MemError::OutOfRange`], which the walker and the
//! queue engine turn into the VT-d fault or queue error real hardware
//! reports for an unreadable address (VT-d §7.1.3, §6.5.2.10).
//!
//! [`GuestMemory`] implements it over host memory laid out by a
//! [`GuestLayout`] (RAM below 4 GiB and above the PCI hole, each a window
//! of host memory), for hypervisors that address host memory physically. A
//! VMM built on rust-vmm implements it over `vm-memory`'s `GuestMemory`
//! (reads and writes by `GuestAddress`, regions from its
//! `GuestMemoryRegion`s).

use core::ops::Range;

use vtd_regs::{MemError, PAGE_SIZE, PhysAddr, PhysMem};

/// Where RAM above the PCI hole starts in guest-physical space.
pub const HIGH_RAM_START: u64 = 1 << 32;

/// A guest's RAM: guest-physical memory, and its RAM regions.
///
/// # Implementation contract
/// [`ram_from`](Self::ram_from) must report only memory that belongs to the
/// guest: the vIOMMU maps (and its backend pins) exactly the guest-physical
/// pages that lie in a region it reports. The `PhysMem` methods must fail,
/// not reach other memory, outside those regions.
pub trait GuestRam: PhysMem {
    /// The first RAM region (a guest-physical range, page-aligned, not
    /// empty) that contains `gpa` or lies above it; `None` if no RAM is at
    /// or above `gpa`. `gpa` is RAM exactly when the region returned starts
    /// at or below it. Regions do not overlap and are returned in order;
    /// two regions that touch may be reported separately (a backend maps a
    /// range within one region in one call, so a region is a unit of
    /// contiguous backing: one `vm-memory` region, one host window).
    fn ram_from(&self, gpa: PhysAddr) -> Option<Range<PhysAddr>>;

    /// The RAM region containing `gpa`, if `gpa` is RAM.
    fn ram_at(&self, gpa: PhysAddr) -> Option<Range<PhysAddr>> {
        self.ram_from(gpa).filter(|r| r.start <= gpa)
    }
}

impl<T: GuestRam + ?Sized> GuestRam for &T {
    #[inline]
    fn ram_from(&self, gpa: PhysAddr) -> Option<Range<PhysAddr>> {
        (**self).ram_from(gpa)
    }
}

/// Which host memory backs which guest-physical addresses: `[0, low)` at
/// host `low_base`, and `[4 GiB, 4 GiB + high)` at host `high_base`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestLayout {
    low_base: PhysAddr,
    low: u64,
    high_base: PhysAddr,
    high: u64,
}

impl GuestLayout {
    /// `low` bytes of RAM below 4 GiB (at most 4 GiB; rounded down to whole
    /// pages) at host address `base`, none above.
    pub const fn new(base: PhysAddr, low: u64) -> Self {
        let low = if low > HIGH_RAM_START { HIGH_RAM_START } else { low };
        Self { low_base: base, low: low & !(PAGE_SIZE - 1), high_base: PhysAddr::ZERO, high: 0 }
    }

    /// This layout with `high` bytes of RAM (rounded down to whole pages)
    /// from guest-physical 4 GiB, at host address `base`.
    #[must_use]
    pub const fn with_high(mut self, base: PhysAddr, high: u64) -> Self {
        self.high_base = base;
        self.high = high & !(PAGE_SIZE - 1);
        self
    }

    /// The host address of `[gpa, gpa + len)`, if it lies in one window.
    pub fn host_address(&self, gpa: PhysAddr, len: u64) -> Result<PhysAddr, MemError> {
        let err = MemError::OutOfRange { addr: gpa, len: len as usize };
        let g = gpa.as_u64();
        let end = g.checked_add(len).ok_or(err)?;
        let (base, off) = if end <= self.low {
            (self.low_base, g)
        } else if g >= HIGH_RAM_START && end - HIGH_RAM_START <= self.high {
            (self.high_base, g - HIGH_RAM_START)
        } else {
            return Err(err);
        };
        base.checked_add(off).ok_or(err)
    }

    /// The first RAM window at or above `gpa` (see [`GuestRam::ram_from`]).
    pub fn ram_from(&self, gpa: PhysAddr) -> Option<Range<PhysAddr>> {
        let windows = [(0, self.low), (HIGH_RAM_START, HIGH_RAM_START + self.high)];
        windows
            .into_iter()
            .find(|&(start, end)| start < end && gpa.as_u64() < end)
            .map(|(start, end)| PhysAddr::new(start)..PhysAddr::new(end))
    }
}

/// Guest-physical memory over host memory `M`, laid out by a
/// [`GuestLayout`].
#[derive(Clone, Copy, Debug)]
pub struct GuestMemory<M> {
    host: M,
    layout: GuestLayout,
}

impl<M: PhysMem> GuestMemory<M> {
    /// The guest RAM `layout` places in `host`.
    pub const fn new(host: M, layout: GuestLayout) -> Self {
        Self { host, layout }
    }

    /// The layout.
    pub const fn layout(&self) -> &GuestLayout {
        &self.layout
    }

    /// The host memory the guest's RAM lies in (addressed by host
    /// address, not guest-physical).
    pub const fn host(&self) -> &M {
        &self.host
    }
}

impl<M: PhysMem> PhysMem for GuestMemory<M> {
    #[inline]
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        self.host.read_u64(self.layout.host_address(addr, 8)?)
    }

    #[inline]
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.host.write_u64(self.layout.host_address(addr, 8)?, value)
    }

    /// One translation for a run of words in one window (a queue slot, a
    /// table's entries); word by word otherwise (a run across 4 GiB when
    /// RAM below it ends there, or one leaving RAM: as far as RAM goes).
    #[inline]
    fn read_u64s(&self, addr: PhysAddr, out: &mut [u64]) -> Result<(), MemError> {
        match self.layout.host_address(addr, 8 * out.len() as u64) {
            Ok(host) => self.host.read_u64s(host, out),
            Err(_) => words(addr, out.len(), |i, a| {
                out[i] = self.read_u64(a)?;
                Ok(())
            }),
        }
    }

    #[inline]
    fn write_u64s(&self, addr: PhysAddr, values: &[u64]) -> Result<(), MemError> {
        match self.layout.host_address(addr, 8 * values.len() as u64) {
            Ok(host) => self.host.write_u64s(host, values),
            Err(_) => words(addr, values.len(), |i, a| self.write_u64(a, values[i])),
        }
    }

    #[inline]
    fn read_u32(&self, addr: PhysAddr) -> Result<u32, MemError> {
        self.host.read_u32(self.layout.host_address(addr, 4)?)
    }

    #[inline]
    fn write_u32(&self, addr: PhysAddr, value: u32) -> Result<(), MemError> {
        self.host.write_u32(self.layout.host_address(addr, 4)?, value)
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.host.read_bytes(self.layout.host_address(addr, buf.len() as u64)?, buf)
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        self.host.write_bytes(self.layout.host_address(addr, data.len() as u64)?, data)
    }

    /// The host memory's own (the default writes a page of zero bytes).
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        if !frame.is_aligned(PAGE_SIZE) {
            return Err(MemError::Misaligned { addr: frame });
        }
        self.host.zero_frame(self.layout.host_address(frame, PAGE_SIZE)?)
    }

    fn flush_for_device(&self, addr: PhysAddr, len: usize) {
        if let Ok(host) = self.layout.host_address(addr, len as u64) {
            self.host.flush_for_device(host, len);
        }
    }
}

impl<M: PhysMem> GuestRam for GuestMemory<M> {
    fn ram_from(&self, gpa: PhysAddr) -> Option<Range<PhysAddr>> {
        self.layout.ram_from(gpa)
    }
}

/// Calls `f(i, address of word i)` for the `n` words of a run at `addr`,
/// in order, stopping at the first error.
fn words(
    addr: PhysAddr,
    n: usize,
    mut f: impl FnMut(usize, PhysAddr) -> Result<(), MemError>,
) -> Result<(), MemError> {
    for i in 0..n {
        let a = addr
            .checked_add(8 * i as u64)
            .ok_or(MemError::OutOfRange { addr, len: 8 * (i + 1) })?;
        f(i, a)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_emu::mem::HeapMemory;

    /// Sparse host memory: any 8-byte aligned word, 0 until written.
    #[derive(Default)]
    struct Sparse(core::cell::RefCell<std::collections::BTreeMap<u64, u64>>);

    impl PhysMem for Sparse {
        fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
            Ok(self.0.borrow().get(&addr.as_u64()).copied().unwrap_or(0))
        }
        fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
            self.0.borrow_mut().insert(addr.as_u64(), value);
            Ok(())
        }
        fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
            Err(MemError::OutOfRange { addr, len: buf.len() })
        }
        fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
            Err(MemError::OutOfRange { addr, len: data.len() })
        }
    }

    /// A run of words is one translation within a window and word by word
    /// across windows: with RAM up to 4 GiB and above it (at unrelated host
    /// addresses), a run across 4 GiB reads and writes as single words do;
    /// a run leaving RAM fails, after the words in RAM.
    #[test]
    fn word_runs_cross_windows_as_single_words_do() {
        let layout = GuestLayout::new(PhysAddr::new(0x1_0000_0000), HIGH_RAM_START)
            .with_high(PhysAddr::new(0x10_0000_0000), 0x1000);
        let g = GuestMemory::new(Sparse::default(), layout);
        let at = PhysAddr::new(HIGH_RAM_START - 16);
        g.write_u64s(at, &[1, 2, 3, 4]).unwrap();
        let mut run = [0; 4];
        g.read_u64s(at, &mut run).unwrap();
        assert_eq!(run, [1, 2, 3, 4]);
        let word = |a: u64| g.host.read_u64(PhysAddr::new(a)).unwrap();
        assert_eq!([word(0x1_ffff_fff0), word(0x1_ffff_fff8)], [1, 2]);
        assert_eq!([word(0x10_0000_0000), word(0x10_0000_0008)], [3, 4]);
        // Within a window: one translation, the same words.
        g.read_u64s(PhysAddr::new(HIGH_RAM_START), &mut run[..2]).unwrap();
        assert_eq!(run[..2], [3, 4]);
        // Leaving RAM: an error, the words before the end written.
        let end = PhysAddr::new(HIGH_RAM_START + 0x1000 - 8);
        assert!(g.write_u64s(end, &[5, 6]).is_err());
        assert_eq!(word(0x10_0000_0ff8), 5);
        assert!(g.read_u64s(end, &mut run[..2]).is_err());
    }

    #[test]
    fn windows_are_bounded() {
        let host = HeapMemory::new(0x4000);
        let layout = GuestLayout::new(PhysAddr::new(0x1000), 0x1000)
            .with_high(PhysAddr::new(0x3000), 0x1000);
        let g = GuestMemory::new(&host, layout);
        g.write_u64(PhysAddr::new(0x8), 7).unwrap();
        assert_eq!(host.read_u64(PhysAddr::new(0x1008)), Ok(7));
        g.write_u64(PhysAddr::new(HIGH_RAM_START + 0x10), 9).unwrap();
        assert_eq!(host.read_u64(PhysAddr::new(0x3010)), Ok(9));
        assert_eq!(g.read_u32(PhysAddr::new(HIGH_RAM_START + 0x14)), Ok(0));
        assert!(g.read_u64(PhysAddr::new(0x1000)).is_err());
        assert!(g.read_u64(PhysAddr::new(0xffc)).is_err());
        assert!(g.read_u32(PhysAddr::new(0xffe)).is_err());
        assert!(g.read_u64(PhysAddr::new(HIGH_RAM_START + 0x1000)).is_err());
        assert!(g.read_u64(PhysAddr::new(HIGH_RAM_START - 8)).is_err());
        assert!(g.read_u64(PhysAddr::new(u64::MAX - 3)).is_err());
        assert!(g.write_bytes(PhysAddr::new(0xff0), &[0; 17]).is_err());
        assert!(g.zero_frame(PhysAddr::new(0x1000)).is_err());
        g.zero_frame(PhysAddr::ZERO).unwrap();
        assert_eq!(host.read_u64(PhysAddr::new(0x1008)), Ok(0));
        assert_eq!(layout.host_address(PhysAddr::new(0x10), 8), Ok(PhysAddr::new(0x1010)));
    }

    #[test]
    fn regions_in_order() {
        let high = PhysAddr::new(HIGH_RAM_START);
        let layout = GuestLayout::new(PhysAddr::ZERO, 0x2000).with_high(PhysAddr::ZERO, 0x1000);
        let g = GuestMemory::new(HeapMemory::new(0x3000), layout);
        assert_eq!(g.ram_from(PhysAddr::new(0x1fff)), Some(PhysAddr::ZERO..PhysAddr::new(0x2000)));
        assert_eq!(g.ram_at(PhysAddr::new(0x1fff)), Some(PhysAddr::ZERO..PhysAddr::new(0x2000)));
        let above = high..PhysAddr::new(HIGH_RAM_START + 0x1000);
        assert_eq!(g.ram_from(PhysAddr::new(0x2000)), Some(above.clone()));
        assert_eq!(g.ram_at(PhysAddr::new(0x2000)), None);
        assert_eq!(g.ram_at(high), Some(above));
        assert_eq!(g.ram_from(PhysAddr::new(HIGH_RAM_START + 0x1000)), None);
        // No high RAM: nothing above the low window.
        let low = GuestLayout::new(PhysAddr::ZERO, 0x1800);
        assert_eq!(low.ram_from(PhysAddr::ZERO), Some(PhysAddr::ZERO..PhysAddr::new(0x1000)));
        assert_eq!(low.ram_from(PhysAddr::new(0x1000)), None);
    }
}
