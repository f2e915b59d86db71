//! One shadowed guest domain: the host domain and table that hold the
//! guest's translations with host frames (GIOVA -> HPA), and what was
//! installed (GIOVA page -> guest page and permission), so that an
//! invalidation of a range compares the guest's table with the shadow and
//! applies the difference (the vIOMMU paper's emulation flow, Amit et al.
//! 2011, §3; VT-d §6.1 caching mode).
//!
//! The order of a resynchronisation is the order the paper's protection
//! argument needs: translations that changed or vanished are removed from
//! the host table, the host unit's invalidation of them completes, and only
//! then are their guest pages unpinned; new translations are pinned before
//! they are written.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use invalidation::Invalidator;
use teardown::PagePinner;
use vtd_regs::{
    DomainId, FrameAllocator, IotlbScope, Iova, PAGE_SHIFT, PageSize, PhysAddr, PhysMem,
};
use vtd_tables::{ContextInfo, SlPageTable, WalkLimits};

use crate::counters::ViommuCounters;
use crate::host::{Host, covering, iotlb};
use crate::scan::{Leaf, Scan};

/// A guest domain's shadow.
pub(crate) struct ShadowDomain<M: PhysMem, A: FrameAllocator> {
    /// The guest context it shadows (DID, table root, width).
    pub(crate) guest: ContextInfo,
    /// The host domain.
    pub(crate) host_domain: DomainId,
    pub(crate) table: SlPageTable<M, A>,
    /// GIOVA page -> what is installed.
    pub(crate) pages: BTreeMap<u64, Leaf>,
    /// Devices attached to it.
    pub(crate) devices: usize,
}

/// What a resynchronisation may use.
pub(crate) struct Sync<'a, G: ?Sized, M: PhysMem, A: FrameAllocator, I, P> {
    pub(crate) guest_mem: &'a G,
    pub(crate) limits: &'a WalkLimits,
    pub(crate) host: &'a mut Host<M, A, I>,
    pub(crate) pinner: &'a mut P,
    pub(crate) counters: &'a mut ViommuCounters,
    /// Pages all domains of this guest may still install.
    pub(crate) room: &'a mut usize,
    pub(crate) budget: u32,
}

impl<M, A> ShadowDomain<M, A>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
{
    /// Makes the shadow of IOVA pages `[first, end)` equal the guest table.
    pub(crate) fn resync<G, I, P>(&mut self, s: &mut Sync<'_, G, M, A, I, P>, range: (u64, u64))
    where
        G: PhysMem + ?Sized,
        I: Invalidator,
        P: PagePinner,
    {
        s.counters.resyncs += 1;
        let guest = self.guest;
        let scan = Scan::run(s.guest_mem, &guest, s.limits, range, s.budget);
        s.counters.scans_truncated += u64::from(scan.truncated);
        let stale: Vec<(u64, Leaf)> = self
            .pages
            .range(range.0..range.1)
            .filter(|(k, v)| scan.found.get(k) != Some(v))
            .map(|(k, v)| (*k, *v))
            .collect();
        if !self.remove(s, &stale) {
            return;
        }
        self.install(s, &scan.found);
    }

    /// Removes every installed page.
    pub(crate) fn clear<G, I, P>(&mut self, s: &mut Sync<'_, G, M, A, I, P>) -> bool
    where
        G: PhysMem + ?Sized,
        I: Invalidator,
        P: PagePinner,
    {
        let all: Vec<(u64, Leaf)> = self.pages.iter().map(|(k, v)| (*k, *v)).collect();
        self.remove(s, &all)
    }

    /// Unmaps `pages` from the host table, waits for the host unit's
    /// invalidation, then unpins them. If the invalidation fails, the
    /// pages stay pinned (the unit may still reach them) and `false` is
    /// returned.
    fn remove<G, I, P>(&mut self, s: &mut Sync<'_, G, M, A, I, P>, pages: &[(u64, Leaf)]) -> bool
    where
        G: PhysMem + ?Sized,
        I: Invalidator,
        P: PagePinner,
    {
        if pages.is_empty() {
            return true;
        }
        let mut tokens = Vec::with_capacity(pages.len());
        for (giova, _) in pages {
            match self.table.unmap(Iova::new(giova << PAGE_SHIFT), PageSize::Size4KiB) {
                Ok(t) => tokens.push(t),
                Err(_) => s.counters.host_errors += 1,
            }
        }
        let done = match tokens.as_slice() {
            [one] => s.host.invalidate([covering(self.host_domain, one)]),
            _ => s.host.invalidate([iotlb(IotlbScope::Domain(self.host_domain))]),
        };
        if done.is_err() {
            // The unit may still hold the translations: keep the pins (and
            // leak the frames) rather than let it reach a reused page.
            s.counters.host_errors += 1;
            for (giova, _) in pages {
                self.pages.remove(giova);
            }
            core::mem::forget(tokens);
            return false;
        }
        for t in tokens {
            if self.table.release(t).is_err() {
                s.counters.host_errors += 1;
            }
        }
        for (giova, leaf) in pages {
            self.pages.remove(giova);
            s.pinner.unpin(PhysAddr::new(leaf.page << PAGE_SHIFT));
            s.counters.unpins += 1;
            *s.room += 1;
        }
        s.counters.pages_unmapped += pages.len() as u64;
        true
    }

    /// Pins and maps what `found` has and the shadow lacks.
    fn install<G, I, P>(&mut self, s: &mut Sync<'_, G, M, A, I, P>, found: &BTreeMap<u64, Leaf>)
    where
        G: PhysMem + ?Sized,
        I: Invalidator,
        P: PagePinner,
    {
        let mut added = false;
        for (&giova, &leaf) in found {
            if self.pages.contains_key(&giova) {
                continue;
            }
            if *s.room == 0 {
                s.counters.quota_drops += 1;
                continue;
            }
            let Ok(hpa) = s.pinner.pin(PhysAddr::new(leaf.page << PAGE_SHIFT)) else {
                s.counters.pin_failures += 1;
                continue;
            };
            let at = Iova::new(giova << PAGE_SHIFT);
            if self.table.map(at, hpa, PageSize::Size4KiB, leaf.perm).is_err() {
                s.pinner.unpin(PhysAddr::new(leaf.page << PAGE_SHIFT));
                s.counters.host_errors += 1;
                continue;
            }
            s.counters.pins += 1;
            s.counters.pages_mapped += 1;
            *s.room -= 1;
            self.pages.insert(giova, leaf);
            added = true;
        }
        if added && s.host.caching_mode() {
            let _ = s.host.invalidate([iotlb(IotlbScope::Domain(self.host_domain))]);
        }
    }
}
