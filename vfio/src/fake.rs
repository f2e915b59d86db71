//! [`FakeType1`]: a type1v2 IOMMU address space modelled in memory, for
//! tests of a VMM's logic (and this crate's) on a host without
//! `/dev/vfio`: a [`Container`](crate::Container) over it
//! ([`Container::over`](crate::Container::over)) behaves as over the
//! kernel, and the test sees what the "kernel" holds.
//!
//! It keeps type1v2's rules (Linux `drivers/vfio/vfio_iommu_type1.c`,
//! `vfio_dma_do_map` / `vfio_dma_do_unmap`): a map must be whole pages with
//! some permission (`EINVAL`), must not overlap a mapping (`EEXIST`) and
//! must fit the entry limit (`ENOSPC`); an unmap must be whole pages, must
//! not bisect a mapping (`EINVAL`), removes every mapping inside its range
//! and reports their total size. Beyond the kernel, it maps only user
//! addresses it was told are the guest's RAM: anything else is refused
//! (`EFAULT`) and counted ([`outside_attempts`](FakeType1::outside_attempts)),
//! so a test asserts the VMM never hands the device other memory. Errors
//! are injected on demand ([`fail_next`](FakeType1::fail_next)).
//!
//! ```
//! use viommu_vfio::fake::FakeType1;
//! use viommu_vfio::{Container, DmaMapping, Op, Perm};
//!
//! let ram = vec![0u8; 0x10000];
//! let base = ram.as_ptr() as usize & !0xfff; // whole pages of the allocation
//! let kernel = FakeType1::new(std::iter::once(base..base + 0xf000));
//! let mut container = Container::over(kernel.clone());
//! let m = DmaMapping { iova: 0x10_0000, hva: base, len: 0x4000, perm: Perm::READ | Perm::WRITE };
//! // SAFETY: nothing reaches memory through the fake.
//! unsafe { container.map(m) }?;
//! container.unmap(0x10_1000, 0x1000)?; // one unmap, two re-maps
//! assert_eq!(kernel.translate(0x10_1000), None);
//! assert_eq!(kernel.translate(0x10_2008), Some((base + 0x2008, Perm::READ | Perm::WRITE)));
//! kernel.fail_next(Op::UnmapDma, libc::EIO);
//! assert!(container.unmap(0x10_0000, 0x1000).is_err());
//! assert_eq!(kernel.translate(0x10_0000), Some((base, Perm::READ | Perm::WRITE)));
//! # Ok::<(), viommu_vfio::Error>(())
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::container::Type1;
use crate::dma::{DmaMapping, PAGE_SIZE, Perm};
use crate::error::{Error, Op, Result};
use crate::ioctl::IoctlCounts;

/// A type1v2 IOMMU address space in memory (see the [module](self)
/// documentation). Clones share it: a test keeps one to look and inject
/// errors while the container (or a [`VfioBackend`](crate::VfioBackend))
/// owns another.
#[derive(Clone, Debug, Default)]
pub struct FakeType1 {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The mappings, by IOVA.
    maps: BTreeMap<u64, DmaMapping>,
    /// The user addresses that may be mapped.
    allowed: Vec<Range<usize>>,
    /// At most this many mappings (`dma_entry_limit`); `None`: no limit.
    entry_limit: Option<usize>,
    counts: IoctlCounts,
    /// Errors the next call of an operation returns, changing nothing.
    failures: Vec<(Op, i32)>,
    outside: u64,
}

impl FakeType1 {
    /// An empty address space that maps user addresses in `allowed` only.
    pub fn new(allowed: impl IntoIterator<Item = Range<usize>>) -> Self {
        let state = State { allowed: allowed.into_iter().collect(), ..State::default() };
        FakeType1 { state: Arc::new(Mutex::new(state)) }
    }

    /// An empty address space that maps the user addresses of `mem`'s
    /// regions (a VMM's guest RAM) only.
    #[cfg(feature = "vm-memory")]
    pub fn for_guest_memory<M: vm_memory::GuestMemoryBackend + ?Sized>(mem: &M) -> Self {
        use vm_memory::{GuestMemoryRegion, MemoryRegionAddress};
        FakeType1::new(mem.iter().filter_map(|r| {
            let start = r.get_host_address(MemoryRegionAddress(0)).ok()? as usize;
            Some(start..start + usize::try_from(r.len()).ok()?)
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is updated whole under the lock: a panic elsewhere
        // leaves it consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next call of `op` ([`Op::MapDma`] or [`Op::UnmapDma`],
    /// the latter also with `VFIO_DMA_UNMAP_FLAG_ALL`) fail with `errno`,
    /// changing nothing (it still counts as an ioctl).
    pub fn fail_next(&self, op: Op, errno: i32) {
        self.state().failures.push((op, errno));
    }

    /// How many injected failures of `op` have not fired yet.
    pub fn pending_failures(&self, op: Op) -> usize {
        self.state().failures.iter().filter(|(o, _)| *o == op).count()
    }

    /// Sets the most mappings the address space holds (the kernel's
    /// `vfio_iommu_type1 dma_entry_limit`, 65535 by default); further maps
    /// fail with `ENOSPC`.
    pub fn set_entry_limit(&self, limit: usize) {
        self.state().entry_limit = Some(limit);
    }

    /// Where a device access at `iova` lands: the user address and the
    /// permission of the mapping, or `None` when nothing maps it.
    pub fn translate(&self, iova: u64) -> Option<(usize, Perm)> {
        let state = self.state();
        let (_, m) = state.maps.range(..=iova).next_back()?;
        let offset = iova - m.iova;
        (offset < m.len).then(|| (m.hva + offset as usize, m.perm))
    }

    /// The mappings, in IOVA order.
    pub fn mappings(&self) -> Vec<DmaMapping> {
        self.state().maps.values().copied().collect()
    }

    /// How many maps were refused because their user addresses were not
    /// all in the allowed memory.
    pub fn outside_attempts(&self) -> u64 {
        self.state().outside
    }
}

impl State {
    /// Counts a call of `op` and takes the error injected for it, if any.
    fn call(&mut self, op: Op) -> Result<()> {
        match op {
            Op::MapDma => self.counts.map += 1,
            _ => self.counts.unmap += 1,
        }
        match self.failures.iter().position(|(o, _)| *o == op) {
            Some(i) => Err(Error::Os { op, errno: self.failures.remove(i).1 }),
            None => Ok(()),
        }
    }

    /// Whether `[hva, hva + len)` is inside one allowed range.
    fn allows(&self, hva: usize, len: u64) -> bool {
        let Some(end) = usize::try_from(len).ok().and_then(|l| hva.checked_add(l)) else {
            return false;
        };
        self.allowed.iter().any(|r| r.start <= hva && end <= r.end)
    }
}

/// `errno` of operation `op`.
fn os(op: Op, errno: i32) -> Error {
    Error::Os { op, errno }
}

/// Whole pages, not empty, not wrapping: what type1 asks of a range.
fn whole_pages(iova: u64, len: u64) -> bool {
    len != 0
        && iova.is_multiple_of(PAGE_SIZE)
        && len.is_multiple_of(PAGE_SIZE)
        && iova.checked_add(len).is_some()
}

impl Type1 for FakeType1 {
    unsafe fn map_dma(&mut self, m: &DmaMapping) -> Result<()> {
        let mut state = self.state();
        state.call(Op::MapDma)?;
        if !whole_pages(m.iova, m.len)
            || !m.hva.is_multiple_of(PAGE_SIZE as usize)
            || !m.perm.intersects(Perm::READ | Perm::WRITE)
        {
            return Err(os(Op::MapDma, libc::EINVAL));
        }
        let overlaps =
            state.maps.range(..m.iova + m.len).next_back().is_some_and(|(_, o)| o.end() > m.iova);
        if overlaps {
            return Err(os(Op::MapDma, libc::EEXIST));
        }
        if state.entry_limit.is_some_and(|limit| state.maps.len() >= limit) {
            return Err(os(Op::MapDma, libc::ENOSPC));
        }
        if !state.allows(m.hva, m.len) {
            state.outside += 1;
            return Err(os(Op::MapDma, libc::EFAULT));
        }
        state.maps.insert(m.iova, *m);
        Ok(())
    }

    fn unmap_dma(&mut self, iova: u64, len: u64) -> Result<u64> {
        let mut state = self.state();
        state.call(Op::UnmapDma)?;
        if !whole_pages(iova, len) {
            return Err(os(Op::UnmapDma, libc::EINVAL));
        }
        let end = iova + len;
        let bisects = |at: u64| {
            state.maps.range(..at).next_back().is_some_and(|(_, m)| m.iova < at && at < m.end())
        };
        if bisects(iova) || bisects(end) {
            return Err(os(Op::UnmapDma, libc::EINVAL));
        }
        let inside: Vec<u64> = state.maps.range(iova..end).map(|(&at, _)| at).collect();
        Ok(inside.iter().filter_map(|at| state.maps.remove(at)).map(|m| m.len).sum())
    }

    fn unmap_all_dma(&mut self) -> Result<u64> {
        let mut state = self.state();
        state.call(Op::UnmapDma)?;
        Ok(core::mem::take(&mut state.maps).values().map(|m| m.len).sum())
    }

    fn ioctl_counts(&self) -> IoctlCounts {
        self.state().counts
    }
}
