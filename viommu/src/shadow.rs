//! One shadowed guest domain: a host domain whose translations (GIOVA ->
//! HPA) are kept by a [`teardown::Mapper`] of placed mappings, one per guest
//! page, and what was installed (GIOVA page -> guest page and permission),
//! so that an invalidation of a range compares the guest's table with the
//! shadow and applies the difference (the vIOMMU paper's emulation flow,
//! Amit et al. 2011, §3; VT-d §6.1 caching mode).
//!
//! The mapper gives the order the paper's protection argument needs:
//! translations that changed or vanished are removed from the host table,
//! the host unit's invalidation of them completes (one batch per
//! resynchronisation), and only then are their guest pages unpinned; new
//! translations are pinned before they are written.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use invalidation::{FlushConfig, FlushMode, Invalidator, NoClock};
use teardown::{Mapper, MapperConfig, PagePinner, PlacedOnly, Reuse, Runtime};
use vtd_regs::{DomainId, FrameAllocator, Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::{ContextInfo, SlPageTable, WalkLimits};

use crate::counters::ViommuCounters;
use crate::host::SharedHost;
use crate::pinner::SharedPinner;
use crate::scan::{Leaf, Scan};

/// Most guest pages one shadow domain maps in the host at once; beyond it
/// pages are dropped like pages beyond the guest's quota.
pub(crate) const DOMAIN_PAGES: usize = 2048;

/// Host teardowns one resynchronisation batches into one invalidation;
/// more are invalidated in several batches.
const BATCH: usize = 256;

/// The host side of a shadow domain.
pub(crate) type HostMapper<'h, M, A, I, P> =
    Mapper<(M, A, NoClock), PlacedOnly, SharedHost<'h, M, A, I>, SharedPinner<P>, Runtime>;

/// A guest domain's shadow.
pub(crate) struct ShadowDomain<'h, M, A, I, P>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
{
    /// The guest context it shadows (DID, table root, width).
    pub(crate) guest: ContextInfo,
    /// The host domain's mappings (boxed: its registry is large).
    pub(crate) mapper: Box<HostMapper<'h, M, A, I, P>>,
    /// GIOVA page -> what is installed.
    pub(crate) pages: BTreeMap<u64, Leaf>,
    /// Devices attached to it.
    pub(crate) devices: usize,
}

/// What a resynchronisation may use.
pub(crate) struct Sync<'a, G: ?Sized> {
    pub(crate) guest_mem: &'a G,
    pub(crate) limits: &'a WalkLimits,
    pub(crate) counters: &'a mut ViommuCounters,
    /// Pages all domains of this guest may still install.
    pub(crate) room: &'a mut usize,
    pub(crate) budget: u32,
}

impl<'h, M, A, I, P> ShadowDomain<'h, M, A, I, P>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    P: PagePinner,
{
    /// An empty shadow of `guest` in host domain `host_domain`, whose
    /// (empty) table is `table`. Fails only if the mapper refuses its
    /// configuration (it never does: a deferred batch of `BATCH` without a
    /// deadline).
    pub(crate) fn new(
        guest: ContextInfo,
        host_domain: DomainId,
        table: SlPageTable<M, A>,
        host: SharedHost<'h, M, A, I>,
        pinner: SharedPinner<P>,
    ) -> Result<Self, teardown::Error> {
        let config = MapperConfig {
            reuse: Reuse::SingleUse,
            // Flushed explicitly at the end of each resynchronisation.
            flush: FlushConfig {
                mode: FlushMode::Deferred,
                batch: BATCH,
                deadline: None::<Duration>,
                max_page_selective: FlushConfig::strict().max_page_selective,
            },
            domain: host_domain,
            dma_limit: Iova::new(0),
        };
        let platform = (table.mem().clone(), table.frames().clone(), NoClock);
        // The registry sized at run time, its arrays on the heap.
        let capacity = Runtime { maps: DOMAIN_PAGES, pending: BATCH };
        let mapper =
            Mapper::with_capacity(platform, table, PlacedOnly, host, pinner, config, capacity)?;
        let mapper = Box::new(mapper);
        Ok(Self { guest, mapper, pages: BTreeMap::new(), devices: 0 })
    }

    /// The host domain.
    pub(crate) fn host_domain(&self) -> DomainId {
        self.mapper.config().domain
    }

    /// Makes the shadow of IOVA pages `[first, end)` equal the guest table.
    pub(crate) fn resync<G>(&mut self, s: &mut Sync<'_, G>, range: (u64, u64))
    where
        G: PhysMem + ?Sized,
    {
        s.counters.resyncs += 1;
        let guest = self.guest;
        let scan = Scan::run(s.guest_mem, &guest, s.limits, range, s.budget);
        s.counters.scans_truncated += u64::from(scan.truncated);
        let stale: Vec<u64> = self
            .pages
            .range(range.0..range.1)
            .filter(|(k, v)| scan.found.get(k) != Some(v))
            .map(|(k, _)| *k)
            .collect();
        if !self.remove(s, &stale) {
            return;
        }
        self.install(s, &scan.found);
    }

    /// Removes every installed page; `false` if the host invalidation
    /// failed (the pages stay pinned).
    pub(crate) fn clear<G: ?Sized>(&mut self, s: &mut Sync<'_, G>) -> bool {
        let all: Vec<u64> = self.pages.keys().copied().collect();
        self.remove(s, &all)
    }

    /// Unmaps the GIOVA pages `pages` from the host table and waits for the
    /// host unit's invalidation of them; the mapper unpins them once it
    /// completed. If the invalidation fails, the pages stay pinned (the unit
    /// may still reach them; a later flush retries) and `false` is
    /// returned.
    fn remove<G: ?Sized>(&mut self, s: &mut Sync<'_, G>, pages: &[u64]) -> bool {
        if pages.is_empty() {
            return true;
        }
        for giova in pages {
            if self.mapper.unmap(Iova::new(giova << PAGE_SHIFT), PAGE_SIZE).is_err() {
                s.counters.host_errors += 1;
            }
            self.pages.remove(giova);
            *s.room += 1;
        }
        s.counters.pages_unmapped += pages.len() as u64;
        if self.mapper.flush().is_err() {
            s.counters.host_errors += 1;
            return false;
        }
        true
    }

    /// Pins and maps what `found` has and the shadow lacks.
    fn install<G: ?Sized>(&mut self, s: &mut Sync<'_, G>, found: &BTreeMap<u64, Leaf>) {
        for (&giova, &leaf) in found {
            if self.pages.contains_key(&giova) {
                continue;
            }
            if *s.room == 0 {
                s.counters.quota_drops += 1;
                continue;
            }
            let at = Iova::new(giova << PAGE_SHIFT);
            let gpa = PhysAddr::new(leaf.page << PAGE_SHIFT);
            match self.mapper.map_at(at, gpa, PAGE_SIZE, leaf.perm) {
                Ok(()) => {}
                Err(teardown::Error::Pin(_)) => {
                    s.counters.pin_failures += 1;
                    continue;
                }
                Err(teardown::Error::TooManyMappings) => {
                    s.counters.quota_drops += 1;
                    continue;
                }
                Err(_) => {
                    s.counters.host_errors += 1;
                    continue;
                }
            }
            s.counters.pages_mapped += 1;
            *s.room -= 1;
            self.pages.insert(giova, leaf);
        }
    }

    /// Gives up the shadow and returns its host table, once every page was
    /// removed ([`clear`](Self::clear) succeeded) and no device uses it.
    pub(crate) fn into_table(self) -> SlPageTable<M, A> {
        self.mapper.into_table()
    }
}
