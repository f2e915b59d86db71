//! Capacities and configurations: any fixed capacity builds (not only
//! powers of two), run-time capacities under `alloc`, and configurations the
//! mapper cannot honour are typed errors, never silently adjusted.

mod common;

use std::time::Duration;

use common::*;
use invalidation::{FlushConfig, NoClock};
use iova_alloc::{IovaTree, Window};
use teardown::{Capacity, Error, Fixed, Mapper, MapperConfig, NoPinning, Reuse};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PhysAddr};
use vtd_tables::Perm;

fn config(reuse: Reuse, flush: FlushConfig) -> MapperConfig {
    MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) }
}

fn space<K: Capacity>(capacity: &K) -> IovaTree<K::Nodes> {
    IovaTree::new(Window::from_pages(1, (1 << 20) - 1).unwrap(), capacity.nodes())
}

type CapMapper<K> =
    Mapper<viommu_examples::Platform<TestClock>, IovaTree<<K as Capacity>::Nodes>, Inv, K>;

/// A single-use mapper with capacities `cap`, flushing deferred batches of
/// `batch`.
fn mapper<K: Capacity>(cap: K, batch: usize) -> CapMapper<K> {
    let bed = Testbed::with_memory(EmuConfig::qemu(), RAM, FRAMES_START);
    let flush = FlushConfig::deferred(batch, Duration::from_millis(10));
    let (platform, s) = (bed.platform(TestClock::default()), space(&cap));
    let cfg = config(Reuse::SingleUse, flush);
    Mapper::with_capacity(platform, bed.table, s, bed.inv, NoPinning, cfg, cap).unwrap()
}

/// 1000 mappings fit a `Fixed<1000, 17>` mapper, the 1001st is refused
/// with a typed error, and after unmapping everything comes back.
#[test]
fn a_capacity_of_1000_holds_1000_mappings() {
    let mut m = mapper(Fixed::<1000, 17>, 17);
    let buf = |i: u64| PhysAddr::new(i << 12);
    let iovas: Vec<Iova> = (0..1000).map(|i| m.map(buf(i), 64, Perm::READ).unwrap()).collect();
    assert_eq!(m.map(buf(1000), 64, Perm::READ), Err(Error::TooManyMappings));
    for iova in iovas {
        m.unmap(iova, 64).unwrap();
    }
    m.flush().unwrap();
    assert_eq!((m.mappings(), m.pending()), (0, 0));
    assert_eq!(m.flush_stats().batches, 1000u64.div_ceil(17));
}

#[cfg(feature = "alloc")]
#[test]
fn runtime_capacities() {
    use teardown::Runtime;
    let mut m = mapper(Runtime { maps: 3, pending: 100 }, 100);
    for i in 0..3 {
        m.map(PhysAddr::new(i << 12), 8, Perm::READ).unwrap();
    }
    assert_eq!(m.map(PhysAddr::new(3 << 12), 8, Perm::READ), Err(Error::TooManyMappings));
}

#[test]
fn configurations_it_cannot_honour_are_errors() {
    let lazy = Duration::from_millis(10);
    let optimistic = Reuse::Optimistic { quota: 8, time_limit: lazy };
    let refused = |reuse, flush, clock_tells_time: bool| {
        let bed = Testbed::with_memory(EmuConfig::qemu(), RAM, FRAMES_START);
        let cfg = config(reuse, flush);
        let s = space(&Fixed::<64, 16>);
        let r = if clock_tells_time {
            let p = bed.platform(TestClock::default());
            Mapper::with_capacity(p, bed.table, s, bed.inv, NoPinning, cfg, Fixed::<64, 16>)
                .map(drop)
        } else {
            let p = bed.platform(NoClock);
            Mapper::with_capacity(p, bed.table, s, bed.inv, NoPinning, cfg, Fixed::<64, 16>)
                .map(drop)
        };
        r.err()
    };
    let deferred = FlushConfig::deferred(16, lazy);
    assert_eq!(refused(optimistic, deferred, true), None);
    // A batch beyond the pending capacity: refused, not clamped.
    assert_eq!(
        refused(Reuse::SingleUse, FlushConfig::deferred(17, lazy), true),
        Some(Error::Invalidation(invalidation::Error::BatchTooLarge { batch: 17, capacity: 16 }))
    );
    // A clock that cannot tell time bounds no stale window.
    let strict = FlushConfig::strict();
    assert_eq!(refused(optimistic, strict, false), Some(Error::TimeLimitWithoutClock));
    assert_eq!(
        refused(Reuse::SingleUse, deferred, false),
        Some(Error::Invalidation(invalidation::Error::DeadlineWithoutClock))
    );
    assert_eq!(refused(Reuse::SingleUse, strict, false), None);
    assert!(Error::TimeLimitWithoutClock.to_string().contains("clock"));
}
