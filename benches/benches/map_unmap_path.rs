//! `map_unmap_path`: the mapping layer on a NIC-like workload, a ring of
//! 256 receive buffers reused in order, one 1500-byte buffer per map, on
//! the software VT-d. Each iteration is one map + unmap pair; next to the
//! time, the IQT writes (VM exits under trap-and-emulate) and page-table
//! updates per pair are printed.
#![allow(missing_docs)] // reason: criterion's macros generate undocumented items

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use invalidation::FlushConfig;
use iommu_platform::TscClock;
use iova_alloc::{CpuHandle, Magazine, Node, VecIovaCache, Window};
use std::sync::atomic::AtomicU8;
use teardown::{Fixed, Mapper, MapperConfig, NoPinning, Reuse};
use viommu_examples::{DOMAIN, Inv, Platform, Testbed, tsc};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PhysAddr};
use vtd_tables::Perm;

const RING: u64 = 256;
const BUFFER: u64 = 1500;

type Handle = CpuHandle<'static, Vec<Node>, Vec<Magazine>, Box<[AtomicU8]>>;
type NicMapper = Mapper<Platform<TscClock>, Handle, Inv, Fixed<1024, 512>>;

fn mapper(reuse: Reuse, flush: FlushConfig) -> NicMapper {
    let bed = Testbed::new(EmuConfig::qemu());
    let window = Window::from_pages(1, (1 << 20) - 1).expect("window");
    let cache: &'static VecIovaCache = Box::leak(Box::new(VecIovaCache::with_window(window)));
    let config = MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) };
    let platform = bed.platform(tsc());
    Mapper::with_capacity(platform, bed.table, cache.handle(), bed.inv, NoPinning, config, Fixed)
        .expect("config")
}

/// Receive buffer `n` of the ring: 2 KiB apart, two per page.
fn buffer(n: u64) -> PhysAddr {
    PhysAddr::new(0x10_0000 + (n % RING) * 0x800)
}

fn pair(m: &mut NicMapper, n: u64) {
    let iova = m.map(buffer(n), BUFFER, Perm::WRITE).expect("map");
    m.unmap(iova, BUFFER).expect("unmap");
}

fn map_unmap_path(c: &mut Criterion) {
    let lazy = Duration::from_millis(10);
    let policies = [
        ("single_use_strict", Reuse::SingleUse, FlushConfig::strict()),
        ("single_use_deferred", Reuse::SingleUse, FlushConfig::deferred(256, lazy)),
        ("shared_strict", Reuse::Shared, FlushConfig::strict()),
        ("persistent", Reuse::Persistent { quota: None }, FlushConfig::strict()),
        (
            "optimistic",
            Reuse::Optimistic { quota: 512, time_limit: lazy },
            FlushConfig::deferred(512, lazy),
        ),
    ];
    let mut group = c.benchmark_group("map_unmap_path");
    for (name, reuse, flush) in policies {
        let mut m = mapper(reuse, flush);
        // Warm: one round of the ring, then count one measured round.
        (0..RING).for_each(|n| pair(&mut m, n));
        let (w0, t0) = (m.invalidator().counters().tail_writes, m.counters().table_updates);
        (0..RING * 16).for_each(|n| pair(&mut m, n));
        let pairs = (RING * 16) as f64;
        println!(
            "map_unmap_path/{name}: {:.4} IQT writes and {:.3} page-table updates per map+unmap pair",
            (m.invalidator().counters().tail_writes - w0) as f64 / pairs,
            (m.counters().table_updates - t0) as f64 / pairs,
        );
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                pair(&mut m, n);
                n += 1;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, map_unmap_path);
criterion_main!(benches);
