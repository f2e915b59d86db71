//! Loom models of the mapping layer shared by CPUs ([`SharedMapper`],
//! `RUSTFLAGS="--cfg loom" cargo test -p teardown --test loom --release`,
//! 15-25 s on 2 cores):
//! two CPUs map and unmap through their handles, one of them unmapping a
//! mapping the other's handle made (torn down through its own queue, by
//! whichever CPU drops the last reference under shared reuse, or left
//! stale for the owner under optimistic reuse), with per-handle
//! deferred and asynchronous flush queues, with the single shared queue
//! (caching mode too, where each map waits for an invalidation of its
//! own; and strict, with a batched unmap posted as one invalidation), and
//! with both CPUs installing the same last-level table at once.
//! In every interleaving with up to 4 preemptions:
//! - an IOVA lease is given back to the space, and a table frame the unmap
//!   detached to the frame allocator, only once an IOTLB invalidation
//!   posted after its entries were cleared, and covering them (not
//!   leaf-only for a frame: the paging-structure caches too, VT-d
//!   §6.5.2.3), has completed, whichever CPU posted, waited for or reaped
//!   it;
//! - nothing is released twice, and once every handle has flushed, every
//!   lease and every frame not linked in the table is back.
//!
//! The checks are made by the model's memory, frame allocator, IOVA space
//! and unit, which record what the mapper does to them: the memory which
//! entries are cleared (and so which tables are detached) after how many
//! posted batches, the unit which batches were posted and which have
//! completed. The unit completes nothing on its own (the slowest unit, the
//! hardest for the rule): waiting for a ticket completes every batch up to
//! it, each batch's status stored `Relaxed` and then the word the CPUs ask
//! with `Release` (the unit's status write, §6.5.2.8). The release checks
//! read the batches' status with `Relaxed`, so a CPU that learns of a
//! completion without synchronising with it reads a stale status and fails
//! the model.
//!
//! The memory, the frame allocator, the space and the unit's record are
//! one loom lock (each access a point where loom may switch CPUs); the
//! mapper's own locks and atomics are loom's under `--cfg loom`
//! (`iommu_platform::sync`). Caught, each by at least one model: the
//! shared invalidator reading its watermark `Relaxed` instead of
//! `Acquire`, or recording a ticket before waiting for it (a CPU releases
//! through a watermark it does not synchronise with); a flush queue
//! releasing without asking whether its batch completed; a cross-CPU unmap
//! queuing its teardown in the owner's queue, which may have flushed
//! already (a lease and a frame left pending); a flush tearing down the
//! stale mappings after flushing instead of before; a teardown that
//! detached a table invalidated with the leaf-only hint.
#![cfg(loom)]

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use invalidation::{
    FlushConfig, FlushMode, Invalidation, InvalidationCaps, Invalidator, RegisterInvalidator,
    Ticket,
};
use iommu_platform::{Clock, Inline, Instant};
use iova_alloc::{AllocError, IovaRange};
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::sync::{Arc, Mutex, MutexGuard};
use loom::thread;
use teardown::{
    Fixed, FlushScope, IovaSpace, MapperConfig, MapperHandle, Reuse, SharedMapper, SharedSpace,
};
use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
use vtd_regs::{
    AtomicPhysMem, DomainId, Drain, FrameAllocator, IotlbScope, Iova, MemError, Mmio, PAGE_SIZE,
    PhysAddr, PhysMem, RemappingUnit,
};
use vtd_tables::{Perm, SharedSlTable, TableConfig};

/// Frames of the model's memory: the root, one level-2 table, a last-level
/// table for each region used, and one for a CPU that loses an install
/// race.
const FRAMES: u64 = 6;
/// Words of a frame (64-bit table entries).
const WORDS: u64 = PAGE_SIZE / 8;
/// Bytes of a region: the span of one last-level table.
const REGION: u64 = 2 << 20;
/// Pages of a region.
const REGION_PAGES: u64 = REGION / PAGE_SIZE;
/// The leases the space hands out, (first page, pages), all under the same
/// level-2 table: a whole region for the 2 MiB buffer (its unmap covers its
/// last-level table whole and detaches it) and two pages of another region
/// (both CPUs install its last-level table at once).
const LEASES: [(u64, u64); 3] =
    [(REGION_PAGES, 1), (REGION_PAGES + 1, 1), (3 * REGION_PAGES, REGION_PAGES)];
/// Bits of a table entry holding the address it points to.
const ADDR: u64 = 0x000f_ffff_ffff_f000;
const DOMAIN: DomainId = DomainId::new(1);
/// Physical buffers, above the frames.
const BUF: [u64; 3] = [0x4000_0000, 0x8000_0000, 0xc000_0000];

/// What the mapper did to the model's memory, frames, space and unit.
struct World {
    /// The frames, `WORDS` words each, from physical 0.
    words: Vec<u64>,
    free_frames: Vec<u64>,
    /// Frame -> (level, first IOVA) of every table linked in the table.
    tables: HashMap<u64, (u8, u64)>,
    /// IOVA page -> batches posted when its leaf was last cleared.
    cleared: HashMap<u64, usize>,
    /// Frame -> (region, batches posted) of a table the unmap detached.
    detached: HashMap<u64, (u64, usize)>,
    /// Every batch posted: batch `i` has ticket `i + 1`.
    batches: Vec<Vec<Invalidation>>,
    /// The leases not handed out.
    free_leases: Vec<(u64, u64)>,
    /// Leases and frames released (each checked).
    released: (usize, usize),
}

/// The model's world and the unit's completion status.
struct Model {
    world: Mutex<World>,
    /// Tickets completed (in order, §6.5.2.8: a wait descriptor completes
    /// after everything before it): what the CPUs ask the unit.
    done: AtomicU32,
    /// Whether batch `i` completed: stored before `done`, read only by
    /// the release checks, so a CPU that learns of a completion without
    /// synchronising with it may read a stale `false` (loom never returns
    /// again a value a thread read before it yielded, so `done`, which the
    /// CPUs read, would not do).
    complete: [AtomicBool; MAX_BATCHES],
}

/// The most batches a model posts.
const MAX_BATCHES: usize = 8;

impl Model {
    fn new() -> Self {
        let world = World {
            words: vec![0; (FRAMES * WORDS) as usize],
            free_frames: (0..FRAMES).rev().collect(),
            tables: HashMap::new(),
            cleared: HashMap::new(),
            detached: HashMap::new(),
            batches: Vec::new(),
            free_leases: LEASES.to_vec(),
            released: (0, 0),
        };
        let complete = std::array::from_fn(|_| AtomicBool::new(false));
        Self { world: Mutex::new(world), done: AtomicU32::new(0), complete }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Which batches this CPU can tell completed without synchronising.
    fn completed(&self) -> [bool; MAX_BATCHES] {
        std::array::from_fn(|i| self.complete[i].load(Ordering::Relaxed))
    }
}

impl World {
    /// Whether every page of `pages` is covered by an IOTLB invalidation
    /// of a batch posted after the first `since(page)` and `done`; not
    /// leaf-only when `structure` (a freed table).
    fn covered(
        &self,
        done: [bool; MAX_BATCHES],
        since: impl Fn(u64) -> usize,
        pages: Range<u64>,
        structure: bool,
    ) -> bool {
        pages.into_iter().all(|page| {
            let batches = self.batches.iter().zip(done).skip(since(page));
            let mut requests = batches.filter(|(_, d)| *d).flat_map(|(b, _)| b);
            requests.any(|req| match req {
                Invalidation::Iotlb { scope, .. } => {
                    let leaf_only = matches!(scope, IotlbScope::Pages { leaf_only: true, .. });
                    scope.covers(DOMAIN, Iova::new(page * PAGE_SIZE)) && !(structure && leaf_only)
                }
                _ => false,
            })
        })
    }

    /// The words of `[addr, addr + 8 * len)`.
    fn span(addr: PhysAddr, len: usize) -> Result<Range<usize>, MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        let start = (addr.as_u64() / 8) as usize;
        match start.checked_add(len) {
            Some(end) if end as u64 <= FRAMES * WORDS => Ok(start..end),
            _ => Err(MemError::OutOfRange { addr, len: 8 * len }),
        }
    }

    /// Writes word `i`, recording a cleared entry of a linked table: the
    /// page of a leaf, the table a non-leaf pointed to.
    fn store(&mut self, i: usize, new: u64) {
        let old = std::mem::replace(&mut self.words[i], new);
        let cleared = old & 3 != 0 && new == 0; // R or W: present (§9.8)
        let (frame, slot) = (i as u64 / WORDS, i as u64 % WORDS);
        let Some(&(level, base)) = self.tables.get(&frame).filter(|_| cleared) else { return };
        let (iova, since) = (entry_iova(level, base, slot), self.batches.len());
        if level == 1 {
            self.cleared.insert(iova / PAGE_SIZE, since);
        } else {
            assert_eq!(level, 2, "the model never unmaps a 1 GiB span");
            let table = (old & ADDR) / PAGE_SIZE;
            self.tables.remove(&table);
            self.detached.insert(table, (iova / REGION, since));
        }
    }
}

/// The first IOVA entry `slot` of a table at `level` from `base` maps.
fn entry_iova(level: u8, base: u64, slot: u64) -> u64 {
    base + (slot << (12 + 9 * u32::from(level - 1)))
}

/// The memory tables live in (a handle to the model).
#[derive(Clone)]
struct Mem(Arc<Model>);

impl PhysMem for Mem {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        let mut word = [0];
        self.read_u64s(addr, &mut word)?;
        Ok(word[0])
    }
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.write_u64s(addr, &[value])
    }
    fn read_u64s(&self, addr: PhysAddr, out: &mut [u64]) -> Result<(), MemError> {
        let w = self.0.world();
        out.copy_from_slice(&w.words[World::span(addr, out.len())?]);
        Ok(())
    }
    fn write_u64s(&self, addr: PhysAddr, values: &[u64]) -> Result<(), MemError> {
        let mut w = self.0.world();
        for (i, &v) in World::span(addr, values.len())?.zip(values) {
            w.store(i, v);
        }
        Ok(())
    }
    /// Table code reads and writes whole entries only.
    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        Err(MemError::OutOfRange { addr, len: buf.len() })
    }
    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        Err(MemError::OutOfRange { addr, len: data.len() })
    }
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        let mut w = self.0.world();
        w.words[World::span(frame, WORDS as usize)?].fill(0);
        Ok(())
    }
    /// Installs record the table linked (its level and IOVA).
    fn compare_exchange_u64(
        &self,
        addr: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        let mut w = self.0.world();
        let i = World::span(addr, 1)?.start;
        let found = w.words[i];
        if found != current {
            return Ok(Err(found));
        }
        w.words[i] = new;
        let (frame, slot) = (i as u64 / WORDS, i as u64 % WORDS);
        let (level, base) = w.tables[&frame];
        let child = (new & ADDR) / PAGE_SIZE;
        assert!(level > 1 && child < FRAMES, "only tables are installed");
        w.tables.insert(child, (level - 1, entry_iova(level, base, slot)));
        Ok(Ok(found))
    }
}

impl AtomicPhysMem for Mem {}

/// The frame allocator: checks, when a frame comes back, that the table
/// was never linked or that an invalidation covering it completed after
/// it was detached.
#[derive(Clone)]
struct Frames(Arc<Model>);

// SAFETY: a frame is handed out at most once until it is given back.
unsafe impl FrameAllocator for Frames {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        assert_eq!(order, 0);
        self.0.world().free_frames.pop().map(|f| PhysAddr::new(f * PAGE_SIZE))
    }
    fn deallocate(&self, addr: PhysAddr, order: u8) {
        assert_eq!(order, 0);
        let done = self.0.completed();
        let mut w = self.0.world();
        let frame = addr.as_u64() / PAGE_SIZE;
        assert!(!w.free_frames.contains(&frame), "frame {frame} freed twice");
        assert!(!w.tables.contains_key(&frame), "frame {frame} freed while linked");
        if let Some((region, since)) = w.detached.remove(&frame) {
            let pages = region * REGION_PAGES..(region + 1) * REGION_PAGES;
            assert!(
                w.covered(done, |_| since, pages, true),
                "table frame {frame} of region {region} freed before an invalidation \
                 covering it completed (batches complete: {done:?}, {since} posted \
                 before it was detached)",
            );
            w.released.1 += 1;
        }
        w.free_frames.push(frame);
    }
}

/// An IOVA allocator shared by the CPUs, handing out [`LEASES`].
struct Space(Arc<Model>);

/// A lease of the model's space.
#[derive(Debug)]
struct Lease(IovaRange);

impl SharedSpace for Space {
    type Lease = Lease;
    type Handle<'a> = &'a Space;
    fn handle(&self, _cpu: usize) -> &Space {
        self
    }
}

impl IovaSpace for &Space {
    type Lease = Lease;
    fn alloc(&mut self, pages: u64, _limit: Iova) -> Result<Lease, AllocError> {
        let mut w = self.0.world();
        let fits = w.free_leases.iter().position(|&(_, n)| n == pages);
        let (start, n) = w.free_leases.swap_remove(fits.ok_or(AllocError::Exhausted)?);
        IovaRange::from_pages(start, n).map(Lease)
    }
    fn range(lease: &Lease) -> IovaRange {
        lease.0
    }
    /// Checks that an invalidation covering each page of the lease
    /// completed after the page was cleared.
    fn free(&mut self, lease: Lease) -> Result<(), AllocError> {
        let done = self.0.completed();
        let mut w = self.0.world();
        let (range, start) = (lease.0, lease.0.start_page());
        assert!(!w.free_leases.iter().any(|l| l.0 == start), "lease {range:?} freed twice");
        let since = |page| *w.cleared.get(&page).expect("a freed lease was unmapped");
        assert!(
            w.covered(done, since, start..range.last_page() + 1, false),
            "lease {range:?} freed before an invalidation covering it completed \
             (batches complete: {done:?}, {} posted before it was cleared)",
            since(start),
        );
        w.free_leases.push((start, range.pages()));
        w.released.0 += 1;
        Ok(())
    }
}

/// A register page that reads 0: enough for a `RegisterInvalidator` that
/// posts only empty batches, which numbers the unit's tickets (only the
/// invalidation crate makes tickets).
struct NoRegs;

impl Mmio for NoRegs {
    fn read32(&self, _offset: usize) -> u32 {
        0
    }
    fn write32(&mut self, offset: usize, _value: u32) {
        unreachable!("an empty batch writes no register ({offset:#x})");
    }
}

/// The unit: records each batch posted; completes tickets only when a CPU
/// waits for one (then every ticket up to it, in order).
struct Unit {
    model: Arc<Model>,
    /// CAP.CM: the mapper invalidates what it maps, through the same
    /// queue (completing earlier teardown batches on the way).
    caching_mode: bool,
    tickets: RegisterInvalidator<NoRegs>,
}

impl Invalidator for Unit {
    fn caps(&self) -> InvalidationCaps {
        InvalidationCaps {
            page_selective: true,
            max_mask_order: 9,
            drain: Drain::empty(),
            caching_mode: self.caching_mode,
        }
    }

    fn post<B>(&mut self, batch: B) -> invalidation::Result<Ticket>
    where
        B: IntoIterator<Item = Invalidation>,
    {
        let posted = {
            let mut w = self.model.world();
            w.batches.push(batch.into_iter().collect());
            assert!(w.batches.len() <= MAX_BATCHES);
            w.batches.len()
        };
        let ticket = self.tickets.post(core::iter::empty())?;
        assert_eq!(ticket.sequence() as usize, posted);
        Ok(ticket)
    }

    fn is_complete(&mut self, ticket: Ticket) -> invalidation::Result<bool> {
        Ok(self.model.done.load(Ordering::Acquire) >= ticket.sequence())
    }

    /// Completes every ticket up to `ticket`: their status, then the
    /// word the CPUs read (with `Release`, as the unit's status write).
    fn wait(&mut self, ticket: Ticket) -> invalidation::Result<()> {
        let (from, to) = (self.model.done.load(Ordering::Relaxed), ticket.sequence());
        for seq in from + 1..=to {
            self.model.complete[seq as usize - 1].store(true, Ordering::Relaxed);
        }
        self.model.done.fetch_max(to, Ordering::Release);
        Ok(())
    }
}

/// A clock at which time stands still (no deadline or time limit ever
/// passes: batches are posted when full or flushed, stale mappings
/// reclaimed at their quota or on flush) and which lets the other CPU run
/// whenever it is read: the flush queue reads it around each wait, so a
/// CPU may pause between posting its batch and waiting for it without
/// loom spending a preemption there.
#[derive(Clone)]
struct YieldingClock;

impl Clock for YieldingClock {
    fn now(&self) -> Instant {
        thread::yield_now();
        Instant(0)
    }
}

type Platform = (Mem, Frames, YieldingClock);
type Shared = SharedMapper<Platform, Space, Unit, Fixed<4, 4>, Inline<2>>;
type Handle<'a> = MapperHandle<'a, Platform, Space, Unit, Fixed<4, 4>, Inline<2>>;

/// What a model runs.
#[derive(Clone, Copy)]
struct Case {
    reuse: Reuse,
    flush: FlushConfig,
    scope: FlushScope,
    caching_mode: bool,
    /// CPU 1 maps (and unmaps) a page of its own too, while CPU 0 maps its
    /// page: both install a last-level table under the same entry at once.
    cpu1_maps: bool,
    /// CPU 1 unmaps its buffers with one `unmap_batch` (one invalidation).
    batched: bool,
}

impl Case {
    /// Single-use reuse, batches of `batch` unmaps (no deadline), caching
    /// mode off.
    fn single_use(mode: FlushMode, batch: usize, scope: FlushScope) -> Self {
        let flush = FlushConfig { mode, batch, deadline: None, max_page_selective: 16 };
        Case {
            reuse: Reuse::SingleUse,
            flush,
            scope,
            caching_mode: false,
            cpu1_maps: false,
            batched: false,
        }
    }
}

/// A mapper of two handles over a fresh model.
fn mapper(model: &Arc<Model>, case: Case) -> Shared {
    let cfg = TableConfig::new(Sagaw::BITS39_L3, SecondLevelPageSizes::empty(), 39).unwrap();
    let (mem, frames) = (Mem(model.clone()), Frames(model.clone()));
    let table = SharedSlTable::new(mem.clone(), frames.clone(), cfg).unwrap();
    model.world().tables.insert(table.root().as_u64() / PAGE_SIZE, (3, 0));
    let regs = RemappingUnit::new(NoRegs).unwrap();
    let tickets = RegisterInvalidator::new(regs);
    let unit = Unit { model: model.clone(), caching_mode: case.caching_mode, tickets };
    let (reuse, flush) = (case.reuse, case.flush);
    let config = MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) };
    let platform = (mem, frames, YieldingClock);
    let space = Space(model.clone());
    let settings = (config, case.scope);
    SharedMapper::new(platform, table, space, unit, settings, Fixed::<4, 4>, Inline::<2>).unwrap()
}

/// CPU 0 maps a 2 MiB buffer (twice under shared reuse); then CPU 1 unmaps
/// it (from CPU 0's registry; torn down through CPU 1's queue, detaching
/// its last-level table, or left stale for CPU 0 under optimistic reuse)
/// and flushes, while CPU 0 maps, unmaps and flushes a page of its own
/// (and CPU 1 too if `cpu1_maps`; and CPU 0 unmaps the buffer's second
/// reference under shared reuse). Afterwards everything is back.
fn cross_cpu_unmap(case: Case) {
    let scope = case.scope;
    let mut model = loom::model::Builder::new();
    // Every interleaving with up to 4 preemptions (LOOM_MAX_PREEMPTIONS
    // raises it): 15-25 s in release for the eight models on 2 cores.
    model.preemption_bound = model.preemption_bound.or(Some(4));
    model.check(move || {
        let m = Arc::new(Model::new());
        let mapper = Arc::new(mapper(&m, case));
        let x = {
            let mut h = mapper.handle(0).unwrap();
            let x = h.map(PhysAddr::new(BUF[0]), REGION, Perm::WRITE).unwrap();
            if case.reuse == Reuse::Shared {
                // A second user of the buffer: the same IOVA, two references.
                assert_eq!(h.map(PhysAddr::new(BUF[0]), REGION, Perm::WRITE).unwrap(), x);
            }
            x
        };
        let cpu1 = {
            let mapper = mapper.clone();
            thread::spawn(move || {
                let mut h = mapper.handle(1).unwrap();
                let z = case
                    .cpu1_maps
                    .then(|| h.map(PhysAddr::new(BUF[2]), PAGE_SIZE, Perm::WRITE).unwrap());
                let buffers: Vec<_> =
                    [(x, REGION)].into_iter().chain(z.map(|z| (z, PAGE_SIZE))).collect();
                if case.batched {
                    h.unmap_batch(&buffers).unwrap();
                } else {
                    for (iova, len) in buffers {
                        h.unmap(iova, len).unwrap();
                    }
                }
                flushed(&mut h, scope);
            })
        };
        let mut h = mapper.handle(0).unwrap();
        let y = h.map(PhysAddr::new(BUF[1]), PAGE_SIZE, Perm::WRITE).unwrap();
        h.unmap(y, PAGE_SIZE).unwrap();
        if case.reuse == Reuse::Shared {
            // CPU 0's reference: whichever CPU unmaps last tears it down.
            h.unmap(x, REGION).unwrap();
        }
        flushed(&mut h, scope);
        cpu1.join().unwrap();
        if let Reuse::Optimistic { .. } = case.reuse {
            // The cross-CPU unmap left the mapping stale in CPU 0's
            // registry, for CPU 0's next call.
            h.flush().unwrap();
        }
        drop(h);
        everything_back(&m, &mapper, 2 + usize::from(case.cpu1_maps));
    });
}

/// Flushes `h`: with its own queue, nothing it queued is pending after.
fn flushed(h: &mut Handle<'_>, scope: FlushScope) {
    h.flush().unwrap();
    if scope == FlushScope::PerHandle {
        assert_eq!(h.pending(), 0, "CPU {} has teardowns pending after its flush", h.cpu());
    }
}

/// Once every handle flushed: nothing pending, no release error, every
/// lease back (`leases` of them released), every frame free or linked, and
/// the detached frame freed.
fn everything_back(m: &Model, mapper: &Shared, leases: usize) {
    for cpu in 0..2 {
        let pending = mapper.handle(cpu).unwrap().pending();
        assert_eq!(pending, 0, "CPU {cpu}'s queue holds teardowns after every flush");
    }
    assert_eq!(mapper.counters().release_errors, 0);
    let w = m.world();
    let mut free = w.free_leases.clone();
    free.sort_unstable();
    assert_eq!(free, LEASES, "a lease leaked");
    assert_eq!(w.free_frames.len() + w.tables.len(), FRAMES as usize, "a frame leaked");
    assert!(w.detached.is_empty(), "a detached frame was not freed");
    assert_eq!(w.released, (leases, 1));
}

#[test]
fn per_handle_queues_release_a_cross_cpu_unmap_after_its_invalidation() {
    cross_cpu_unmap(Case::single_use(FlushMode::Deferred, 2, FlushScope::PerHandle));
}

#[test]
fn per_handle_asynchronous_queues_release_after_either_cpus_wait() {
    cross_cpu_unmap(Case::single_use(FlushMode::Async, 1, FlushScope::PerHandle));
}

#[test]
fn the_single_queue_releases_either_cpus_teardowns_after_their_invalidation() {
    cross_cpu_unmap(Case::single_use(FlushMode::Async, 1, FlushScope::Single));
}

/// The single queue's use: a unit in caching mode, where each map also
/// posts and waits (completing the other CPU's teardown batches).
#[test]
fn in_caching_mode_a_map_may_complete_the_other_cpus_teardowns() {
    let case = Case::single_use(FlushMode::Async, 1, FlushScope::Single);
    cross_cpu_unmap(Case { caching_mode: true, ..case });
}

#[test]
fn both_cpus_map_at_once_and_release_after_their_invalidations() {
    let case = Case::single_use(FlushMode::Async, 1, FlushScope::PerHandle);
    cross_cpu_unmap(Case { cpu1_maps: true, ..case });
}

#[test]
fn a_shared_mapping_is_torn_down_by_whichever_cpu_unmaps_last() {
    let case = Case::single_use(FlushMode::Deferred, 2, FlushScope::PerHandle);
    cross_cpu_unmap(Case { reuse: Reuse::Shared, ..case });
}

/// F&S-style strict protection: CPU 1's two unmaps (one of CPU 0's
/// mapping) queued on the single queue and posted as one batch, while CPU
/// 0's strict unmap may post and wait for them first.
#[test]
fn a_batched_strict_unmap_on_the_single_queue_releases_after_its_invalidation() {
    let case = Case::single_use(FlushMode::Strict, 1, FlushScope::Single);
    cross_cpu_unmap(Case { cpu1_maps: true, batched: true, ..case });
}

#[test]
fn a_stale_mapping_unmapped_across_cpus_is_released_by_its_owner_after_its_invalidation() {
    let case = Case::single_use(FlushMode::Deferred, 2, FlushScope::PerHandle);
    let reuse = Reuse::Optimistic { quota: 2, time_limit: Duration::from_millis(1) };
    cross_cpu_unmap(Case { reuse, ..case });
}
