//! One shadowed guest domain: a host domain and the extents installed in
//! it, kept equal to what the guest's table maps over each range the guest
//! invalidates (the vIOMMU paper's emulation flow, Amit et al. 2011, §3;
//! VT-d §6.1 caching mode).
//!
//! A resynchronisation walks the guest's table over the range, as runs of
//! contiguous guest-physical pages ([`scan`](super::scan)), and compares
//! them with the extents: parts of extents the guest no longer maps (or
//! maps elsewhere, or with another permission) are unmapped in the host
//! domain, runs (or parts of runs) not installed are mapped, one backend
//! call per contiguous piece. Then, if anything was unmapped, the backend
//! completes the domain's unmaps; only when it has does the
//! resynchronisation succeed, and with it the guest's invalidation.

use vtd_regs::{Iova, PAGE_SHIFT, PhysAddr};
use vtd_tables::{ContextInfo, WalkLimits};

use super::extents::{Extent, Extents};
use super::scan::{self, Run};
use crate::counters::ViommuCounters;
use crate::guest_mem::GuestRam;
use crate::host::{HostIommu, Placed};

/// Which guest address space a shadow domain mirrors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Key {
    /// A translated context (TT = 00b): its domain (cut to the unit's
    /// domain-id bits), table and width.
    Translated(ContextInfo),
    /// Pass-through: guest IOVA = guest-physical address, all RAM (a
    /// pass-through context, or translation disabled).
    PassThrough,
}

/// A guest domain's shadow.
pub(crate) struct ShadowDomain<D> {
    pub(crate) key: Key,
    /// The backend's host domain.
    pub(crate) host: D,
    pub(crate) extents: Extents,
    /// Devices attached to it.
    pub(crate) devices: usize,
    /// Pages unmapped whose completion the backend has not confirmed.
    owed: u64,
    /// An unmap failed: see [`Incomplete::Lost`].
    lost: bool,
}

/// What a resynchronisation may use.
pub(crate) struct Sync<'a, G: ?Sized, B> {
    pub(crate) mem: &'a G,
    pub(crate) backend: &'a mut B,
    pub(crate) limits: &'a WalkLimits,
    pub(crate) counters: &'a mut ViommuCounters,
    /// Pages all translated domains of this guest may still install.
    pub(crate) room: &'a mut usize,
    pub(crate) budget: u32,
}

/// Why a resynchronisation did not leave the host as the guest's tables
/// say.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Incomplete {
    /// The backend did not complete the domain's unmaps: the guest's
    /// invalidation must not complete; it is tried again.
    Pending,
    /// The backend failed an unmap (all of its unmaps since were completed):
    /// the host domain may hold translations the shadow no longer tracks,
    /// so it must be taken out of service, its devices blocked, before the
    /// guest's invalidation completes.
    Lost,
}

impl<D> ShadowDomain<D> {
    /// An empty shadow of `key` in the host domain `host`.
    pub(crate) fn new(key: Key, host: D) -> Self {
        Self { key, host, extents: Extents::default(), devices: 0, owed: 0, lost: false }
    }

    /// Makes the shadow of IOVA pages `[first, end)` equal what the guest
    /// maps there, and completes the unmaps that took.
    pub(crate) fn resync<G, B>(
        &mut self,
        s: &mut Sync<'_, G, B>,
        (first, end): (u64, u64),
    ) -> Result<(), Incomplete>
    where
        G: GuestRam + ?Sized,
        B: HostIommu<Domain = D>,
    {
        s.counters.resyncs += 1;
        let (mem, limits, budget, key) = (s.mem, s.limits, s.budget, self.key);
        let mut cursor = first;
        let mut on_run = |run: Run| {
            self.unmap_range(s, cursor, run.iova);
            self.install(s, run);
            cursor = run.end();
        };
        match key {
            Key::Translated(ctx) => {
                let seen = scan::scan(mem, &ctx, limits, (first, end), budget, &mut on_run);
                s.counters.scans_truncated += u64::from(seen.truncated_at.is_some());
                s.counters.outside_ram += seen.outside_ram;
            }
            Key::PassThrough => scan::identity(mem, (first, end), &mut on_run),
        }
        self.unmap_range(s, cursor, end);
        self.settle(s)
    }

    /// Unmaps everything; `Err` if the backend did not complete it (the
    /// pages stay pinned, the domain must not be destroyed yet) or lost
    /// track of some (the domain must not be used again).
    pub(crate) fn clear<G, B>(&mut self, s: &mut Sync<'_, G, B>) -> Result<(), Incomplete>
    where
        G: ?Sized,
        B: HostIommu<Domain = D>,
    {
        self.unmap_range(s, 0, u64::MAX);
        self.settle(s)
    }

    /// Has the backend complete the unmaps owed.
    fn settle<G: ?Sized, B>(&mut self, s: &mut Sync<'_, G, B>) -> Result<(), Incomplete>
    where
        B: HostIommu<Domain = D>,
    {
        if self.owed > 0 {
            s.counters.completions += 1;
            if s.backend.complete(&mut self.host).is_err() {
                s.counters.host_errors += 1;
                return Err(Incomplete::Pending);
            }
            s.counters.unpins += self.owed;
            self.owed = 0;
        }
        if self.lost {
            return Err(Incomplete::Lost);
        }
        Ok(())
    }

    /// Unmaps every installed page in IOVA pages `[from, to)`.
    fn unmap_range<G: ?Sized, B>(&mut self, s: &mut Sync<'_, G, B>, from: u64, to: u64)
    where
        B: HostIommu<Domain = D>,
    {
        let mut page = from;
        while page < to {
            let Some(e) = self.extents.at_or_after(page).filter(|e| e.start < to) else {
                return;
            };
            let (a, b) = (page.max(e.start), to.min(e.end()));
            self.unmap_part(s, e, a, b);
            page = b;
        }
    }

    /// Unmaps pages `[a, b)` of extent `e` and keeps the rest of it.
    fn unmap_part<G: ?Sized, B>(&mut self, s: &mut Sync<'_, G, B>, e: Extent, a: u64, b: u64)
    where
        B: HostIommu<Domain = D>,
    {
        self.extents.remove(e.start);
        for keep in [e.part(e.start, a), e.part(b, e.end())] {
            if keep.pages > 0 && self.extents.insert(keep).is_err() {
                // No room to keep a remainder (only without `alloc`): it
                // goes too, the safe way.
                s.counters.quota_drops += keep.pages;
                self.unmap_pages(s, keep);
            }
        }
        self.unmap_pages(s, e.part(a, b));
    }

    /// Asks the backend to unmap `e`.
    fn unmap_pages<G: ?Sized, B>(&mut self, s: &mut Sync<'_, G, B>, e: Extent)
    where
        B: HostIommu<Domain = D>,
    {
        s.counters.unmap_calls += 1;
        if s.backend.unmap(&mut self.host, placed(e)).is_err() {
            // Part of it may still be mapped, and no longer in an extent.
            s.counters.host_errors += 1;
            self.lost = true;
        }
        self.owed += e.pages;
        if matches!(self.key, Key::Translated(_)) {
            *s.room += e.pages as usize;
        }
    }

    /// Installs what of `run` is not installed as it should be: keeps the
    /// extents that map it already, unmaps those that map it otherwise,
    /// and maps each remaining piece with one backend call.
    fn install<G: ?Sized, B>(&mut self, s: &mut Sync<'_, G, B>, run: Run)
    where
        B: HostIommu<Domain = D>,
    {
        let offset = run.gpa.wrapping_sub(run.iova);
        let mut page = run.iova;
        let mut missing: Option<u64> = None;
        while page < run.end() {
            match self.extents.at_or_after(page).filter(|e| e.start < run.end()) {
                Some(e) if e.start > page => {
                    missing.get_or_insert(page);
                    page = e.start;
                }
                Some(e) => {
                    let b = run.end().min(e.end());
                    if e.gpa.wrapping_sub(e.start) == offset && e.perm == run.perm {
                        if let Some(a) = missing.take() {
                            self.map_part(s, run, a, page);
                        }
                    } else {
                        self.unmap_part(s, e, page, b);
                        missing.get_or_insert(page);
                    }
                    page = b;
                }
                None => {
                    missing.get_or_insert(page);
                    page = run.end();
                }
            }
        }
        if let Some(a) = missing {
            self.map_part(s, run, a, run.end());
        }
    }

    /// Maps IOVA pages `[a, b)` of `run`, within the guest's page quota
    /// (a translated domain) and the extent store's capacity.
    fn map_part<G: ?Sized, B>(&mut self, s: &mut Sync<'_, G, B>, run: Run, a: u64, b: u64)
    where
        B: HostIommu<Domain = D>,
    {
        let translated = matches!(self.key, Key::Translated(_));
        let mut pages = b - a;
        if translated && pages > *s.room as u64 {
            s.counters.quota_drops += pages - *s.room as u64;
            pages = *s.room as u64;
        }
        if pages == 0 {
            return;
        }
        if !self.extents.has_room() {
            s.counters.quota_drops += pages;
            return;
        }
        let e = Extent { start: a, pages, gpa: run.gpa + (a - run.iova), perm: run.perm };
        s.counters.map_calls += 1;
        if s.backend.map(&mut self.host, placed(e)).is_err() {
            s.counters.host_errors += 1;
            return;
        }
        // There was room.
        let _ = self.extents.insert(e);
        s.counters.pins += pages;
        if translated {
            *s.room -= pages as usize;
        }
    }
}

/// The backend's description of extent `e`.
pub(crate) fn placed(e: Extent) -> Placed {
    Placed {
        iova: Iova::new(e.start << PAGE_SHIFT),
        gpa: PhysAddr::new(e.gpa << PAGE_SHIFT),
        len: e.pages << PAGE_SHIFT,
        perm: e.perm,
    }
}
