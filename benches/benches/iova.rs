//! IOVA allocation, one 4 KiB page at a time, in steady state: `live`
//! one-page allocations, then alloc one + free one at random.
//!
//! Groups:
//! - `iova_alloc_free_4k` (10,000 live): `viommu` (magazine cache in front
//!   of the tree, through one per-CPU handle), `viommu_tree` (the tree
//!   alone), `vm_allocator` (rust-vmm `vm-allocator`'s `AddressAllocator`)
//!   and `range_alloc` (the `range-alloc` crate).
//! - `iova_scaling`: `viommu` at 1 Ki, 64 Ki and 1 Mi live allocations.
//!
//! Every function runs the same loop: the same random sequence, the live
//! set kept as a `Vec` of what each allocator frees with (a lease for
//! `viommu` and `viommu_tree`, a `u32` page number for the others, which
//! rebuild their range from it), one alloc replacing a random element and
//! one free of what it replaced. In this steady state every allocator sees
//! at most one hole below its live block, so `range_alloc`'s free list stays
//! two entries long: it is O(1) here too.
//!
//! The scaling group's loop also prefetches the element it will replace
//! [`PREFETCH_AHEAD`] iterations later, at every size: a million 12-byte
//! leases (12 MiB) outgrow the share of the last-level cache a loop gets
//! on a shared machine, and without the prefetch the 1 Mi point measures
//! DRAM latency, the same for any allocator whose handle is that size, not
//! the allocator.

use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use iova_alloc::{IovaLease, IovaTree, VecIovaCache, Window};
use vtd_regs::{Iova, PAGE_SIZE};

/// First page of the window (page 0 stays unused, as in Linux).
const BASE_PAGE: u64 = 1;
/// Pages in the window: 256 GiB of IOVA space.
const WINDOW_PAGES: u64 = 1 << 26;
/// Live allocations in the comparison group.
const LIVE: usize = 10_000;
/// How many iterations ahead the scaling group prefetches: enough to hide
/// a DRAM access at a few nanoseconds per iteration.
const PREFETCH_AHEAD: usize = 64;
/// The random sequence's seed.
const SEED: Rng = Rng(0x9E37_79B9);
const NO_LIMIT: Iova = Iova::new(u64::MAX);

/// An allocator of single pages under test.
trait OnePage {
    /// What an allocation is held as until it is freed.
    type Held;
    fn alloc(&mut self) -> Self::Held;
    fn free(&mut self, held: Self::Held);
}

impl<S, D, B> OnePage for iova_alloc::CpuHandle<'_, S, D, B>
where
    S: iova_alloc::Store<iova_alloc::Node>,
    D: iova_alloc::Store<iova_alloc::Magazine>,
    B: AsRef<[std::sync::atomic::AtomicU8]>,
{
    type Held = IovaLease;
    fn alloc(&mut self) -> IovaLease {
        iova_alloc::CpuHandle::alloc(self, 1, NO_LIMIT).expect("window holds the live set")
    }
    fn free(&mut self, lease: IovaLease) {
        iova_alloc::CpuHandle::free(self, lease).expect("our lease");
    }
}

impl OnePage for IovaTree<Vec<iova_alloc::Node>> {
    type Held = IovaLease;
    fn alloc(&mut self) -> IovaLease {
        IovaTree::alloc(self, 1, NO_LIMIT).expect("window holds the live set")
    }
    fn free(&mut self, lease: IovaLease) {
        IovaTree::free(self, lease).expect("our lease");
    }
}

impl OnePage for vm_allocator::AddressAllocator {
    type Held = u32;
    fn alloc(&mut self) -> u32 {
        let r = self
            .allocate(PAGE_SIZE, PAGE_SIZE, vm_allocator::AllocPolicy::FirstMatch)
            .expect("window holds the live set");
        (r.start() / PAGE_SIZE) as u32
    }
    fn free(&mut self, page: u32) {
        let start = u64::from(page) * PAGE_SIZE;
        let range =
            vm_allocator::RangeInclusive::new(start, start + PAGE_SIZE - 1).expect("valid range");
        vm_allocator::AddressAllocator::free(self, &range).expect("live range");
    }
}

impl OnePage for range_alloc::RangeAllocator<u64> {
    type Held = u32;
    fn alloc(&mut self) -> u32 {
        self.allocate_range(1).expect("window holds the live set").start as u32
    }
    fn free(&mut self, page: u32) {
        let page = u64::from(page);
        self.free_range(page..page + 1);
    }
}

/// A fixed-seed random sequence shared by all functions, as cheap as it
/// gets so that it weighs little in the measurement: a 32-bit LCG (the
/// constants of Numerical Recipes) that picks an index by multiply-shift,
/// which reads its high bits (the good ones).
#[derive(Clone, Copy)]
struct Rng(u32);

impl Rng {
    /// An index below `n` (`n` < 2^32).
    #[inline(always)]
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((u64::from(self.0) * n as u64) >> 32) as usize
    }
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Asks the CPU to bring `held[i]` into its caches; no other effect.
#[inline(always)]
fn prefetch<T>(held: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint without architectural effect, valid for
    // any address; SSE, which provides it, is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(held.as_ptr().wrapping_add(i).cast());
    }
}

/// Asks the kernel to back `v`'s buffer with transparent huge pages, so
/// that a random walk over a large live set misses the TLB no more than a
/// small one does (a hint: without THP the buffer keeps 4 KiB pages).
fn huge_pages<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let start = (v.as_ptr() as usize).next_multiple_of(HUGE);
    let end = (v.as_ptr() as usize + v.capacity() * size_of::<T>()) & !(HUGE - 1);
    if end > start {
        // SAFETY: madvise(MADV_HUGEPAGE) changes no contents and no
        // permissions; the range is inside the vector's own allocation.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// Fills `live` allocations, then measures one alloc replacing a random live
/// allocation plus the free of that one, as function `name` (with `live` as
/// parameter if `param`); with `PREFETCH`, the loop prefetches the element
/// it replaces [`PREFETCH_AHEAD`] iterations later.
fn steady_state<A: OnePage, const PREFETCH: bool>(
    g: &mut Group<'_>,
    name: &str,
    param: bool,
    allocator: &mut A,
    live: usize,
) {
    // Filled on first use, so that a filtered-out function costs nothing.
    let mut held: Vec<A::Held> = Vec::new();
    // The sequence of picks, and the same sequence PREFETCH_AHEAD ahead.
    let (mut rng, mut ahead) = (SEED, SEED);
    let routine = |b: &mut criterion::Bencher<'_>| {
        if held.is_empty() {
            held = Vec::with_capacity(live);
            huge_pages(&held);
            held.extend((0..live).map(|_| allocator.alloc()));
            for _ in 0..PREFETCH_AHEAD {
                ahead.below(live);
            }
        }
        // Our own loop, with the random states and the live set's slice in
        // locals (registers) rather than behind the closure's captures.
        b.iter_custom(|iters| {
            let (mut pick, mut next, held) = (rng, ahead, &mut held[..]);
            let start = Instant::now();
            for _ in 0..iters {
                if PREFETCH {
                    prefetch(held, next.below(held.len()));
                }
                let i = pick.below(held.len());
                let old = std::mem::replace(&mut held[i], allocator.alloc());
                allocator.free(old);
            }
            let elapsed = start.elapsed();
            (rng, ahead) = (pick, next);
            elapsed
        })
    };
    if param {
        g.bench_function(BenchmarkId::new(name, live), routine);
    } else {
        g.bench_function(name, routine);
    }
}

fn window() -> Window {
    Window::from_pages(BASE_PAGE, BASE_PAGE + WINDOW_PAGES - 1).expect("valid window")
}

fn alloc_free_4k(c: &mut Criterion) {
    let mut g = c.benchmark_group("iova_alloc_free_4k");
    {
        let cache = VecIovaCache::with_window(window());
        let mut handle = cache.handle();
        steady_state::<_, false>(&mut g, "viommu", false, &mut handle, LIVE);
    }
    {
        let mut tree = IovaTree::new(window(), Vec::new());
        steady_state::<_, false>(&mut g, "viommu_tree", false, &mut tree, LIVE);
    }
    {
        let mut vm =
            vm_allocator::AddressAllocator::new(BASE_PAGE * PAGE_SIZE, WINDOW_PAGES * PAGE_SIZE)
                .expect("valid window");
        steady_state::<_, false>(&mut g, "vm_allocator", false, &mut vm, LIVE);
    }
    {
        let mut ra = range_alloc::RangeAllocator::new(BASE_PAGE..BASE_PAGE + WINDOW_PAGES);
        steady_state::<_, false>(&mut g, "range_alloc", false, &mut ra, LIVE);
    }
    g.finish();
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("iova_scaling");
    for live in [1 << 10, 1 << 16, 1 << 20] {
        let cache = VecIovaCache::with_tracked_pages(window(), 1 << 21);
        let mut handle = cache.handle();
        steady_state::<_, true>(&mut g, "viommu", true, &mut handle, live);
    }
    g.finish();
}

criterion_group!(benches, alloc_free_4k, scaling);
criterion_main!(benches);
