//! `map_unmap_threads`: the shared mapping layer on 1 and 2 threads, each
//! on its own ring of 256 receive buffers, every iteration the same total
//! number of map+unmap pairs split evenly among the threads; today's
//! `Mapper` behind one lock as the baseline; `compute_only_1t` and
//! `compute_only_2t`, the same split of arithmetic with nothing shared,
//! the machine's own ceiling for the 1t/2t ratio. `strict_batch`: strict
//! protection on per-ring contiguous IOVAs ([`IovaRings`]), each thread
//! mapping a batch of 32 buffers and unmapping them one by one (an
//! invalidation wait each) or with one `unmap_batch` (one wait, one range).
//! `map_range_256`: map + unmap of 256 contiguous 4 KiB pages in one call
//! on the shared table.
#![allow(missing_docs)] // reason: criterion's macros generate undocumented items

use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use invalidation::FlushConfig;
use iommu_platform::{Inline, TscClock};
use iova_alloc::{CpuHandle, IovaRange, IovaRings, Magazine, Node, VecIovaCache, Window};
use std::sync::atomic::AtomicU8;
use teardown::{
    Fixed, FlushScope, Mapper, MapperConfig, NoPinning, Reuse, SharedMapper, SharedSpace,
};
use viommu_examples::{DOMAIN, Inv, Platform, Testbed, tsc};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PhysAddr};
use vtd_tables::{Perm, SharedSlTable};

const RING: u64 = 256;
const BUFFER: u64 = 1500;
/// Map+unmap pairs per iteration, split among the threads.
const PAIRS: u64 = 4096;

type Cache = VecIovaCache;
type Shared = SharedMapper<Platform<TscClock>, Cache, Inv, Fixed<1024, 512>, Inline<2>>;
type Handle = CpuHandle<'static, Vec<Node>, Vec<Magazine>, Box<[AtomicU8]>>;
type Single = Mapper<Platform<TscClock>, Handle, Inv, Fixed<1024, 512>>;
/// Two rings of 4096 pages, 512 buffers each.
type Rings = IovaRings<2, 512>;
type RingShared = SharedMapper<Platform<TscClock>, Rings, Inv, Fixed<1024, 512>, Inline<2>>;
/// Buffers a thread maps before unmapping them (a ring's completion batch).
const BATCH: u64 = 32;

fn window() -> Window {
    Window::from_pages(1, (1 << 20) - 1).expect("window")
}

fn shared(reuse: Reuse, flush: FlushConfig) -> &'static Shared {
    shared_on(VecIovaCache::with_window(window()), reuse, flush)
}

/// A shared mapper drawing IOVAs from `space`, per-handle flush queues.
fn shared_on<C: SharedSpace>(
    space: C,
    reuse: Reuse,
    flush: FlushConfig,
) -> &'static SharedMapper<Platform<TscClock>, C, Inv, Fixed<1024, 512>, Inline<2>> {
    let bed = Testbed::new(EmuConfig::qemu());
    let config = MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) };
    let platform = bed.platform(tsc());
    let table = SharedSlTable::from(bed.table);
    let scope = (config, FlushScope::PerHandle);
    let m =
        SharedMapper::new(platform, table, space, bed.inv, scope, Fixed, Inline).expect("config");
    Box::leak(Box::new(m))
}

/// Receive buffer `n` of thread `t`'s ring: 2 KiB apart, two per page.
fn buffer(t: u64, n: u64) -> PhysAddr {
    PhysAddr::new((0x10_0000 << t) + (n % RING) * 0x800)
}

/// Runs `worker(t, go)` on `threads` threads: each sets up, then calls
/// `go` (the threads start together; it returns the start time) and
/// returns its time. The time of the slowest thread.
fn slowest<F>(threads: u64, worker: F) -> Duration
where
    F: Fn(u64, &(dyn Fn() -> Instant + Sync)) -> Duration + Sync,
{
    let barrier = Barrier::new(threads as usize);
    let go = || {
        barrier.wait();
        Instant::now()
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (worker, go) = (&worker, &go);
                s.spawn(move || worker(t, go))
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).max().unwrap_or_default()
    })
}

/// Runs `iters` iterations of `PAIRS` pairs split among `threads`, each
/// thread on its own handle; the time of the slowest thread.
fn run_shared(m: &'static Shared, threads: u64, iters: u64) -> Duration {
    slowest(threads, |t, go| {
        let mut h = m.handle(t as usize).expect("handle");
        let start = go();
        for n in 0..iters * PAIRS / threads {
            let iova = h.map(buffer(t, n), BUFFER, Perm::WRITE).expect("map");
            h.unmap(iova, BUFFER).expect("unmap");
        }
        start.elapsed()
    })
}

/// As [`run_shared`] on ring IOVAs, in batches of [`BATCH`] buffers:
/// mapped, then unmapped one by one or (`batched`) with one
/// `unmap_batch`.
fn run_rings(m: &'static RingShared, threads: u64, iters: u64, batched: bool) -> Duration {
    slowest(threads, |t, go| {
        let mut h = m.handle(t as usize).expect("handle");
        let mut bufs = Vec::with_capacity(BATCH as usize);
        let start = go();
        for b in 0..iters * PAIRS / threads / BATCH {
            bufs.clear();
            for n in b * BATCH..(b + 1) * BATCH {
                let iova = h.map(buffer(t, n), BUFFER, Perm::WRITE).expect("map");
                bufs.push((iova, BUFFER));
            }
            if batched {
                h.unmap_batch(&bufs).expect("unmap batch");
            } else {
                for &(iova, len) in &bufs {
                    h.unmap(iova, len).expect("unmap");
                }
            }
        }
        start.elapsed()
    })
}

fn strict_batch(c: &mut Criterion) {
    let region = IovaRange::from_pages(0x4_0000, 8192).expect("region");
    let rings = Rings::new(region).expect("rings");
    let m = shared_on(rings, Reuse::SingleUse, FlushConfig::strict());
    run_rings(m, 2, 1, true); // warm both rings
    let mut group = c.benchmark_group("strict_batch");
    for threads in [1, 2] {
        for (name, batched) in [("per_buffer", false), ("batched", true)] {
            group.bench_function(format!("{name}_{threads}t"), |b| {
                b.iter_custom(|iters| run_rings(m, threads, iters, batched))
            });
        }
    }
    group.finish();
}

fn run_mutex(m: &Mutex<Single>, threads: u64, iters: u64) -> Duration {
    slowest(threads, |t, go| {
        let start = go();
        for n in 0..iters * PAIRS / threads {
            let mut g = m.lock().expect("lock");
            let iova = g.map(buffer(t, n), BUFFER, Perm::WRITE).expect("map");
            g.unmap(iova, BUFFER).expect("unmap");
        }
        start.elapsed()
    })
}

/// Dependent shift-xor-multiplies per pair in [`run_compute`]: about as long as a
/// deferred pair (~300 cycles).
const COMPUTE_STEPS: u64 = 64;

/// As [`run_shared`] with the pairs replaced by arithmetic on registers
/// ([`COMPUTE_STEPS`] each): nothing shared, nothing in memory. The
/// machine's own ceiling for `*_1t` / `*_2t`: where its two CPUs do not
/// both run at full speed all the time (a virtual machine whose host
/// takes time from one of them), the ratio falls below 2 here too.
fn run_compute(threads: u64, iters: u64) -> Duration {
    slowest(threads, |t, go| {
        let mut x = std::hint::black_box(t + 1);
        let start = go();
        for _ in 0..iters * PAIRS / threads {
            for _ in 0..COMPUTE_STEPS {
                x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            }
            x = std::hint::black_box(x);
        }
        start.elapsed()
    })
}

fn map_unmap_threads(c: &mut Criterion) {
    let lazy = Duration::from_millis(10);
    let optimistic = Reuse::Optimistic { quota: 512, time_limit: lazy };
    let policies = [
        ("single_use_strict", Reuse::SingleUse, FlushConfig::strict()),
        ("single_use_deferred", Reuse::SingleUse, FlushConfig::deferred(256, lazy)),
        ("optimistic", optimistic, FlushConfig::deferred(512, lazy)),
    ];
    let mut group = c.benchmark_group("map_unmap_threads");
    for (name, reuse, flush) in policies {
        let m = shared(reuse, flush);
        run_shared(m, 2, 1); // warm both rings
        for threads in [1, 2] {
            group.bench_function(format!("{name}_{threads}t"), |b| {
                b.iter_custom(|iters| run_shared(m, threads, iters))
            });
        }
    }
    let bed = Testbed::new(EmuConfig::qemu());
    let cache: &'static Cache = Box::leak(Box::new(VecIovaCache::with_window(window())));
    let config = MapperConfig {
        reuse: optimistic,
        flush: FlushConfig::deferred(512, lazy),
        domain: DOMAIN,
        dma_limit: Iova::new(1 << 32),
    };
    let platform = bed.platform(tsc());
    let single = Mapper::with_capacity(
        platform,
        bed.table,
        cache.handle(),
        bed.inv,
        NoPinning,
        config,
        Fixed,
    )
    .expect("config");
    let single = Mutex::new(single);
    run_mutex(&single, 2, 1);
    group
        .bench_function("mutex_mapper_2t", |b| b.iter_custom(|iters| run_mutex(&single, 2, iters)));
    for threads in [1, 2] {
        group.bench_function(format!("compute_only_{threads}t"), |b| {
            b.iter_custom(|iters| run_compute(threads, iters))
        });
    }
    group.finish();
}

fn map_range_256(c: &mut Criterion) {
    let bed = Testbed::new(EmuConfig::qemu());
    let table = SharedSlTable::from(bed.table);
    let (iova, phys, len) = (Iova::new(0x4000_0000), PhysAddr::new(0x10_0000), 256 << 12);
    let mut group = c.benchmark_group("map_range_256");
    group.bench_function("shared_table_4k_x256", |b| {
        b.iter(|| {
            table.map_range(iova, phys, len, Perm::WRITE).expect("map");
            let token = table.unmap_range(iova, len).expect("unmap");
            table.release(token).expect("release");
        })
    });
    group.finish();
}

criterion_group!(benches, map_unmap_threads, strict_batch, map_range_256);
criterion_main!(benches);
