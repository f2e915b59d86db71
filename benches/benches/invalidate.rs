//! `invalidate`: the cost of the invalidation owed by 10,000 one-page unmaps
//! under each flush policy, on the software VT-d (`vtd-emu`, QEMU's
//! capabilities), with the queue-tail (IQT) writes per unmap: each one is a
//! VM exit when the unit is emulated by trap-and-emulate.
#![allow(missing_docs)] // reason: criterion's macros generate undocumented items

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use invalidation::{FlushConfig, FlushQueue};
use iommu_platform::TscClock;
use viommu_examples::{DOMAIN, Inv, Testbed, tsc};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PAGE_SIZE};

const UNMAPS: u64 = 10_000;

/// 10,000 unmaps of one page each, then a flush; returns IQT writes.
fn run(config: FlushConfig, inv: &mut Inv, clock: &TscClock) -> u64 {
    let before = inv.counters().tail_writes;
    let mut q: FlushQueue<u64, _> = FlushQueue::new(config, clock).expect("config");
    let mut released = 0u64;
    for n in 0..UNMAPS {
        let start = Iova::new((n % 65_536) * PAGE_SIZE);
        let range = start..Iova::new(start.as_u64() + PAGE_SIZE);
        q.unmapped(inv, DOMAIN, range, true, n, |_| released += 1).unwrap();
    }
    q.flush(inv, |_| released += 1).unwrap();
    assert_eq!(released, UNMAPS);
    inv.counters().tail_writes - before
}

fn invalidate(c: &mut Criterion) {
    let policies = [
        ("strict", FlushConfig::strict()),
        ("deferred", FlushConfig::deferred(256, Duration::from_millis(10))),
        ("async", FlushConfig::asynchronous(64, Duration::from_millis(10))),
    ];
    // Calibrated once: a clock is 20 ms of calibration, not part of a run.
    let clock = tsc();
    let mut group = c.benchmark_group("invalidate");
    group.sample_size(10);
    for (name, config) in policies {
        let mut inv = Testbed::new(EmuConfig::qemu()).inv;
        let writes = run(config, &mut inv, &clock);
        println!(
            "invalidate/{name}: {:.4} IQT writes per unmap ({writes} for {UNMAPS} unmaps)",
            writes as f64 / UNMAPS as f64
        );
        group.bench_function(name, |b| b.iter(|| run(config, &mut inv, &clock)));
    }
    group.finish();
}

criterion_group!(benches, invalidate);
criterion_main!(benches);
