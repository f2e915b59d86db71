//! Flush policies: when the IOTLB invalidation owed by an unmap is
//! performed, and when the unmapped IOVAs may be handed out again.
//!
//! The mapping layer tells a [`FlushQueue`] "this IOVA range of this domain
//! is no longer mapped" and hands it a payload (typically the IOVA range and
//! the page-table teardown token). The payload comes back through the
//! `release` callback only after an invalidation covering the range has
//! *completed*, never earlier: that is the one rule that keeps a device from
//! reaching memory through a stale IOTLB entry after its IOVA was reused.
//!
//! The three policies of the vIOMMU paper (Amit et al., ATC 2011) are three
//! settings of the same queue:
//! - [`FlushMode::Strict`]: invalidate and wait on every unmap.
//! - [`FlushMode::Deferred`]: Linux's lazy mode. Queue unmaps; when `batch`
//!   of them are queued or the oldest is `deadline` old, post one batched
//!   invalidation (page-selective blocks, or domain-selective when that
//!   would take too many descriptors), wait, then release them all.
//! - [`FlushMode::Async`]: as deferred, but post the batch with its wait
//!   descriptor and return at once; the payloads are released by a later
//!   call that sees the completion.
//!
//! Deadlines are checked when the queue is called: an OS calls
//! [`FlushQueue::poll`] from a timer to bound the stale window in time.
//!
//! A configuration the queue cannot honour is refused when the queue is
//! made, never adjusted: a batch larger than the queue's capacity
//! ([`Error::BatchTooLarge`]), an empty batch, or a deadline measured with a
//! clock that cannot tell time ([`Error::DeadlineWithoutClock`]).

use core::ops::Range;
use core::time::Duration;

use heapless::Vec;
use iommu_platform::{Inline, Storage};
use vtd_regs::{IotlbScope, Iova};

use crate::blocks::PageBlocks;
use crate::clock::{Clock, Instant};
use crate::invalidator::Invalidator;
use crate::ring::{Batches, Ring};
use crate::tag::Tag;
use crate::{Error, Invalidation, Result, Ticket};

/// When invalidations are performed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlushMode {
    /// Invalidate and wait on every unmap.
    Strict,
    /// Batch unmaps; post and wait when the batch is full or due.
    Deferred,
    /// Batch unmaps; post when full or due, reap completions later.
    Async,
}

/// The settings of a [`FlushQueue`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlushConfig {
    /// The policy.
    pub mode: FlushMode,
    /// Unmaps per batch (ignored by [`FlushMode::Strict`]); at least one
    /// and at most the queue's capacity, or the queue refuses the
    /// configuration.
    pub batch: usize,
    /// The longest an unmap may wait before its batch is posted; needs a
    /// clock that tells time.
    pub deadline: Option<Duration>,
    /// The most page-selective descriptors a batch may use before it falls
    /// back to domain-selective invalidation.
    pub max_page_selective: usize,
}

impl FlushConfig {
    /// Invalidate and wait on every unmap.
    pub const fn strict() -> Self {
        FlushConfig { mode: FlushMode::Strict, batch: 1, deadline: None, max_page_selective: 16 }
    }

    /// Linux's lazy mode: batches of `batch` unmaps, each at most `deadline`
    /// old (Linux uses 256 and 10 ms).
    pub const fn deferred(batch: usize, deadline: Duration) -> Self {
        FlushConfig {
            mode: FlushMode::Deferred,
            batch,
            deadline: Some(deadline),
            max_page_selective: 16,
        }
    }

    /// Asynchronous batches of `batch` unmaps, posted at most `deadline`
    /// after the oldest.
    pub const fn asynchronous(batch: usize, deadline: Duration) -> Self {
        FlushConfig {
            mode: FlushMode::Async,
            batch,
            deadline: Some(deadline),
            max_page_selective: 16,
        }
    }
}

impl FlushConfig {
    /// Whether a queue holding `capacity` unmaps and timed by a clock `C`
    /// can honour this configuration (what [`FlushQueue::new`] checks).
    ///
    /// # Errors
    /// [`Error::NoCapacity`] for a capacity of 0, [`Error::EmptyBatch`] or
    /// [`Error::BatchTooLarge`] for a batch outside `1..=capacity` (unless
    /// strict, which ignores it), [`Error::DeadlineWithoutClock`] for a
    /// deadline with a clock that cannot tell time.
    pub fn validate<C: Clock>(&self, capacity: usize) -> Result<()> {
        if capacity == 0 {
            return Err(Error::NoCapacity);
        }
        if self.mode != FlushMode::Strict {
            if self.batch == 0 {
                return Err(Error::EmptyBatch);
            }
            if self.batch > capacity {
                return Err(Error::BatchTooLarge { batch: self.batch, capacity });
            }
        }
        if self.deadline.is_some() && !C::TELLS_TIME {
            return Err(Error::DeadlineWithoutClock);
        }
        Ok(())
    }
}

/// What a [`FlushQueue`] has done.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FlushStats {
    /// Unmaps reported.
    pub unmaps: u64,
    /// Batches posted to the invalidator.
    pub batches: u64,
    /// Payloads released after their invalidation completed.
    pub released: u64,
    /// Blocking waits for completion.
    pub waits: u64,
    /// Time spent in those waits, by the queue's clock.
    pub wait_time: Duration,
    /// Batches that fell back to domain-selective (or global) invalidation.
    pub domain_fallbacks: u64,
}

struct Entry<T> {
    tag: Tag,
    range: Range<Iova>,
    leaf_only: bool,
    since: Instant,
    payload: T,
}

/// Queued unmaps of one tag whose ranges touch, merged: the buffers of a
/// ring, allocated contiguously and unmapped in order (or in reverse),
/// become one range, so a few page-selective blocks cover the whole batch
/// rather than a domain-selective invalidation. The hint is kept only if
/// every merged unmap was leaf-only (§6.5.2.3: IH = 1 lets the unit keep
/// paging-structure caches, so one detached table clears it for the run).
struct Run {
    tag: Tag,
    range: Range<Iova>,
    leaf_only: bool,
}

fn runs<'e, T: 'e>(entries: impl Iterator<Item = &'e Entry<T>>) -> impl Iterator<Item = Run> {
    let mut entries = entries.peekable();
    core::iter::from_fn(move || {
        let first = entries.next()?;
        let mut run =
            Run { tag: first.tag, range: first.range.clone(), leaf_only: first.leaf_only };
        while let Some(e) = entries.next_if(|e| {
            e.tag == run.tag && (e.range.start == run.range.end || e.range.end == run.range.start)
        }) {
            run.range = run.range.start.min(e.range.start)..run.range.end.max(e.range.end);
            run.leaf_only &= e.leaf_only;
        }
        Some(run)
    })
}

/// Most distinct domains one batch invalidates domain-selectively before it
/// invalidates globally instead.
const MAX_BATCH_DOMAINS: usize = 8;

/// A flush policy over at most as many unmaps awaiting invalidation as
/// the storage `S` holds: `Inline<N>` (the default, 256) without a heap,
/// `Boxed(n)` with the `alloc` feature.
///
/// ```
/// use core::time::Duration;
/// use invalidation::{Error, FlushConfig, FlushQueue, NoClock};
/// use iommu_platform::{Inline, TscClock};
///
/// let tsc = TscClock::from_hz(2_000_000_000).unwrap();
/// let linux = FlushConfig::deferred(256, Duration::from_millis(10));
/// let q: FlushQueue<u64, _> = FlushQueue::new(linux, tsc)?;
/// assert_eq!(q.capacity(), 256);
///
/// // Refused, not adjusted: a batch beyond the capacity, a deadline no
/// // clock can measure.
/// let small = FlushQueue::<u64, _, _>::with_storage(linux, tsc, Inline::<16>);
/// assert_eq!(small.err(), Some(Error::BatchTooLarge { batch: 256, capacity: 16 }));
/// let blind = FlushQueue::<u64, _>::new(linux, NoClock);
/// assert_eq!(blind.err(), Some(Error::DeadlineWithoutClock));
/// # Ok::<(), Error>(())
/// ```
///
/// An inline capacity of zero does not build (the message names it):
///
/// ```compile_fail,E0080
/// use invalidation::{FlushConfig, FlushQueue, NoClock};
/// use iommu_platform::Inline;
///
/// let q = FlushQueue::<u64, _, _>::with_storage(FlushConfig::strict(), NoClock, Inline::<0>);
/// ```
pub struct FlushQueue<T, C: Clock, S: Storage = Inline<256>> {
    config: FlushConfig,
    /// Unmaps per batch: `config.batch`, or one when strict.
    batch: usize,
    clock: C,
    /// Oldest first; the first `posted` entries belong to posted batches.
    entries: Ring<Entry<T>, S>,
    posted: usize,
    /// Posted batches, oldest first: their ticket and entry count.
    in_flight: Batches<S>,
    stats: FlushStats,
}

impl<T, C: Clock> FlushQueue<T, C> {
    /// A queue with the given policy and clock, of the default capacity
    /// (256 unmaps, inline).
    ///
    /// # Errors
    /// As [`with_storage`](Self::with_storage).
    #[inline]
    pub fn new(config: FlushConfig, clock: C) -> Result<Self> {
        Self::with_storage(config, clock, Inline)
    }
}

impl<T, C: Clock, S: Storage> FlushQueue<T, C, S> {
    /// A queue with the given policy and clock, holding as many unmaps as
    /// `storage`'s arrays are long: `Inline::<N>` or, with `alloc`,
    /// `Boxed(n)`.
    ///
    /// # Errors
    /// [`Error::NoCapacity`] for a storage of length 0,
    /// [`Error::EmptyBatch`] or [`Error::BatchTooLarge`] for a batch
    /// outside `1..=capacity` (unless strict, which ignores it),
    /// [`Error::DeadlineWithoutClock`] for a deadline with a clock that
    /// cannot tell time ([`NoClock`](crate::NoClock)).
    #[inline]
    pub fn with_storage(config: FlushConfig, clock: C, storage: S) -> Result<Self> {
        const {
            assert!(
                !matches!(S::FIXED_LEN, Some(0)),
                "FlushQueue: the pending capacity N of Inline<N> must be at least 1"
            )
        };
        config.validate::<C>(storage.len())?;
        let batch = if config.mode == FlushMode::Strict { 1 } else { config.batch };
        Ok(FlushQueue {
            config,
            batch,
            clock,
            entries: Ring::new(&storage),
            posted: 0,
            in_flight: Batches::new(&storage),
            stats: FlushStats::default(),
        })
    }

    /// How many unmaps the queue holds.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// The policy.
    pub fn config(&self) -> &FlushConfig {
        &self.config
    }

    /// The queue's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// What the queue has done.
    pub fn stats(&self) -> &FlushStats {
        &self.stats
    }

    /// Unmaps whose payload has not been released yet.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Reports that `range` of `tag` (a domain, or a domain's PASID for
    /// first-stage tables, see [`Tag`]) is no longer mapped (`leaf_only`:
    /// only leaf entries were cleared, no page-table page was detached).
    /// `payload` is passed to `release` once an invalidation covering the
    /// range has completed, by this call or a later one.
    ///
    /// On error the unmap stays queued (its payload is not lost and not
    /// released); a later call retries.
    pub fn unmapped<I: Invalidator>(
        &mut self,
        inv: &mut I,
        tag: impl Into<Tag>,
        range: Range<Iova>,
        leaf_only: bool,
        payload: T,
        mut release: impl FnMut(T),
    ) -> Result<()> {
        // One clock read for both (a TSC read is a good part of a deferred
        // unmap's cost): the time the unmap is queued at.
        let now = self.queue_at(inv, tag.into(), range, leaf_only, payload, &mut release)?;
        self.advance(inv, &mut release, now)
    }

    /// As [`unmapped`](Self::unmapped), but posts nothing the policy would
    /// post now (unless the queue is full): a batched unmap queues each
    /// buffer's range this way, then one [`poll`](Self::poll) posts them
    /// together. In strict mode that poll posts every queued range as one
    /// batch and waits for it once (F&S-style batched strict protection);
    /// until then nothing queued is released.
    pub fn queue<I: Invalidator>(
        &mut self,
        inv: &mut I,
        tag: impl Into<Tag>,
        range: Range<Iova>,
        leaf_only: bool,
        payload: T,
        mut release: impl FnMut(T),
    ) -> Result<()> {
        self.queue_at(inv, tag.into(), range, leaf_only, payload, &mut release).map(drop)
    }

    /// [`queue`](Self::queue), returning the time the unmap was queued at.
    fn queue_at<I: Invalidator>(
        &mut self,
        inv: &mut I,
        tag: Tag,
        range: Range<Iova>,
        leaf_only: bool,
        payload: T,
        release: &mut impl FnMut(T),
    ) -> Result<Instant> {
        self.reap(inv, release)?;
        if self.entries.is_full() {
            self.make_room(inv, release)?;
        }
        let since = self.clock.now();
        // `make_room` succeeded, so there is a free slot (the capacity is
        // at least one, checked in `new`).
        if self.entries.push_back(Entry { tag, range, leaf_only, since, payload }).is_err() {
            return Err(Error::QueueFull);
        }
        self.stats.unmaps += 1;
        Ok(since)
    }

    /// Releases what has completed and posts (and, if deferred, waits for)
    /// the queued unmaps whose deadline has passed. Call it periodically to
    /// bound the stale window in time.
    pub fn poll<I: Invalidator>(&mut self, inv: &mut I, mut release: impl FnMut(T)) -> Result<()> {
        self.reap(inv, &mut release)?;
        let now = self.clock.now();
        self.advance(inv, &mut release, now)
    }

    /// Posts everything queued now, without waiting (the payloads are
    /// released by a later call that sees the completion).
    pub fn post<I: Invalidator>(&mut self, inv: &mut I) -> Result<()> {
        self.post_queued(inv).map(drop)
    }

    /// Invalidates everything queued, waits, and releases every payload.
    pub fn flush<I: Invalidator>(&mut self, inv: &mut I, mut release: impl FnMut(T)) -> Result<()> {
        self.post_queued(inv)?;
        if let Some(last) = self.in_flight.back() {
            self.wait(inv, last)?;
        }
        self.reap(inv, &mut release)
    }

    /// Posts the queued unmaps if the policy says it is time (`now`), and
    /// waits for them in the blocking modes.
    fn advance<I: Invalidator>(
        &mut self,
        inv: &mut I,
        release: &mut impl FnMut(T),
        now: Instant,
    ) -> Result<()> {
        if !self.due(now) {
            return Ok(());
        }
        let ticket = self.post_queued(inv)?;
        if let (Some(ticket), true) = (ticket, self.config.mode != FlushMode::Async) {
            self.wait(inv, ticket)?;
        }
        self.reap(inv, release)
    }

    /// Whether the unposted unmaps must be posted at `now`.
    fn due(&self, now: Instant) -> bool {
        let queued = self.entries.len() - self.posted;
        if queued == 0 {
            return false;
        }
        if queued >= self.batch {
            return true;
        }
        let oldest = self.entries.get(self.posted).map(|e| e.since);
        match (self.config.deadline, oldest) {
            (Some(deadline), Some(since)) => now.saturating_since(since) >= deadline,
            _ => false,
        }
    }

    /// Frees a slot of a full queue: posts what is queued and waits for the
    /// oldest batch.
    fn make_room<I: Invalidator>(
        &mut self,
        inv: &mut I,
        release: &mut impl FnMut(T),
    ) -> Result<()> {
        self.post_queued(inv)?;
        if let Some((oldest, _)) = self.in_flight.front() {
            self.wait(inv, oldest)?;
        }
        self.reap(inv, release)
    }

    fn wait<I: Invalidator>(&mut self, inv: &mut I, ticket: Ticket) -> Result<()> {
        let start = self.clock.now();
        let result = inv.wait(ticket);
        self.stats.waits += 1;
        self.stats.wait_time += self.clock.now().saturating_since(start);
        result
    }

    /// Releases the payloads of completed batches, oldest first.
    fn reap<I: Invalidator>(&mut self, inv: &mut I, release: &mut impl FnMut(T)) -> Result<()> {
        while let Some((ticket, count)) = self.in_flight.front() {
            if !inv.is_complete(ticket)? {
                break;
            }
            self.in_flight.pop_front();
            for _ in 0..count {
                if let Some(entry) = self.entries.pop_front() {
                    self.stats.released += 1;
                    release(entry.payload);
                }
            }
            self.posted -= count;
        }
        Ok(())
    }

    /// Posts every queued (not yet posted) unmap as one batch.
    fn post_queued<I: Invalidator>(&mut self, inv: &mut I) -> Result<Option<Ticket>> {
        let count = self.entries.len() - self.posted;
        if count == 0 {
            return Ok(None);
        }
        let caps = inv.caps();
        let drain = caps.drain;
        let queued = || self.entries.iter_from(self.posted);
        let selective: usize = if caps.page_selective {
            runs(queued()).map(|r| PageBlocks::count(&r.range, caps.max_mask_order)).sum()
        } else {
            usize::MAX
        };
        let ticket = if selective <= self.config.max_page_selective {
            let max = caps.max_mask_order;
            inv.post(runs(queued()).flat_map(|r| {
                let tag = r.tag;
                PageBlocks::new(tag.domain(), &r.range, max, r.leaf_only)
                    .map(move |scope| tag.page(scope, drain))
            }))?
        } else {
            self.stats.domain_fallbacks += 1;
            let mut tags: Vec<Tag, MAX_BATCH_DOMAINS> = Vec::new();
            let mut global = false;
            for e in queued() {
                if !tags.contains(&e.tag) && tags.push(e.tag).is_err() {
                    global = true;
                    break;
                }
            }
            // A global IOTLB invalidation drops every translation type
            // (§6.5.2.3), first-stage ones too.
            if global {
                inv.post([Invalidation::Iotlb { scope: IotlbScope::Global, drain }])?
            } else {
                inv.post(tags.iter().map(|t| t.whole(drain)))?
            }
        };
        // `in_flight` has room: it never holds more batches than entries.
        if !self.in_flight.push_back(ticket, count) {
            return Err(Error::QueueFull);
        }
        self.posted += count;
        self.stats.batches += 1;
        Ok(Some(ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, InvalidationCaps, NoClock};
    use core::cell::Cell;
    use proptest::prelude::*;
    use vtd_regs::{DomainId, Drain, PAGE_SIZE};

    /// An invalidator whose batches complete only when the test says so
    /// (or when waited for), recording what was posted.
    #[derive(Default)]
    struct FakeInvalidator {
        posted: std::vec::Vec<std::vec::Vec<Invalidation>>,
        completed: usize,
        fail_posts: bool,
    }

    impl Invalidator for FakeInvalidator {
        fn caps(&self) -> InvalidationCaps {
            InvalidationCaps {
                page_selective: true,
                max_mask_order: 9,
                drain: Drain::all(),
                caching_mode: false,
            }
        }
        fn post<I: IntoIterator<Item = Invalidation>>(&mut self, batch: I) -> Result<Ticket> {
            if self.fail_posts {
                return Err(Error::Timeout);
            }
            self.posted.push(batch.into_iter().collect());
            Ok(Ticket(self.posted.len() as u32))
        }
        fn is_complete(&mut self, ticket: Ticket) -> Result<bool> {
            Ok(ticket.0 as usize <= self.completed)
        }
        fn wait(&mut self, ticket: Ticket) -> Result<()> {
            self.completed = self.completed.max(ticket.0 as usize);
            Ok(())
        }
    }

    impl FakeInvalidator {
        /// Whether a completed batch covers every page of `range` of
        /// `domain`, and if not `leaf_only` (a table was detached), by
        /// invalidations without the hint (IH = 0), which drop
        /// paging-structure caches too.
        fn covered(&self, domain: DomainId, range: &Range<Iova>, leaf_only: bool) -> bool {
            let done = &self.posted[..self.completed];
            (range.start.as_u64() / PAGE_SIZE..range.end.as_u64().div_ceil(PAGE_SIZE)).all(|p| {
                let iova = Iova::new(p * PAGE_SIZE);
                done.iter().flatten().any(|req| match req {
                    Invalidation::Iotlb {
                        scope: IotlbScope::Pages { leaf_only: true, .. },
                        ..
                    } if !leaf_only => false,
                    Invalidation::Iotlb { scope, .. } => scope.covers(domain, iova),
                    _ => false,
                })
            })
        }
    }

    #[derive(Default)]
    struct TestClock(Cell<u64>);
    impl Clock for TestClock {
        fn now(&self) -> Instant {
            Instant(self.0.get())
        }
    }

    fn page(n: u64) -> Range<Iova> {
        Iova::new(n * PAGE_SIZE)..Iova::new((n + 1) * PAGE_SIZE)
    }

    const D: DomainId = DomainId::new(3);

    #[test]
    fn strict_releases_every_unmap_after_its_own_invalidation() {
        let mut inv = FakeInvalidator::default();
        let mut q: FlushQueue<u64, _, Inline<4>> =
            FlushQueue::with_storage(FlushConfig::strict(), NoClock, Inline).unwrap();
        let mut released = std::vec::Vec::new();
        for n in 0..3 {
            q.unmapped(&mut inv, D, page(n), true, n, |p| released.push(p)).unwrap();
            assert_eq!(released.len() as u64, n + 1);
        }
        assert_eq!(inv.posted.len(), 3);
        let scope = IotlbScope::pages(D, Iova::new(PAGE_SIZE), 0, true).unwrap();
        assert_eq!(inv.posted[1], [Invalidation::Iotlb { scope, drain: Drain::all() }]);
        assert_eq!(q.stats().waits, 3);
    }

    /// A batched strict unmap: queued ranges are released by one poll
    /// after one batch and one wait; touching ranges merge into one run
    /// whose hint is cleared by the one unmap that detached a table.
    #[test]
    fn strict_queued_unmaps_post_once_and_wait_once() {
        let mut inv = FakeInvalidator::default();
        let mut q: FlushQueue<u64, _, Inline<8>> =
            FlushQueue::with_storage(FlushConfig::strict(), NoClock, Inline).unwrap();
        let mut released = std::vec::Vec::new();
        for n in 0..4 {
            q.queue(&mut inv, D, page(n), n != 2, n, |p| released.push(p)).unwrap();
        }
        q.queue(&mut inv, D, page(9), true, 9, |p| released.push(p)).unwrap();
        assert!(released.is_empty() && inv.posted.is_empty());
        q.poll(&mut inv, |p| released.push(p)).unwrap();
        assert_eq!(released, [0, 1, 2, 3, 9]);
        assert_eq!(q.stats().waits, 1);
        let pages = |addr, order, leaf_only| Invalidation::Iotlb {
            scope: IotlbScope::pages(D, Iova::new(addr * PAGE_SIZE), order, leaf_only).unwrap(),
            drain: Drain::all(),
        };
        assert_eq!(inv.posted, [[pages(0, 2, false), pages(9, 0, true)]]);
    }

    #[test]
    fn deferred_posts_one_batch_when_full() {
        let mut inv = FakeInvalidator::default();
        let config = FlushConfig::deferred(4, Duration::from_millis(10));
        let mut q: FlushQueue<u64, _, Inline<8>> =
            FlushQueue::with_storage(config, TestClock::default(), Inline).unwrap();
        let mut released = std::vec::Vec::new();
        for n in 0..3 {
            q.unmapped(&mut inv, D, page(n * 2), true, n, |p| released.push(p)).unwrap();
        }
        assert!(released.is_empty() && inv.posted.is_empty());
        q.unmapped(&mut inv, D, page(6), true, 3, |p| released.push(p)).unwrap();
        assert_eq!(released, [0, 1, 2, 3]);
        assert_eq!(inv.posted.len(), 1);
        assert_eq!(inv.posted[0].len(), 4);
    }

    #[test]
    fn deferred_deadline_fires_on_poll() {
        let mut inv = FakeInvalidator::default();
        let clock = TestClock(Cell::new(0));
        let config = FlushConfig::deferred(256, Duration::from_millis(10));
        let mut q: FlushQueue<u64, _, Inline<256>> =
            FlushQueue::with_storage(config, &clock, Inline).unwrap();
        let mut released = std::vec::Vec::new();
        q.unmapped(&mut inv, D, page(1), true, 1, |p| released.push(p)).unwrap();
        clock.0.set(9_999_999);
        q.poll(&mut inv, |p| released.push(p)).unwrap();
        assert!(released.is_empty());
        clock.0.set(10_000_000);
        q.poll(&mut inv, |p| released.push(p)).unwrap();
        assert_eq!(released, [1]);
    }

    #[test]
    fn async_releases_only_after_completion() {
        let mut inv = FakeInvalidator::default();
        let config = FlushConfig::asynchronous(2, Duration::from_millis(10));
        let mut q: FlushQueue<u64, _, Inline<4>> =
            FlushQueue::with_storage(config, TestClock::default(), Inline).unwrap();
        let mut released = std::vec::Vec::new();
        q.unmapped(&mut inv, D, page(1), true, 1, |p| released.push(p)).unwrap();
        q.unmapped(&mut inv, D, page(2), true, 2, |p| released.push(p)).unwrap();
        assert_eq!(inv.posted.len(), 1);
        assert!(released.is_empty());
        q.poll(&mut inv, |p| released.push(p)).unwrap();
        assert!(released.is_empty());
        inv.completed = 1;
        q.poll(&mut inv, |p| released.push(p)).unwrap();
        assert_eq!(released, [1, 2]);
        assert_eq!(q.stats().waits, 0);
    }

    #[test]
    fn async_full_queue_waits_for_the_oldest_batch() {
        let mut inv = FakeInvalidator::default();
        let config = FlushConfig::asynchronous(2, Duration::from_millis(10));
        let mut q: FlushQueue<u64, _, Inline<4>> =
            FlushQueue::with_storage(config, TestClock::default(), Inline).unwrap();
        let mut released = std::vec::Vec::new();
        for n in 0..5 {
            q.unmapped(&mut inv, D, page(n), true, n, |p| released.push(p)).unwrap();
        }
        assert_eq!(released, [0, 1]);
        assert_eq!(q.pending(), 3);
        q.flush(&mut inv, |p| released.push(p)).unwrap();
        assert_eq!(released, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn large_batches_fall_back_to_domain_selective() {
        let mut inv = FakeInvalidator::default();
        let config = FlushConfig {
            max_page_selective: 8,
            ..FlushConfig::deferred(4, Duration::from_millis(10))
        };
        let mut q: FlushQueue<u64, _, Inline<4>> =
            FlushQueue::with_storage(config, TestClock::default(), Inline).unwrap();
        let other = DomainId::new(4);
        // Pages 1..6 need blocks 1, 2-3, 4-5: 3 descriptors per range, 12 > 8.
        let range = Iova::new(PAGE_SIZE)..Iova::new(6 * PAGE_SIZE);
        for (n, d) in [D, other, D, other].into_iter().enumerate() {
            q.unmapped(&mut inv, d, range.clone(), false, n as u64, drop).unwrap();
        }
        let want: std::vec::Vec<_> = [D, other]
            .map(|d| Invalidation::Iotlb { scope: IotlbScope::Domain(d), drain: Drain::all() })
            .into();
        assert_eq!(inv.posted, [want]);
        assert_eq!(q.stats().domain_fallbacks, 1);
    }

    #[test]
    fn configurations_it_cannot_honour_are_refused() {
        fn q<C: Clock>(config: FlushConfig, clock: C) -> Result<FlushQueue<u64, C, Inline<16>>> {
            FlushQueue::with_storage(config, clock, Inline)
        }
        let deferred = FlushConfig::deferred(16, Duration::from_millis(10));
        assert!(q(deferred, TestClock::default()).is_ok());
        assert_eq!(
            q(FlushConfig { batch: 17, ..deferred }, TestClock::default()).err(),
            Some(Error::BatchTooLarge { batch: 17, capacity: 16 })
        );
        let asynchronous = FlushConfig::asynchronous(0, Duration::from_millis(1));
        assert_eq!(q(asynchronous, TestClock::default()).err(), Some(Error::EmptyBatch));
        assert_eq!(q(deferred, NoClock).err(), Some(Error::DeadlineWithoutClock));
        assert!(q(FlushConfig { deadline: None, ..deferred }, NoClock).is_ok());
        // Strict ignores the batch; its deadline is refused like any other.
        assert!(q(FlushConfig { batch: 1000, ..FlushConfig::strict() }, NoClock).is_ok());
        #[cfg(feature = "alloc")]
        {
            use iommu_platform::Boxed;
            let q =
                FlushQueue::<u64, _, _>::with_storage(deferred, TestClock::default(), Boxed(64));
            assert_eq!(q.map(|q| q.capacity()).ok(), Some(64));
            let none = FlushQueue::<u64, _, _>::with_storage(deferred, NoClock, Boxed(0));
            assert_eq!(none.err(), Some(Error::NoCapacity));
        }
        assert!(Error::BatchTooLarge { batch: 17, capacity: 16 }.to_string().contains("17"));
    }

    /// A configured batch is the batch: 256 deferred unmaps in batches of
    /// 16 are 16 posts (each one IQT write on a queued invalidator).
    #[test]
    fn batches_are_as_configured() {
        let mut inv = FakeInvalidator::default();
        let config = FlushConfig::deferred(16, Duration::from_millis(10));
        let mut q: FlushQueue<u64, _, Inline<16>> =
            FlushQueue::with_storage(config, TestClock::default(), Inline).unwrap();
        for n in 0..256 {
            q.unmapped(&mut inv, D, page(n), true, n, drop).unwrap();
        }
        q.flush(&mut inv, drop).unwrap();
        assert_eq!(inv.posted.len(), 16);
        assert!(inv.posted.iter().all(|b| b.len() <= 16));
    }

    #[test]
    fn failed_posts_keep_payloads_for_a_retry() {
        let mut inv = FakeInvalidator { fail_posts: true, ..Default::default() };
        let mut q: FlushQueue<u64, _, Inline<4>> =
            FlushQueue::with_storage(FlushConfig::strict(), NoClock, Inline).unwrap();
        let mut released = std::vec::Vec::new();
        assert_eq!(
            q.unmapped(&mut inv, D, page(1), true, 1, |p| released.push(p)),
            Err(Error::Timeout)
        );
        assert!(released.is_empty());
        assert_eq!(q.pending(), 1);
        inv.fail_posts = false;
        q.flush(&mut inv, |p| released.push(p)).unwrap();
        assert_eq!(released, [1]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// `queue`: without posting, as a batched unmap does.
        Unmap {
            domain: u16,
            page: u64,
            pages: u64,
            leaf_only: bool,
            queue: bool,
        },
        Poll,
        Complete,
        Tick(u64),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u16..4, 0u64..512, 1u64..40, any::<bool>(), any::<bool>()).prop_map(|(domain, page, pages, leaf_only, queue)| Op::Unmap { domain, page, pages, leaf_only, queue }),
            2 => Just(Op::Poll),
            2 => Just(Op::Complete),
            2 => (0u64..5_000_000).prop_map(Op::Tick),
            1 => Just(Op::Flush),
        ]
    }

    fn mode() -> impl Strategy<Value = FlushConfig> {
        prop_oneof![
            Just(FlushConfig::strict()),
            (1usize..=16).prop_map(|b| FlushConfig::deferred(b, Duration::from_millis(3))),
            (1usize..=16).prop_map(|b| FlushConfig::asynchronous(b, Duration::from_millis(3))),
        ]
    }

    proptest! {
        /// The rule of the crate: a payload comes back only once a completed
        /// invalidation covers its whole range; every payload comes back
        /// after a flush; batches never exceed the configured size. A
        /// payload whose unmap detached a table (not leaf-only) comes back
        /// only after invalidations without the hint cover it, whether or
        /// not its range was merged with others'.
        #[test]
        fn released_only_after_covering_invalidation(config in mode(), ops in prop::collection::vec(op(), 1..200)) {
            let mut inv = FakeInvalidator::default();
            let clock = TestClock(Cell::new(0));
            let mut q: FlushQueue<(DomainId, Range<Iova>, bool), _, Inline<16>> = FlushQueue::with_storage(config, &clock, Inline).unwrap();
            let mut unmaps = 0;
            let mut released = std::vec::Vec::new();
            for op in ops {
                let check = |(d, r, leaf): (DomainId, Range<Iova>, bool), inv: &FakeInvalidator, out: &mut std::vec::Vec<_>| {
                    assert!(inv.covered(d, &r, leaf), "released {r:?} of {d:?} before invalidation");
                    out.push(r);
                };
                match op {
                    Op::Unmap { domain, page, pages, leaf_only, queue } => {
                        let r = Iova::new(page * PAGE_SIZE)..Iova::new((page + pages) * PAGE_SIZE);
                        let d = DomainId::new(domain);
                        // The callback cannot borrow `inv` while `q` does: collect, then check.
                        let mut out = std::vec::Vec::new();
                        let payload = (d, r.clone(), leaf_only);
                        if queue {
                            q.queue(&mut inv, d, r, leaf_only, payload, |p| out.push(p)).unwrap();
                        } else {
                            q.unmapped(&mut inv, d, r, leaf_only, payload, |p| out.push(p)).unwrap();
                        }
                        for p in out { check(p, &inv, &mut released); }
                        unmaps += 1;
                    }
                    Op::Poll | Op::Flush => {
                        let mut out = std::vec::Vec::new();
                        if matches!(op, Op::Poll) {
                            q.poll(&mut inv, |p| out.push(p)).unwrap();
                        } else {
                            q.flush(&mut inv, |p| out.push(p)).unwrap();
                            prop_assert_eq!(q.pending(), 0);
                        }
                        for p in out { check(p, &inv, &mut released); }
                    }
                    Op::Complete => inv.completed = inv.posted.len(),
                    Op::Tick(ns) => clock.0.set(clock.0.get() + ns),
                }
                for b in &inv.posted {
                    prop_assert!(b.len() <= config.max_page_selective.max(3));
                }
            }
            let mut out = std::vec::Vec::new();
            q.flush(&mut inv, |p| out.push(p)).unwrap();
            for p in out {
                prop_assert!(inv.covered(p.0, &p.1, p.2));
                released.push(p.1);
            }
            prop_assert_eq!(released.len(), unmaps);
        }
    }
}
