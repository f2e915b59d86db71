//! The container's DMA mappings as the kernel holds them, and how a map or
//! unmap request turns into ioctls.
//!
//! VFIO type1v2 unmaps only whole mappings: an unmap that bisects an earlier
//! map fails (`EINVAL`), and one that covers several maps removes them all.
//! So an unmap of `[iova, iova + len)` is planned as one `UNMAP_DMA` over
//! the union of the mappings it touches, then at most two `MAP_DMA` for the
//! parts of the first and last mapping outside the range (same user
//! address, same permission). Those parts are briefly unmapped in between:
//! a device reaching them then faults. A caller that unmaps whole mappings,
//! as a guest unmapping what it mapped does, never pays that.

use std::collections::BTreeMap;

use bitflags::bitflags;

use crate::error::{Error, Result};

/// The IOMMU's smallest page (type1 on x86: 4 KiB); maps and unmaps are in
/// whole pages.
pub const PAGE_SIZE: u64 = 4096;

bitflags! {
    /// What a device may do at a mapped IOVA (`VFIO_DMA_MAP_FLAG_READ` and
    /// `_WRITE`; VT-d's R and W bits, §9.8).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Perm: u32 {
        /// The device may read memory (DMA to the device).
        const READ = 1 << 0;
        /// The device may write memory (DMA from the device).
        const WRITE = 1 << 1;
    }
}

/// One DMA mapping: `len` bytes at `iova` reach process memory at `hva`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaMapping {
    /// The first IOVA.
    pub iova: u64,
    /// The host virtual address it reaches.
    pub hva: usize,
    /// Length in bytes (whole pages).
    pub len: u64,
    /// What the device may do.
    pub perm: Perm,
}

impl DmaMapping {
    /// One past the last IOVA.
    pub const fn end(&self) -> u64 {
        self.iova + self.len
    }

    /// The part `[from, to)` of this mapping (inside it).
    fn part(&self, from: u64, to: u64) -> DmaMapping {
        DmaMapping {
            iova: from,
            hva: self.hva + (from - self.iova) as usize,
            len: to - from,
            perm: self.perm,
        }
    }

    /// Whether `next` continues this mapping in both IOVA and host address,
    /// with the same permission: the two can be one ioctl.
    fn continued_by(&self, next: &DmaMapping) -> bool {
        self.end() == next.iova
            && self.hva.checked_add(self.len as usize) == Some(next.hva)
            && self.perm == next.perm
    }

    /// Checks alignment, size and permission.
    pub(crate) fn validate(&self) -> Result<()> {
        check_range(self.iova, self.len)?;
        if !(self.hva as u64).is_multiple_of(PAGE_SIZE)
            || self.hva.checked_add(self.len as usize).is_none()
        {
            return Err(Error::Misaligned { iova: self.iova, len: self.len });
        }
        if self.perm.is_empty() {
            return Err(Error::NoPermission);
        }
        Ok(())
    }
}

/// Checks that `[iova, iova + len)` is whole pages, not empty, not wrapping.
pub(crate) fn check_range(iova: u64, len: u64) -> Result<()> {
    if len == 0
        || !iova.is_multiple_of(PAGE_SIZE)
        || !len.is_multiple_of(PAGE_SIZE)
        || iova.checked_add(len).is_none()
    {
        return Err(Error::Misaligned { iova, len });
    }
    Ok(())
}

/// Merges a batch of mappings into runs contiguous in IOVA and host address
/// with one permission: one `MAP_DMA` each.
pub(crate) fn coalesce(batch: &[DmaMapping]) -> Vec<DmaMapping> {
    let mut runs: Vec<DmaMapping> = Vec::with_capacity(batch.len());
    for m in batch {
        match runs.last_mut() {
            Some(last) if last.continued_by(m) => last.len += m.len,
            _ => runs.push(*m),
        }
    }
    runs
}

/// Merges unmap ranges (IOVA, length) that touch or overlap: one
/// `UNMAP_DMA` each at most.
pub(crate) fn merge_ranges(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> =
        ranges.iter().map(|&(iova, len)| (iova, iova + len)).collect();
    sorted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (start, end) in sorted {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.into_iter().map(|(start, end)| (start, end - start)).collect()
}

/// The ioctls that unmap one range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnmapPlan {
    /// The `UNMAP_DMA` range: the union of the touched mappings.
    pub(crate) iova: u64,
    pub(crate) len: u64,
    /// The mappings it removes.
    pub(crate) removed: Vec<DmaMapping>,
    /// What must be mapped again afterwards: the parts of the first and last
    /// removed mapping outside the range asked for.
    pub(crate) remap: Vec<DmaMapping>,
}

/// The mappings of one container, by IOVA; none overlap.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mappings {
    by_iova: BTreeMap<u64, DmaMapping>,
}

impl Mappings {
    /// The mappings that share a byte with `[iova, end)`, in IOVA order.
    fn touching(&self, iova: u64, end: u64) -> impl Iterator<Item = &DmaMapping> {
        // The one mapping that starts before `iova` may reach into it.
        let before =
            self.by_iova.range(..iova).next_back().map(|(_, m)| m).filter(|m| m.end() > iova);
        before.into_iter().chain(self.by_iova.range(iova..end).map(|(_, m)| m))
    }

    /// Whether any mapping shares a byte with `[iova, iova + len)`.
    pub(crate) fn overlaps(&self, iova: u64, len: u64) -> bool {
        self.touching(iova, iova + len).next().is_some()
    }

    pub(crate) fn insert(&mut self, m: DmaMapping) {
        self.by_iova.insert(m.iova, m);
    }

    pub(crate) fn remove(&mut self, iova: u64) {
        self.by_iova.remove(&iova);
    }

    /// Every mapping, in IOVA order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &DmaMapping> {
        self.by_iova.values()
    }

    /// How to unmap `[iova, iova + len)`; `None` when nothing there is
    /// mapped (no ioctl at all).
    pub(crate) fn plan_unmap(&self, iova: u64, len: u64) -> Option<UnmapPlan> {
        let end = iova + len;
        let removed: Vec<DmaMapping> = self.touching(iova, end).copied().collect();
        let (first, last) = (removed.first()?, removed.last()?);
        let mut remap = Vec::new();
        if first.iova < iova {
            remap.push(first.part(first.iova, iova));
        }
        if last.end() > end {
            remap.push(last.part(end, last.end()));
        }
        Some(UnmapPlan { iova: first.iova, len: last.end() - first.iova, removed, remap })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RW: Perm = Perm::READ.union(Perm::WRITE);

    fn m(iova: u64, hva: usize, pages: u64, perm: Perm) -> DmaMapping {
        DmaMapping {
            iova: iova * PAGE_SIZE,
            hva: hva * PAGE_SIZE as usize,
            len: pages * PAGE_SIZE,
            perm,
        }
    }

    #[test]
    fn batches_coalesce_only_when_both_spaces_continue() {
        let runs = coalesce(&[
            m(0, 100, 1, RW),
            m(1, 101, 2, RW),
            m(3, 200, 1, RW),
            m(4, 201, 1, Perm::READ),
        ]);
        assert_eq!(runs, [m(0, 100, 3, RW), m(3, 200, 1, RW), m(4, 201, 1, Perm::READ)]);
        let p = PAGE_SIZE;
        assert_eq!(
            merge_ranges(&[(4 * p, p), (0, p), (p, p), (4 * p, 2 * p)]),
            [(0, 2 * p), (4 * p, 2 * p)]
        );
    }

    #[test]
    fn validation() {
        assert_eq!(m(1, 1, 1, RW).validate(), Ok(()));
        assert_eq!(m(1, 1, 1, Perm::empty()).validate(), Err(Error::NoPermission));
        assert!(m(1, 1, 0, RW).validate().is_err());
        let odd = DmaMapping { hva: 0x1001, ..m(1, 1, 1, RW) };
        assert!(odd.validate().is_err());
        assert!(check_range(u64::MAX - PAGE_SIZE + 1, PAGE_SIZE).is_err());
    }

    /// A page-granular model: IOVA page -> (host page, perm).
    type Model = BTreeMap<u64, (usize, Perm)>;

    fn model_of(maps: &Mappings) -> Model {
        let mut model = Model::new();
        for mp in maps.iter() {
            for p in 0..mp.len / PAGE_SIZE {
                model.insert(
                    mp.iova / PAGE_SIZE + p,
                    (mp.hva / PAGE_SIZE as usize + p as usize, mp.perm),
                );
            }
        }
        model
    }

    proptest! {
        /// Executing a plan (remove, then re-map) leaves exactly the pages
        /// outside the range mapped as before; the unmap ioctl never bisects
        /// a mapping; at most two re-maps; no ioctl when nothing is mapped.
        #[test]
        fn unmap_plans_match_a_page_model(
            maps in prop::collection::vec((0u64..64, 1u64..8, any::<bool>()), 0..12),
            unmaps in prop::collection::vec((0u64..72, 1u64..16), 1..8),
        ) {
            let mut mappings = Mappings::default();
            for (start, pages, ro) in maps {
                let perm = if ro { Perm::READ } else { RW };
                let mp = m(start, 1000 + start as usize * 3, pages, perm);
                if !mappings.overlaps(mp.iova, mp.len) {
                    mappings.insert(mp);
                }
            }
            for (start, pages) in unmaps {
                let (iova, len) = (start * PAGE_SIZE, pages * PAGE_SIZE);
                let mut want = model_of(&mappings);
                want.retain(|p, _| !(start..start + pages).contains(p));
                match mappings.plan_unmap(iova, len) {
                    None => prop_assert!(!mappings.overlaps(iova, len)),
                    Some(plan) => {
                        prop_assert!(plan.remap.len() <= 2);
                        // The unmap range holds whole mappings only.
                        for mp in mappings.iter() {
                            let inside = mp.iova >= plan.iova && mp.end() <= plan.iova + plan.len;
                            let outside = mp.end() <= plan.iova || mp.iova >= plan.iova + plan.len;
                            prop_assert!(inside || outside, "{:?} bisected by {:?}", mp, plan);
                            prop_assert_eq!(inside, plan.removed.contains(mp));
                        }
                        for r in &plan.removed { mappings.remove(r.iova); }
                        for r in &plan.remap { mappings.insert(*r); }
                    }
                }
                prop_assert_eq!(model_of(&mappings), want);
            }
        }
    }
}
