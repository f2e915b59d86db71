//! The mapping layer: `map(phys, len, perm) -> iova` and `unmap(iova, len)`
//! over one domain's second-level table, composed from an IOVA allocator,
//! the table, an invalidator and a flush policy, with a reuse policy.
//!
//! The rule that ties it together: a torn-down mapping's IOVAs, table
//! frames and page pins are given back only when the flush queue reports
//! that an invalidation covering them has completed.

use invalidation::{
    Clock, FlushMode, FlushQueue, Instant, Invalidation, Invalidator, PageBlocks, Tag,
};
use iommu_platform::{Platform, Storage};
use iova_alloc::IovaRange;
use vtd_regs::desc::Pasid;
use vtd_regs::{IotlbScope, Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr};
use vtd_tables::{Perm, SlPageTable, Stage, Unmapped};

use crate::capacity::{Capacity, Fixed};
use crate::counters::MapperCounters;
use crate::pinner::{NoPinning, PagePinner};
use crate::policy::{Fate, MapperConfig, Reuse};
use crate::registry::{Mapping, Registry, SlotId};
use crate::space::IovaSpace;
use crate::{Error, Result};

/// When a teardown's invalidation is handed to the invalidator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Post {
    /// As the flush policy says (strict: posted and waited for now).
    Now,
    /// Queued only; the batch it belongs to is posted by one poll.
    Batched,
}

/// Runs `unmap` on each buffer of a batch, all of them whatever fails;
/// the first error.
pub(crate) fn each(
    buffers: &[(Iova, u64)],
    mut unmap: impl FnMut(Iova, u64) -> Result<()>,
) -> Option<Error> {
    let mut failed = None;
    for &(iova, len) in buffers {
        if let Err(e) = unmap(iova, len) {
            failed.get_or_insert(e);
        }
    }
    failed
}

/// What a teardown gives back once its invalidation completed.
pub(crate) struct Teardown<L> {
    /// The lease of the range from the space; none if the caller placed it.
    pub(crate) lease: Option<L>,
    pub(crate) token: Unmapped,
    /// First guest page and count of pages to unpin.
    pub(crate) pinned: (u64, u64),
}

/// The domain table of the platform `P`.
type Table<P> = SlPageTable<<P as Platform>::Mem, <P as Platform>::Frames>;

/// The parts a completed teardown is given back to.
struct Owners<P: Platform, S, Pin> {
    table: Table<P>,
    space: S,
    pinner: Pin,
    counters: MapperCounters,
}

impl<P: Platform, S: IovaSpace, Pin: PagePinner> Owners<P, S, Pin> {
    fn release(&mut self, t: Teardown<S::Lease>) {
        if self.table.release(t.token).is_err() {
            self.counters.release_errors += 1;
        }
        self.give_back(t.lease);
        self.unpin(t.pinned.0, t.pinned.1);
    }

    /// Returns a range to the space it was drawn from, by its lease (a
    /// placed range has none: it was not drawn from the space).
    fn give_back(&mut self, lease: Option<S::Lease>) {
        if let Some(lease) = lease
            && self.space.free(lease).is_err()
        {
            self.counters.release_errors += 1;
        }
    }

    fn unpin(&mut self, first: u64, pages: u64) {
        if Pin::PINNING {
            for p in first..first + pages {
                self.pinner.unpin(PhysAddr::new(p << PAGE_SHIFT));
            }
            self.counters.unpins += pages;
        }
    }

    /// Pins the buffer's pages and maps them at `iova`, coalescing runs of
    /// contiguous frames into one range map. Returns the pages pinned and
    /// the bytes mapped, with the error that stopped it if any.
    fn map_pages(
        &mut self,
        iova: Iova,
        first: u64,
        pages: u64,
        perm: Perm,
    ) -> (u64, u64, Option<Error>) {
        let mut run: Option<(u64, PhysAddr, u64)> = None; // (first page index, frame, pages)
        let mut mapped = 0;
        for i in 0..pages {
            let frame = match self.pin(first + i) {
                Ok(f) => f,
                Err(e) => return (i, mapped, Some(e)),
            };
            run = match run {
                Some((s, f, n)) if f.as_u64() + (n << PAGE_SHIFT) == frame.as_u64() => {
                    Some((s, f, n + 1))
                }
                Some(done) => {
                    if let Err(e) = self.map_run(iova, done, perm, &mut mapped) {
                        return (i + 1, mapped, Some(e));
                    }
                    Some((i, frame, 1))
                }
                None => Some((i, frame, 1)),
            };
        }
        let err = run.and_then(|r| self.map_run(iova, r, perm, &mut mapped).err());
        (pages, mapped, err)
    }

    fn pin(&mut self, page: u64) -> Result<PhysAddr> {
        let frame = self.pinner.pin(PhysAddr::new(page << PAGE_SHIFT)).map_err(Error::Pin)?;
        if Pin::PINNING {
            self.counters.pins += 1;
        }
        Ok(frame)
    }

    fn map_run(
        &mut self,
        iova: Iova,
        (start, frame, pages): (u64, PhysAddr, u64),
        perm: Perm,
        mapped: &mut u64,
    ) -> Result<()> {
        let at = Iova::new(iova.as_u64() + (start << PAGE_SHIFT));
        self.counters.table_updates += 1;
        let r = self.table.map_range(at, frame, pages << PAGE_SHIFT, perm);
        *mapped += match r {
            Ok(()) => pages << PAGE_SHIFT,
            Err(p) => p.mapped,
        };
        r.map_err(|p| Error::Table(p.error))
    }
}

/// A domain's mapping layer: maps and unmaps DMA buffers in the domain's
/// table `SlPageTable<P::Mem, P::Frames>` on the platform `P`, drawing
/// IOVAs from the space `S`, invalidating through `I`, holding as many
/// mappings and pending teardowns as the capacity `K` says (by default
/// [`Fixed`]: 1024 and 256, inline), and pinning through `Pin` (none by
/// default: only a hypervisor mapping guest pages pins).
///
/// A driver that stores one names the platform, the space and the
/// invalidator: `Mapper<Kernel, IovaTree<Nodes>, QueuedInvalidator<Regs,
/// Mem>>`. The DMA API a driver usually holds (`vtd-dma`'s `DmaDomain`)
/// picks all but the platform.
///
/// The crate-level documentation has a walk-through.
pub struct Mapper<P, S, I, K = Fixed, Pin = NoPinning>
where
    P: Platform,
    S: IovaSpace,
    K: Capacity,
{
    platform: P,
    owners: Owners<P, S, Pin>,
    inv: I,
    flush: FlushQueue<Teardown<S::Lease>, P::Clock, K::Pending>,
    registry: Registry<S::Lease, K::Maps>,
    config: MapperConfig,
    /// Mappings kept forever so far (persistent policy).
    kept: usize,
    /// The PASID a first-stage table is installed at ([`Mapper::set_pasid`]).
    pasid: Pasid,
}

impl<P, S, I, Pin> Mapper<P, S, I, Fixed, Pin>
where
    P: Platform,
    S: IovaSpace,
    I: Invalidator,
    Pin: PagePinner,
{
    /// A mapper of the default capacity ([`Fixed`]: 1024 mappings, 256
    /// pending teardowns) over `table` (the domain's second-level table,
    /// attached to its devices before or after), drawing IOVAs from
    /// `space`, invalidating through `inv`, pinning through `pinner` and
    /// timing deadlines with `platform`'s clock.
    ///
    /// # Errors
    /// As [`with_capacity`](Self::with_capacity).
    pub fn new(
        platform: P,
        table: Table<P>,
        space: S,
        inv: I,
        pinner: Pin,
        config: MapperConfig,
    ) -> Result<Self> {
        Self::with_capacity(platform, table, space, inv, pinner, config, Fixed)
    }
}

impl<P, S, I, K, Pin> Mapper<P, S, I, K, Pin>
where
    P: Platform,
    S: IovaSpace,
    I: Invalidator,
    Pin: PagePinner,
    K: Capacity,
{
    /// [`new`](Mapper::new) with other capacities: other [`Fixed`] ones
    /// (`Fixed::<4096, 512>`), or capacities chosen at run time
    /// ([`Runtime`](crate::Runtime), with the `alloc` feature).
    ///
    /// # Errors
    /// A configuration the mapper cannot honour, refused rather than
    /// adjusted: [`Error::TimeLimitWithoutClock`] for an optimistic time
    /// limit with a clock that cannot tell time, and the flush queue's
    /// (as [`Error::Invalidation`]): a batch beyond the pending capacity, an
    /// empty batch, a deadline without a clock, no capacity.
    pub fn with_capacity(
        platform: P,
        table: Table<P>,
        space: S,
        inv: I,
        pinner: Pin,
        config: MapperConfig,
        capacity: K,
    ) -> Result<Self> {
        let pending = capacity.pending();
        config.validate::<P::Clock>(pending.len())?;
        // No `?` on large values from here: in debug builds each one is a
        // copy of the mapper on the stack.
        let flush = match FlushQueue::with_storage(config.flush, platform.clock(), pending) {
            Ok(flush) => flush,
            Err(e) => return Err(Error::Invalidation(e)),
        };
        Ok(Mapper {
            owners: Owners { table, space, pinner, counters: MapperCounters::default() },
            platform,
            inv,
            flush,
            registry: Registry::new(&capacity.maps()),
            config,
            kept: 0,
            pasid: Pasid::default(),
        })
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The settings.
    pub fn config(&self) -> &MapperConfig {
        &self.config
    }

    /// What the mapper has done.
    pub fn counters(&self) -> &MapperCounters {
        &self.owners.counters
    }

    /// What the flush queue has done.
    pub fn flush_stats(&self) -> &invalidation::FlushStats {
        self.flush.stats()
    }

    /// The domain's table.
    pub fn table(&self) -> &Table<P> {
        &self.owners.table
    }

    /// The invalidator.
    pub fn invalidator(&mut self) -> &mut I {
        &mut self.inv
    }

    /// The IOVA space, for reservations (`IovaTree::reserve`) and
    /// statistics.
    pub fn space(&mut self) -> &mut S {
        &mut self.owners.space
    }

    /// Sets the PASID the domain's table is installed at, for a table of
    /// first-stage entries (a scalable-mode PASID entry with PGTT
    /// first-stage): its teardowns are then flushed by PASID-based IOTLB
    /// invalidations of the domain and this PASID ([`Tag::Pasid`],
    /// §6.5.2.4), as IOTLB invalidations leave first-stage translations
    /// cached. By default RID_PASID 0 (Linux's `IOMMU_NO_PASID`), the PASID
    /// of requests without one. A second-stage table is flushed by domain
    /// whatever its PASID.
    pub fn set_pasid(&mut self, pasid: Pasid) {
        self.pasid = pasid;
    }

    /// How teardowns are flushed, by the table's kind: by domain for
    /// second-stage entries, by domain and PASID for first-stage ones.
    fn flush_tag(&self) -> Tag {
        match self.owners.table.config().stage() {
            Stage::Second => Tag::Domain(self.config.domain),
            Stage::First { .. } => Tag::Pasid { domain: self.config.domain, pasid: self.pasid },
        }
    }

    /// The pinner.
    pub fn pinner(&self) -> &Pin {
        &self.owners.pinner
    }

    /// Mappings in the table (live, idle and stale).
    pub fn mappings(&self) -> usize {
        self.registry.len()
    }

    /// Stale mappings (optimistic policy).
    pub fn stale(&self) -> usize {
        self.registry.stale_len()
    }

    /// Teardowns whose invalidation has not completed yet.
    pub fn pending(&self) -> usize {
        self.flush.pending()
    }

    /// Maps the buffer `[phys, phys + len)` for DMA with `perm` and returns
    /// the IOVA of `phys`. Under a reuse policy an existing mapping of the
    /// same pages with the same `perm` is reused (never a wider one: the DMA
    /// direction a buffer was mapped for is always enforced).
    pub fn map(&mut self, phys: PhysAddr, len: u64, perm: Perm) -> Result<Iova> {
        let (first, pages) = span(phys.as_u64(), len).ok_or(Error::Empty)?;
        let offset = phys.page_offset();
        if self.config.reuse != Reuse::SingleUse
            && let Some(id) = self.registry.find_buffer(first, pages, perm)
            && let Some(m) = self.registry.get_mut(id)
        {
            m.refs += 1;
            let iova = m.iova.start();
            self.registry.unstale(id);
            self.owners.counters.reuse_hits += 1;
            self.owners.counters.maps += 1;
            return Ok(Iova::new(iova.as_u64() + offset));
        }
        self.make_room()?;
        let lease = self.owners.space.alloc(pages, self.config.dma_limit).map_err(Error::Iova)?;
        let range = S::range(&lease);
        let reusable = self.config.reuse != Reuse::SingleUse;
        self.install(range, Some(lease), [(first, pages)], perm, reusable)?;
        Ok(Iova::new(range.start().as_u64() + offset))
    }

    /// Maps the buffer `[phys, phys + len)` at `iova`, an address the caller
    /// chose: a vIOMMU installing a guest's own IOVA (GIOVA -> HPA, with
    /// `phys` guest-physical and pinned through the mapper's pinner). The
    /// range is not drawn from the mapper's space and never given back to
    /// it, so it must lie outside the space's window; `iova` must have
    /// `phys`'s page offset. The mapping is single-use whatever the reuse
    /// policy (it is found by its IOVA only) and is removed by
    /// [`unmap`](Self::unmap) like any other.
    pub fn map_at(&mut self, iova: Iova, phys: PhysAddr, len: u64, perm: Perm) -> Result<()> {
        let (first, pages) = span(phys.as_u64(), len).ok_or(Error::Empty)?;
        if iova.page_offset() != phys.page_offset() {
            return Err(Error::Misplaced { iova });
        }
        let range = IovaRange::from_pages(iova.page_number(), pages).map_err(Error::Iova)?;
        self.make_room()?;
        self.install(range, None, [(first, pages)], perm, false)
    }

    /// Makes room in the registry for one more mapping: reclaims the stale
    /// ones if it is full.
    fn make_room(&mut self) -> Result<()> {
        if self.registry.is_full() && self.registry.stale_len() > 0 {
            self.reclaim()?;
        }
        if self.registry.is_full() {
            return Err(Error::TooManyMappings);
        }
        Ok(())
    }

    /// Pins and maps the runs of pages `(first page, pages)` one after the
    /// other from the start of `range` and records the mapping; on failure
    /// undoes what was done. `lease`: the range's lease from the space, none
    /// if the caller placed it; `reusable`: whether a later map of the same
    /// buffer may reuse it (otherwise its last unmap tears it down, whatever
    /// the policy). Several runs only without pinning: a teardown unpins
    /// one run.
    fn install(
        &mut self,
        range: IovaRange,
        lease: Option<S::Lease>,
        runs: impl IntoIterator<Item = (u64, u64)>,
        perm: Perm,
        reusable: bool,
    ) -> Result<()> {
        let placed = lease.is_none();
        let (mut pages, mut mapped, mut buffer) = (0, 0, None);
        for (first, run) in runs {
            debug_assert!(!Pin::PINNING || buffer.is_none(), "one run per pinned mapping");
            let at = Iova::new(range.start().as_u64() + (pages << PAGE_SHIFT));
            let (pinned, run_mapped, err) = self.owners.map_pages(at, first, run, perm);
            mapped += run_mapped;
            if let Some(e) = err {
                self.abandon(range, lease, first, pinned, mapped)?;
                return Err(e);
            }
            buffer.get_or_insert(first);
            pages += run;
        }
        let first = buffer.unwrap_or(0);
        let keep = match self.config.reuse {
            Reuse::Persistent { quota } => reusable && quota.is_none_or(|q| self.kept < q),
            _ => false,
        };
        let mapping = Mapping::new(range, first, pages, perm, keep, !reusable);
        if let Err(lease) = self.registry.insert(mapping, lease, reusable && !placed) {
            self.abandon(range, lease, first, pages, mapped)?;
            return Err(Error::TooManyMappings);
        }
        self.kept += usize::from(keep);
        if self.inv.caps().caching_mode {
            self.invalidate_new(range.start(), mapped)?;
        }
        self.owners.counters.maps += 1;
        Ok(())
    }

    /// Gives up the mapper and returns its table, for a caller that tears
    /// the whole domain down (after detaching it and calling
    /// [`flush`](Self::flush)). Teardowns still awaiting an invalidation
    /// are dropped with everything they hold: their frames, IOVAs and pins
    /// are never released, rather than released before the unit forgot
    /// them.
    pub fn into_table(self) -> Table<P> {
        self.owners.table
    }

    /// Gives up the mapper and returns its parts: the table, the space, the
    /// invalidator and the pinner (with the same caveat as
    /// [`into_table`](Self::into_table) about teardowns still pending).
    pub fn into_parts(self) -> (Table<P>, S, I, Pin) {
        (self.owners.table, self.owners.space, self.inv, self.owners.pinner)
    }

    /// Unmaps the buffer `map` returned `iova` for; `len` as given to `map`.
    /// What happens to the mapping is the reuse policy's choice; its
    /// resources come back only after the invalidation that covers it.
    pub fn unmap(&mut self, iova: Iova, len: u64) -> Result<()> {
        match self.unmap_one(iova, len, Post::Now)? {
            Some(now) => self.poll_at(now),
            None => self.poll(),
        }
    }

    /// Unmaps many buffers (each `(iova, len)` as [`unmap`](Self::unmap)
    /// takes) with one invalidation: every teardown's range is queued, then
    /// posted together (touching ranges, e.g. a ring's buffers, merged into
    /// one) and, with strict flushing, waited for once: on return nothing
    /// unmapped is reachable by a device, and its IOVAs, frames and pins
    /// are back (F&S-style batched strict protection). With deferred or
    /// asynchronous flushing the batch joins the queue as one. A buffer
    /// that cannot be unmapped does not stop the others; the first error
    /// is returned after the batch's invalidation.
    pub fn unmap_batch(&mut self, buffers: &[(Iova, u64)]) -> Result<()> {
        let failed = each(buffers, |iova, len| self.unmap_one(iova, len, Post::Batched).map(drop));
        let polled = self.poll();
        failed.map_or(polled, Err)
    }

    /// The unmap of one buffer, its teardown posted per the flush policy
    /// or queued for a batch (`post`); the time read, if one was.
    fn unmap_one(&mut self, iova: Iova, len: u64, post: Post) -> Result<Option<Instant>> {
        let (page, pages) = span(iova.as_u64(), len).ok_or(Error::Empty)?;
        let id = self.registry.find_iova(page).ok_or(Error::NotMapped { iova })?;
        let m = self.registry.get_mut(id).ok_or(Error::NotMapped { iova })?;
        let (refs, keep, single) = (m.unref(pages, iova, len)?, m.keep, m.single);
        self.owners.counters.unmaps += 1;
        if refs == 0 {
            match self.config.reuse.on_last_unmap(keep, single) {
                Fate::TearDown => self.tear_down(id, post)?,
                Fate::Keep => {}
                Fate::Stale { quota } => {
                    let now = self.flush.clock().now();
                    self.registry.make_stale(id, now);
                    if self.registry.stale_len() >= quota {
                        self.reclaim()?;
                    }
                    return Ok(Some(now));
                }
            }
        }
        Ok(None)
    }

    /// Reaps completed invalidations, posts due batches and reclaims stale
    /// mappings past the time limit. An OS calls it from a timer too, to
    /// bound the stale window in time.
    pub fn poll(&mut self) -> Result<()> {
        if let Some((_, since)) = self.registry.oldest_stale() {
            return self.poll_with(since, self.flush.clock().now());
        }
        self.reap()
    }

    /// [`poll`](Self::poll) at `now`, already read.
    fn poll_at(&mut self, now: Instant) -> Result<()> {
        match self.registry.oldest_stale() {
            Some((_, since)) => self.poll_with(since, now),
            None => self.reap(),
        }
    }

    /// Reclaims if the oldest stale mapping, stale `since`, is past the
    /// time limit at `now`; then reaps.
    fn poll_with(&mut self, since: Instant, now: Instant) -> Result<()> {
        if let Reuse::Optimistic { time_limit, .. } = self.config.reuse
            && now.saturating_since(since) >= time_limit
        {
            self.reclaim()?;
        }
        self.reap()
    }

    /// Releases what completed and posts what is due.
    fn reap(&mut self) -> Result<()> {
        if self.flush.pending() == 0 {
            return Ok(());
        }
        let owners = &mut self.owners;
        self.flush.poll(&mut self.inv, |t| owners.release(t)).map_err(Error::Invalidation)
    }

    /// Tears down every stale mapping and completes every pending
    /// invalidation: afterwards only live (and persistent) mappings remain
    /// and every released resource is back.
    pub fn flush(&mut self) -> Result<()> {
        self.tear_down_stale()?;
        self.drain_pending()
    }

    /// Completes every pending invalidation (posting what is queued and
    /// waiting for it) and releases what it covers; stale mappings stay.
    /// Afterwards nothing unmapped is reachable by a device.
    pub fn drain_pending(&mut self) -> Result<()> {
        let owners = &mut self.owners;
        self.flush.flush(&mut self.inv, |t| owners.release(t)).map_err(Error::Invalidation)
    }

    /// Tears down every stale mapping as one batch.
    fn reclaim(&mut self) -> Result<()> {
        self.tear_down_stale()?;
        self.owners.counters.reclaims += 1;
        let owners = &mut self.owners;
        match self.flush.config().mode {
            FlushMode::Strict => Ok(()),
            FlushMode::Deferred => self.flush.flush(&mut self.inv, |t| owners.release(t)),
            FlushMode::Async => self.flush.post(&mut self.inv),
        }
        .map_err(Error::Invalidation)
    }

    /// Tears down every stale mapping, oldest first.
    fn tear_down_stale(&mut self) -> Result<()> {
        while let Some((id, _)) = self.registry.oldest_stale() {
            self.tear_down(id, Post::Now)?;
        }
        Ok(())
    }

    /// Removes a mapping from the table and hands its invalidation to the
    /// flush queue.
    fn tear_down(&mut self, id: SlotId, post: Post) -> Result<()> {
        let (m, lease) = self.registry.remove(id).ok_or(Error::TooManyMappings)?;
        let bytes = m.pages << PAGE_SHIFT;
        self.queue_teardown(m.iova, lease, (m.phys_page, m.pages), bytes, post)
    }

    /// Unmaps the first `mapped` bytes of `range` and queues the teardown
    /// that gives back the range's `lease` (none if placed) and the `pinned`
    /// pages.
    fn queue_teardown(
        &mut self,
        range: IovaRange,
        lease: Option<S::Lease>,
        pinned: (u64, u64),
        mapped: u64,
        post: Post,
    ) -> Result<()> {
        let start = range.start();
        self.owners.counters.table_updates += 1;
        self.owners.counters.teardowns += 1;
        let token = match self.owners.table.unmap_range(start, mapped) {
            Ok(token) => token,
            Err(partial) => {
                self.owners.counters.release_errors += 1;
                partial.done
            }
        };
        let leaf_only = token.leaf_only();
        let end = Iova::new(start.as_u64() + mapped);
        let tag = self.flush_tag();
        let owners = &mut self.owners;
        let payload = Teardown { lease, token, pinned };
        let (inv, release) = (&mut self.inv, |t| owners.release(t));
        match post {
            Post::Now => self.flush.unmapped(inv, tag, start..end, leaf_only, payload, release),
            Post::Batched => self.flush.queue(inv, tag, start..end, leaf_only, payload, release),
        }
        .map_err(Error::Invalidation)
    }

    /// Undoes a map that failed halfway: what was mapped is torn down like
    /// any mapping; if nothing was, everything is given back at once.
    fn abandon(
        &mut self,
        range: IovaRange,
        lease: Option<S::Lease>,
        first: u64,
        pinned: u64,
        mapped: u64,
    ) -> Result<()> {
        if mapped > 0 {
            return self.queue_teardown(range, lease, (first, pinned), mapped, Post::Now);
        }
        self.owners.give_back(lease);
        self.owners.unpin(first, pinned);
        Ok(())
    }

    /// Caching mode (CAP.CM): the unit may have cached the not-present
    /// entries just filled, so the new range is invalidated (§6.1).
    fn invalidate_new(&mut self, start: Iova, bytes: u64) -> Result<()> {
        self.owners.counters.map_invalidations += 1;
        invalidate_new(&mut self.inv, self.config.domain, start, bytes)
    }
}

impl<P, S, I, K> Mapper<P, S, I, K, NoPinning>
where
    P: Platform,
    S: IovaSpace,
    I: Invalidator,
    K: Capacity,
{
    /// Maps the scatter-gather list `segments` (each `(phys, len)`) into
    /// one contiguous IOVA range with `perm`, as Linux's
    /// `iommu_dma_map_sg` does: each segment starts in the page after the
    /// last page of the one before, at its own page offset, so a list whose
    /// inner boundaries are page-aligned is one contiguous buffer to the
    /// device. Returns the IOVA of the first segment's first byte; segment
    /// `i`'s is [`sg_iova`]`(first, segments, i)`. The mapping is never
    /// reused; [`unmap_sg`](Self::unmap_sg) removes it. Only without
    /// pinning: each guest page of a hypervisor is pinned on its own.
    ///
    /// # Errors
    /// [`Error::Empty`] for an empty list or segment, and those of
    /// [`map`](Mapper::map).
    pub fn map_sg(&mut self, segments: &[(PhysAddr, u64)], perm: Perm) -> Result<Iova> {
        let (first, pages) = sg_span(segments).ok_or(Error::Empty)?;
        self.make_room()?;
        let lease = self.owners.space.alloc(pages, self.config.dma_limit).map_err(Error::Iova)?;
        let range = S::range(&lease);
        let runs = segments.iter().filter_map(|&(phys, len)| span(phys.as_u64(), len));
        self.install(range, Some(lease), runs, perm, false)?;
        Ok(Iova::new(range.start().as_u64() + first.page_offset()))
    }

    /// Unmaps what [`map_sg`](Self::map_sg) mapped at `iova` for the same
    /// `segments`.
    ///
    /// # Errors
    /// As [`unmap`](Mapper::unmap).
    pub fn unmap_sg(&mut self, iova: Iova, segments: &[(PhysAddr, u64)]) -> Result<()> {
        let (_, pages) = sg_span(segments).ok_or(Error::Empty)?;
        self.unmap(iova, (pages << PAGE_SHIFT) - iova.page_offset())
    }
}

/// The IOVA of segment `index` of a list [`Mapper::map_sg`] mapped at
/// `first` (the IOVA it returned); `None` past the end.
pub fn sg_iova(first: Iova, segments: &[(PhysAddr, u64)], index: usize) -> Option<Iova> {
    let (&(phys, _), before) = segments.get(..=index)?.split_last()?;
    let pages: u64 = before.iter().filter_map(|&(p, l)| span(p.as_u64(), l)).map(|(_, n)| n).sum();
    Some(Iova::new(
        (first.as_u64() & !(PAGE_SIZE - 1)) + (pages << PAGE_SHIFT) + phys.page_offset(),
    ))
}

/// The first segment's start and the pages of a scatter-gather list laid
/// out as [`Mapper::map_sg`] does; `None` if it or a segment is empty.
fn sg_span(segments: &[(PhysAddr, u64)]) -> Option<(PhysAddr, u64)> {
    let (&(first, _), _) = segments.split_first()?;
    let mut pages = 0u64;
    for &(phys, len) in segments {
        pages = pages.checked_add(span(phys.as_u64(), len)?.1)?;
    }
    Some((first, pages))
}

/// The first page and the page count of `[addr, addr + len)`; `None` for
/// an empty or overflowing buffer.
pub(crate) fn span(addr: u64, len: u64) -> Option<(u64, u64)> {
    let last = addr.checked_add(len.checked_sub(1)?)?;
    let first = addr / PAGE_SIZE;
    Some((first, last / PAGE_SIZE - first + 1))
}

/// Caching mode (CAP.CM): the unit may have cached the not-present entries
/// of `[start, start + bytes)` of `domain` just filled, so they are
/// invalidated at once (§6.1), page-selectively if the unit can.
pub(crate) fn invalidate_new<I: Invalidator>(
    inv: &mut I,
    domain: vtd_regs::DomainId,
    start: Iova,
    bytes: u64,
) -> Result<()> {
    let caps = inv.caps();
    let range = start..Iova::new(start.as_u64() + bytes);
    let drain = vtd_regs::Drain::empty();
    let result = if caps.page_selective {
        inv.invalidate(
            PageBlocks::new(domain, &range, caps.max_mask_order, true)
                .map(|scope| Invalidation::Iotlb { scope, drain }),
        )
    } else {
        inv.invalidate([Invalidation::Iotlb { scope: IotlbScope::Domain(domain), drain }])
    };
    result.map_err(Error::Invalidation)
}
