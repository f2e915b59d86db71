//! The mapping layer shared by CPUs: one [`SharedMapper`] per domain
//! (`Sync`), used through one [`MapperHandle`] per CPU, for every reuse
//! and flush policy, with no lock common to all CPUs on the map/unmap fast
//! path:
//! - IOVAs: each handle has its own magazines ([`SharedSpace`]: an
//!   `iova-alloc` `IovaCache` gives a `CpuHandle` per CPU).
//! - Tables: `vtd-tables`' [`SharedSlTable`], updated through `&self`;
//!   disjoint ranges never serialise, intermediate tables are installed by
//!   compare-and-swap.
//! - Registries (reuse and the IOVA -> mapping lookup of unmap): one per
//!   handle, each behind its own lock, which only a cross-CPU unmap of a
//!   mapping that handle made (or a counter read) ever contends for.
//! - Flush queues: one per handle ([`FlushScope::PerHandle`], Linux's
//!   per-CPU `iova_fq`), or one shared by all ([`FlushScope::Single`],
//!   Linux's single queue for units whose every flush is expensive, e.g. in
//!   caching mode under a hypervisor). The unit's invalidation queue is one
//!   resource: posting takes the [`SharedInvalidator`]'s lock, once per
//!   batch; completion is read from an atomic watermark.
//!
//! The rule holds whichever CPU posted or reaped: a teardown's IOVA lease
//! and detached table frames are given back only by a flush queue that saw
//! the invalidation covering them complete (tickets complete in order, so
//! a ticket under the watermark is complete whoever waited for it).

use core::ops::Range;

use invalidation::{Clock, FlushMode, FlushQueue, Invalidator, SharedInvalidator};
use iommu_platform::sync::atomic::{AtomicBool, Ordering};
use iommu_platform::{AtomicPhysMem, Inline, Lock, PerCpu, Platform, Storage};
use iova_alloc::{
    CpuHandle, IovaCache, IovaLease, IovaRings, Magazine, Node, RingHandle, RingLease, Store,
};
use vtd_regs::{Iova, PAGE_SHIFT, PhysAddr};
use vtd_tables::{Perm, SharedSlTable};

use crate::capacity::{Capacity, Fixed};
use crate::counters::MapperCounters;
use crate::mapper::{Post, Teardown, each, invalidate_new, span};
use crate::policy::{Fate, MapperConfig, Reuse};
use crate::registry::{Mapping, Registry};
use crate::space::IovaSpace;
use crate::{Error, Result};

/// An IOVA allocator CPUs share, handing each a space of its own.
pub trait SharedSpace {
    /// What an allocation is held as (the same from every handle).
    type Lease;
    /// One CPU's space.
    type Handle<'a>: IovaSpace<Lease = Self::Lease>
    where
        Self: 'a;
    /// The space of CPU (or queue) `cpu`.
    fn handle(&self, cpu: usize) -> Self::Handle<'_>;
}

impl<S, D, B> SharedSpace for IovaCache<S, D, B>
where
    S: Store<Node>,
    D: Store<Magazine>,
    B: AsRef<[core::sync::atomic::AtomicU8]>,
{
    type Lease = IovaLease;
    type Handle<'a>
        = CpuHandle<'a, S, D, B>
    where
        Self: 'a;
    fn handle(&self, cpu: usize) -> CpuHandle<'_, S, D, B> {
        self.handle_on(cpu)
    }
}

/// Each handle allocates from its own ring (handle `i` from ring `i % R`):
/// per-ring contiguous IOVAs, so a handle's batched unmap is invalidated
/// as one range.
impl<const R: usize, const N: usize> SharedSpace for IovaRings<R, N> {
    type Lease = RingLease;
    type Handle<'a> = RingHandle<'a, R, N>;
    fn handle(&self, cpu: usize) -> RingHandle<'_, R, N> {
        IovaRings::handle(self, cpu)
    }
}

/// Where the teardowns of a handle wait for their invalidation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlushScope {
    /// Each handle has its own flush queue (Linux's per-CPU queues of 256
    /// entries / 10 ms): no lock shared by CPUs until a batch is posted.
    PerHandle,
    /// One queue for all handles (Linux's single queue of 32768 entries /
    /// 1000 ms): fewer, larger batches for a unit whose every flush is
    /// expensive (caching mode under a hypervisor: each is a VM exit), at
    /// the price of a lock every unmap takes.
    Single,
}

type Queue<P, L, K> = FlushQueue<Teardown<L>, <P as Platform>::Clock, <K as Capacity>::Pending>;

/// One handle's state, behind its own lock, on cache lines of its own.
type Locked<P, L, K> = PerCpu<Lock<Slot<P, L, K>>>;

/// One handle's state.
struct Slot<P: Platform, L, K: Capacity> {
    registry: Registry<L, K::Maps>,
    /// The handle's flush queue; `None` with [`FlushScope::Single`].
    flush: Option<Queue<P, L, K>>,
    /// Mappings kept forever so far (persistent policy).
    kept: usize,
    counters: MapperCounters,
}

/// A domain's mapping layer shared by CPUs: each CPU maps and unmaps
/// through its [`MapperHandle`] ([`handle`](Self::handle)). Generic over
/// the platform `P`, the shared IOVA allocator `C`, the invalidator `I`,
/// the capacities `K` of each handle (mappings and pending teardowns; with
/// [`FlushScope::Single`], `K`'s pending capacity is the single queue's)
/// and the storage `H` of the handles (`Inline<8>`: up to 8 CPUs without
/// a heap; `Boxed(n)` with `alloc`).
///
/// A mapping lives in the registry of the handle that made it: a buffer
/// mapped on two CPUs gets two IOVAs under shared and optimistic reuse.
/// Any handle may unmap it; its teardown then goes through the unmapping
/// handle's flush queue.
///
/// # Example
/// Two CPUs (threads here) map and unmap through handles of their own,
/// with no heap: a fixed-capacity IOVA cache and handle storage for two
/// CPUs. An OS makes each CPU's handle once and keeps it (per-CPU data,
/// or an array indexed by CPU: handles side by side share no cache
/// line); a handle dropped gives its cached IOVAs back.
/// ```
/// use core::time::Duration;
/// use invalidation::{FlushConfig, QueuedInvalidator};
/// use iommu_platform::{Inline, StdClock};
/// use iova_alloc::{FixedIovaCache, Window};
/// use teardown::{Fixed, FlushScope, MapperConfig, Reuse, SharedMapper};
/// use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
/// use vtd_regs::regs::QueueSize;
/// use vtd_regs::{DomainId, Iova, PhysAddr, RemappingUnit, SourceId};
/// use vtd_tables::{ContextManager, Perm, SharedSlTable, SlPageTable, TableConfig};
///
/// // A software VT-d over 8 MiB, device 00:01.0 in domain 1, remapping on.
/// let mem = HeapMemory::new(8 << 20);
/// let frames = SimFrameAllocator::new(&mem, PhysAddr::new(4 << 20), PhysAddr::new(8 << 20));
/// let emu = Emulator::new(&mem, EmuConfig::qemu()).unwrap();
/// let unit = RemappingUnit::new(&emu)?;
/// let table = SlPageTable::new(&mem, &frames, TableConfig::from_cap(unit.cap(), 39)?)?;
/// let mut contexts = ContextManager::new(&mem, &frames)?;
/// let _ = contexts.attach(SourceId::new(0, 1, 0).unwrap(), DomainId::new(1), &table)?;
/// let qs = QueueSize::from_order(0).unwrap();
/// let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), &mem, &frames, qs)
///     .map_err(|r| r.error)?;
///
/// // Single-use IOVAs, each CPU's unmaps flushed 256 at a time or after
/// // 10 ms (Linux's per-CPU flush queues).
/// let config = MapperConfig {
///     reuse: Reuse::SingleUse,
///     flush: FlushConfig::deferred(256, Duration::from_millis(10)),
///     domain: DomainId::new(1),
///     dma_limit: Iova::new(1 << 32),
/// };
/// let space = FixedIovaCache::<1024, 8, 4096>::new_fixed(Window::from_pages(1, (1 << 20) - 1)?);
/// let platform = (&mem, &frames, StdClock::new());
/// let scope = (config, FlushScope::PerHandle);
/// let mapper: SharedMapper<_, _, _, Fixed, Inline<2>> =
///     SharedMapper::new(platform, SharedSlTable::from(table), space, inv, scope, Fixed, Inline)?;
///
/// std::thread::scope(|s| {
///     for cpu in 0..2 {
///         let mapper = &mapper;
///         s.spawn(move || {
///             let mut handle = mapper.handle(cpu).expect("one handle per CPU");
///             let buffer = PhysAddr::new(0x10_0000 + 0x1000 * cpu as u64);
///             let iova = handle.map(buffer, 1500, Perm::WRITE).unwrap();
///             handle.unmap(iova, 1500).unwrap();
///             // What this CPU unmapped is unreachable once flushed.
///             handle.flush().unwrap();
///             assert_eq!(handle.pending(), 0);
///         });
///     }
/// });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedMapper<P, C, I, K = Fixed, H = Inline<8>>
where
    P: Platform,
    C: SharedSpace,
    K: Capacity,
    H: Storage,
{
    platform: P,
    table: SharedSlTable<P::Mem, P::Frames>,
    space: C,
    inv: SharedInvalidator<I>,
    slots: H::Array<Locked<P, C::Lease, K>>,
    claimed: H::Array<AtomicBool>,
    single: Option<Lock<Queue<P, C::Lease, K>>>,
    config: MapperConfig,
}

impl<P, C, I, K, H> SharedMapper<P, C, I, K, H>
where
    P: Platform,
    P::Mem: AtomicPhysMem,
    C: SharedSpace,
    I: Invalidator,
    K: Capacity,
    H: Storage,
{
    /// A mapper over `table` (attached to the domain's devices before or
    /// after), drawing IOVAs from `space`, invalidating through `inv`,
    /// with `handles.len()` handles of `capacity` each, their teardowns
    /// flushed per `scope`.
    ///
    /// # Errors
    /// As [`Mapper::with_capacity`](crate::Mapper::with_capacity).
    pub fn new(
        platform: P,
        table: SharedSlTable<P::Mem, P::Frames>,
        space: C,
        inv: I,
        (config, scope): (MapperConfig, FlushScope),
        capacity: K,
        handles: H,
    ) -> Result<Self> {
        config.validate::<P::Clock>(capacity.pending().len())?;
        let queue = || {
            FlushQueue::with_storage(config.flush, platform.clock(), capacity.pending())
                .map_err(Error::Invalidation)
        };
        let single = match scope {
            FlushScope::Single => Some(Lock::new(queue()?)),
            FlushScope::PerHandle => None,
        };
        let mut failed = None;
        let slots = handles.array(|| {
            let flush = match scope {
                FlushScope::PerHandle => queue().map_err(|e| failed = Some(e)).ok(),
                FlushScope::Single => None,
            };
            let registry = Registry::new(&capacity.maps());
            PerCpu(Lock::new(Slot {
                registry,
                flush,
                kept: 0,
                counters: MapperCounters::default(),
            }))
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let claimed = handles.array(|| AtomicBool::new(false));
        let inv = SharedInvalidator::new(inv);
        Ok(SharedMapper { platform, table, space, inv, slots, claimed, single, config })
    }

    /// The handle of CPU `cpu` (`0..handles`), or `None` if it is out of
    /// range or held already: one handle per CPU at a time.
    pub fn handle(&self, cpu: usize) -> Option<MapperHandle<'_, P, C, I, K, H>> {
        let claim = self.claimed.as_ref().get(cpu)?;
        claim.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok()?;
        Some(MapperHandle { shared: self, cpu, space: self.space.handle(cpu) })
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The settings.
    pub fn config(&self) -> &MapperConfig {
        &self.config
    }

    /// The domain's table.
    pub fn table(&self) -> &SharedSlTable<P::Mem, P::Frames> {
        &self.table
    }

    /// The invalidator every handle posts through.
    pub fn invalidator(&self) -> &SharedInvalidator<I> {
        &self.inv
    }

    /// What the handles have done, summed (takes each handle's lock).
    pub fn counters(&self) -> MapperCounters {
        let mut sum = MapperCounters::default();
        for slot in self.slots.as_ref() {
            sum.add(&slot.lock().counters);
        }
        sum
    }

    /// Gives up the mapper and returns the table, the IOVA allocator and
    /// the invalidator. Teardowns still awaiting an invalidation are
    /// dropped with what they hold (never released early): drain every
    /// handle with [`MapperHandle::flush`] first.
    pub fn into_parts(self) -> (SharedSlTable<P::Mem, P::Frames>, C, I) {
        (self.table, self.space, self.inv.into_inner())
    }
}

/// One CPU's use of a [`SharedMapper`]: map, unmap, poll. Holds the CPU's
/// IOVA magazines; its registry and flush queue live in the mapper (so a
/// teardown never outlives its queue), behind a lock only this handle
/// takes on its fast path.
pub struct MapperHandle<'a, P, C, I, K = Fixed, H = Inline<8>>
where
    P: Platform,
    C: SharedSpace,
    K: Capacity,
    H: Storage,
{
    shared: &'a SharedMapper<P, C, I, K, H>,
    cpu: usize,
    space: C::Handle<'a>,
}

impl<P, C, I, K, H> Drop for MapperHandle<'_, P, C, I, K, H>
where
    P: Platform,
    C: SharedSpace,
    K: Capacity,
    H: Storage,
{
    fn drop(&mut self) {
        if let Some(claim) = self.shared.claimed.as_ref().get(self.cpu) {
            claim.store(false, Ordering::Release);
        }
    }
}

impl<'a, P, C, I, K, H> MapperHandle<'a, P, C, I, K, H>
where
    P: Platform,
    P::Mem: AtomicPhysMem,
    C: SharedSpace,
    I: Invalidator,
    K: Capacity,
    H: Storage,
{
    /// The CPU this handle serves.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    fn slot(&self, cpu: usize) -> Result<&'a Lock<Slot<P, C::Lease, K>>> {
        let shared: &'a SharedMapper<P, C, I, K, H> = self.shared;
        shared.slots.as_ref().get(cpu).map(|s| &s.0).ok_or(Error::TooManyMappings)
    }

    /// Maps `[phys, phys + len)` with `perm` and returns the IOVA of
    /// `phys`, as [`Mapper::map`](crate::Mapper::map) does.
    pub fn map(&mut self, phys: PhysAddr, len: u64, perm: Perm) -> Result<Iova> {
        let (first, pages) = span(phys.as_u64(), len).ok_or(Error::Empty)?;
        let offset = phys.page_offset();
        let shared = self.shared;
        let reuse = shared.config.reuse;
        let mut slot = self.slot(self.cpu)?.lock();
        if reuse != Reuse::SingleUse
            && let Some(id) = slot.registry.find_buffer(first, pages, perm)
            && let Some(m) = slot.registry.get_mut(id)
        {
            m.refs += 1;
            let iova = m.iova.start();
            slot.registry.unstale(id);
            slot.counters.reuse_hits += 1;
            slot.counters.maps += 1;
            return Ok(Iova::new(iova.as_u64() + offset));
        }
        if slot.registry.is_full() && slot.registry.stale_len() > 0 {
            self.reclaim(&mut slot)?;
        }
        if slot.registry.is_full() {
            return Err(Error::TooManyMappings);
        }
        let lease = self.space.alloc(pages, shared.config.dma_limit).map_err(Error::Iova)?;
        let range = <C::Handle<'a> as IovaSpace>::range(&lease);
        let (start, bytes) = (range.start(), pages << PAGE_SHIFT);
        slot.counters.table_updates += 1;
        if let Err(p) =
            shared.table.map_range(start, PhysAddr::new(first << PAGE_SHIFT), bytes, perm)
        {
            match p.mapped {
                0 => self.give_back(&mut slot, Some(lease)),
                mapped => self.queue_teardown(
                    &mut slot,
                    start..start.checked_add(mapped).unwrap_or(start),
                    Some(lease),
                    Post::Now,
                )?,
            }
            return Err(Error::Table(p.error));
        }
        let reusable = reuse != Reuse::SingleUse;
        let keep = match reuse {
            Reuse::Persistent { quota } => quota.is_none_or(|q| slot.kept < q),
            _ => false,
        };
        let mapping = Mapping::new(range, first, pages, perm, keep, !reusable);
        if let Err(lease) = slot.registry.insert(mapping, Some(lease), reusable) {
            let end = Iova::new(start.as_u64() + bytes);
            self.queue_teardown(&mut slot, start..end, lease, Post::Now)?;
            return Err(Error::TooManyMappings);
        }
        slot.kept += usize::from(keep);
        slot.counters.maps += 1;
        if shared.inv.caps().caching_mode {
            slot.counters.map_invalidations += 1;
            drop(slot);
            invalidate_new(&mut &shared.inv, shared.config.domain, start, bytes)?;
        }
        Ok(Iova::new(start.as_u64() + offset))
    }

    /// Unmaps the buffer `map` returned `iova` for (on any handle); `len`
    /// as given to `map`. What happens to the mapping is the reuse
    /// policy's choice; its resources come back only after the
    /// invalidation that covers it, through this handle's flush queue.
    pub fn unmap(&mut self, iova: Iova, len: u64) -> Result<()> {
        self.unmap_one(iova, len, Post::Now)
    }

    /// Unmaps many buffers (on any handle) with one invalidation, as
    /// [`Mapper::unmap_batch`](crate::Mapper::unmap_batch): their teardowns
    /// are queued on this handle's flush queue, then posted together (a
    /// ring's touching ranges merged) and, strict, waited for once.
    pub fn unmap_batch(&mut self, buffers: &[(Iova, u64)]) -> Result<()> {
        let failed = each(buffers, |iova, len| self.unmap_one(iova, len, Post::Batched));
        let polled = self.poll();
        failed.map_or(polled, Err)
    }

    /// The unmap of one buffer, its teardown posted per the flush policy
    /// or queued for a batch (`post`).
    fn unmap_one(&mut self, iova: Iova, len: u64, post: Post) -> Result<()> {
        let (page, pages) = span(iova.as_u64(), len).ok_or(Error::Empty)?;
        let own = self.cpu;
        let handles = self.shared.slots.as_ref().len();
        // This handle's registry first (the common case), then the others:
        // one lock held at a time.
        for cpu in core::iter::once(own).chain((0..handles).filter(|&c| c != own)) {
            let mut slot = self.slot(cpu)?.lock();
            let Some(id) = slot.registry.find_iova(page) else { continue };
            let Some(m) = slot.registry.get_mut(id) else { continue };
            let (refs, keep, single) = (m.unref(pages, iova, len)?, m.keep, m.single);
            slot.counters.unmaps += 1;
            if refs > 0 {
                return Ok(());
            }
            match self.shared.config.reuse.on_last_unmap(keep, single) {
                Fate::Keep => return Ok(()),
                Fate::Stale { quota } => {
                    let now = self.clock().now();
                    slot.registry.make_stale(id, now);
                    // Only the owner reclaims its stale mappings (its flush
                    // queue is at hand): a cross-CPU unmap leaves them to
                    // the owner's next call or poll.
                    if cpu == own && slot.registry.stale_len() >= quota {
                        self.reclaim(&mut slot)?;
                    }
                    return Ok(());
                }
                Fate::TearDown => {
                    let (m, lease) = slot.registry.remove(id).ok_or(Error::NotMapped { iova })?;
                    if cpu != own {
                        drop(slot);
                        slot = self.slot(own)?.lock();
                    }
                    let start = m.iova.start();
                    let end = Iova::new(start.as_u64() + (m.pages << PAGE_SHIFT));
                    return self.queue_teardown(&mut slot, start..end, lease, post);
                }
            }
        }
        Err(Error::NotMapped { iova })
    }

    /// Reaps completed invalidations, posts due batches and reclaims this
    /// handle's stale mappings past the time limit. An OS calls it from a
    /// timer on each CPU too, to bound the stale window in time.
    pub fn poll(&mut self) -> Result<()> {
        let mut slot = self.slot(self.cpu)?.lock();
        if let Reuse::Optimistic { time_limit, .. } = self.shared.config.reuse
            && let Some((_, since)) = slot.registry.oldest_stale()
            && self.clock().now().saturating_since(since) >= time_limit
        {
            return self.reclaim(&mut slot);
        }
        self.with_queue(&mut slot, |q, inv, release| q.poll(inv, release))
    }

    /// Tears down this handle's stale mappings and completes every pending
    /// invalidation of its queue (with [`FlushScope::Single`], of the
    /// single queue): afterwards what this handle unmapped is unreachable
    /// and its resources are back.
    pub fn flush(&mut self) -> Result<()> {
        let mut slot = self.slot(self.cpu)?.lock();
        self.tear_down_stale(&mut slot)?;
        self.with_queue(&mut slot, |q, inv, release| q.flush(inv, release))
    }

    /// Teardowns of this handle's queue (or the single queue) whose
    /// invalidation has not completed yet.
    pub fn pending(&self) -> usize {
        match &self.shared.single {
            Some(q) => q.lock().pending(),
            None => self
                .slot(self.cpu)
                .map_or(0, |s| s.lock().flush.as_ref().map_or(0, FlushQueue::pending)),
        }
    }

    /// This handle's stale mappings (optimistic reuse).
    pub fn stale(&self) -> usize {
        self.slot(self.cpu).map_or(0, |s| s.lock().registry.stale_len())
    }

    fn clock(&self) -> P::Clock {
        self.shared.platform.clock()
    }

    /// Tears down every stale mapping of `slot` and flushes per the policy.
    fn reclaim(&mut self, slot: &mut Slot<P, C::Lease, K>) -> Result<()> {
        self.tear_down_stale(slot)?;
        slot.counters.reclaims += 1;
        match self.shared.config.flush.mode {
            FlushMode::Strict => Ok(()),
            FlushMode::Deferred => self.with_queue(slot, |q, inv, release| q.flush(inv, release)),
            FlushMode::Async => self.with_queue(slot, |q, inv, _| q.post(inv)),
        }
    }

    fn tear_down_stale(&mut self, slot: &mut Slot<P, C::Lease, K>) -> Result<()> {
        while let Some((id, _)) = slot.registry.oldest_stale() {
            let (m, lease) = slot.registry.remove(id).ok_or(Error::TooManyMappings)?;
            let start = m.iova.start();
            let end = Iova::new(start.as_u64() + (m.pages << PAGE_SHIFT));
            self.queue_teardown(slot, start..end, lease, Post::Now)?;
        }
        Ok(())
    }

    /// Removes `range` from the table and hands its invalidation, with the
    /// lease, to the flush queue (posted per the policy or queued for a
    /// batch: `post`).
    fn queue_teardown(
        &mut self,
        slot: &mut Slot<P, C::Lease, K>,
        range: Range<Iova>,
        lease: Option<C::Lease>,
        post: Post,
    ) -> Result<()> {
        slot.counters.table_updates += 1;
        slot.counters.teardowns += 1;
        let bytes = range.end.as_u64() - range.start.as_u64();
        let token = match self.shared.table.unmap_range(range.start, bytes) {
            Ok(token) => token,
            Err(partial) => {
                slot.counters.release_errors += 1;
                partial.done
            }
        };
        let leaf_only = token.leaf_only();
        let payload = Teardown { lease, token, pinned: (0, 0) };
        let domain = self.shared.config.domain;
        self.with_queue(slot, |q, inv, release| match post {
            Post::Now => q.unmapped(inv, domain, range, leaf_only, payload, release),
            Post::Batched => q.queue(inv, domain, range, leaf_only, payload, release),
        })
    }

    /// Runs `f` on the flush queue this handle's teardowns go to, with the
    /// shared invalidator and the release that gives a completed
    /// teardown's frames to the table and its lease to this handle's space.
    fn with_queue(
        &mut self,
        slot: &mut Slot<P, C::Lease, K>,
        f: impl FnOnce(
            &mut Queue<P, C::Lease, K>,
            &mut &'a SharedInvalidator<I>,
            &mut dyn FnMut(Teardown<C::Lease>),
        ) -> invalidation::Result<()>,
    ) -> Result<()> {
        let shared: &'a SharedMapper<P, C, I, K, H> = self.shared;
        let mut inv = &shared.inv;
        let (table, space) = (&shared.table, &mut self.space);
        let mut errors = 0;
        let mut release = |t: Teardown<C::Lease>| {
            errors += u64::from(table.release(t.token).is_err());
            if let Some(lease) = t.lease {
                errors += u64::from(space.free(lease).is_err());
            }
        };
        let result = match (&shared.single, slot.flush.as_mut()) {
            (Some(single), _) => f(&mut single.lock(), &mut inv, &mut release),
            (None, Some(q)) => f(q, &mut inv, &mut release),
            (None, None) => Ok(()),
        };
        slot.counters.release_errors += errors;
        result.map_err(Error::Invalidation)
    }

    /// Gives a lease back at once (nothing was mapped with it).
    fn give_back(&mut self, slot: &mut Slot<P, C::Lease, K>, lease: Option<C::Lease>) {
        if let Some(lease) = lease
            && self.space.free(lease).is_err()
        {
            slot.counters.release_errors += 1;
        }
    }
}
