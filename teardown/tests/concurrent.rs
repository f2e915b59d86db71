//! The shared mapping layer under concurrency, on the software VT-d: two
//! CPUs map and unmap their own rings through their handles while a
//! device thread keeps translating their IOVAs, checking that no IOVA ever
//! reaches a page other than one it was mapped to and whose release has
//! not been observed (an IOVA comes back from the allocator only after the
//! invalidation of its last teardown completed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use invalidation::FlushConfig;
use iommu_platform::{Inline, StdClock};
use iova_alloc::{VecIovaCache, Window};
use teardown::{Fixed, FlushScope, MapperConfig, Reuse, SharedMapper};
use viommu_examples::{DEVICE, DOMAIN, Testbed};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PAGE_SIZE, PhysAddr};
use vtd_tables::{Access, Perm, SharedSlTable};

/// IOVA page -> (generation, pages it may reach); and the page each CPU
/// is mapping right now (its IOVA not known yet: a device may reach it as
/// soon as the entry is written, before `map` returns).
type Ledger = Mutex<(HashMap<u64, (u64, Vec<u64>)>, [Option<u64>; 2])>;

fn stress(reuse: Reuse, flush: FlushConfig, scope: FlushScope) {
    // Inline capacities are large values in a debug build's frames.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || stress_on_this_thread(reuse, flush, scope))
        .unwrap()
        .join()
        .unwrap();
}

fn stress_on_this_thread(reuse: Reuse, flush: FlushConfig, scope: FlushScope) {
    let bed = Testbed::new(EmuConfig::qemu());
    let window = Window::from_pages(1, (1 << 20) - 1).unwrap();
    let space = VecIovaCache::with_window(window);
    let config = MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) };
    let platform = bed.platform(StdClock::new());
    let table = SharedSlTable::from(bed.table);
    let mapper = SharedMapper::new(
        platform,
        table,
        space,
        bed.inv,
        (config, scope),
        Fixed::<128, 64>,
        Inline::<2>,
    )
    .unwrap();
    let ledger: Ledger = Mutex::new((HashMap::new(), [None; 2]));
    let done = AtomicUsize::new(0);
    // Translations the device thread has checked: the CPUs go on past
    // their 3000 pairs (up to 100 times as many) until it has checked one,
    // so a device thread scheduled late on a loaded machine still sees
    // mappings.
    let seen = AtomicU64::new(0);
    let pairs = AtomicU64::new(0);
    let emu = bed.emu;
    std::thread::scope(|s| {
        for cpu in 0..2u64 {
            let (mapper, ledger, done, seen, pairs) = (&mapper, &ledger, &done, &seen, &pairs);
            s.spawn(move || {
                let mut h = mapper.handle(cpu as usize).unwrap();
                let more = |n: u64| n < 3000 || (seen.load(Ordering::Acquire) == 0 && n < 300_000);
                for n in (0..).take_while(|&n| more(n)) {
                    // Ring of 64 buffers per CPU, in its own pages.
                    let phys = PhysAddr::new(((1 + cpu) << 22) | ((n % 64) << 12));
                    ledger.lock().unwrap().1[cpu as usize] = Some(phys.page_number());
                    let iova = h.map(phys, 1500, Perm::WRITE).unwrap();
                    {
                        let mut l = ledger.lock().unwrap();
                        l.1[cpu as usize] = None;
                        let e = l.0.entry(iova.page_number()).or_default();
                        e.0 += 1;
                        if !e.1.contains(&phys.page_number()) {
                            e.1.push(phys.page_number());
                        }
                    }
                    h.unmap(iova, 1500).unwrap();
                    pairs.fetch_add(1, Ordering::Relaxed);
                }
                h.flush().unwrap();
                done.fetch_add(1, Ordering::AcqRel);
            });
        }
        let (ledger, done, seen) = (&ledger, &done, &seen);
        s.spawn(move || {
            let mut checked = 0u64;
            while done.load(Ordering::Acquire) < 2 {
                let pages: Vec<u64> = ledger.lock().unwrap().0.keys().copied().collect();
                for p in pages {
                    let before = ledger.lock().unwrap().0.get(&p).cloned().unwrap_or_default();
                    let t = emu.translate(DEVICE, Iova::new(p * PAGE_SIZE), Access::Write);
                    let (after, mapping) = {
                        let l = ledger.lock().unwrap();
                        (l.0.get(&p).cloned().unwrap_or_default(), l.1)
                    };
                    if let Ok(phys) = t {
                        let page = phys.page_number();
                        assert!(
                            before.1.contains(&page)
                                || after.1.contains(&page)
                                || mapping.contains(&Some(page)),
                            "IOVA page {p:#x} reached page {page:#x}, never mapped there"
                        );
                        checked += 1;
                        seen.store(checked, Ordering::Release);
                    }
                }
            }
            assert!(checked > 0, "the device never saw a mapping");
        });
    });
    let c = mapper.counters();
    assert_eq!(c.release_errors, 0);
    assert_eq!(c.maps, pairs.load(Ordering::Relaxed));
    assert!(c.maps >= 6000);
    // Everything unmapped and flushed: nothing translates any more.
    for &p in ledger.lock().unwrap().0.keys() {
        assert!(mapper.table().translate(Iova::new(p * PAGE_SIZE)).is_none());
        assert!(emu.translate(DEVICE, Iova::new(p * PAGE_SIZE), Access::Write).is_err());
    }
}

#[test]
fn single_use_strict() {
    stress(Reuse::SingleUse, FlushConfig::strict(), FlushScope::PerHandle);
}

#[test]
fn single_use_deferred_per_handle() {
    stress(
        Reuse::SingleUse,
        FlushConfig::deferred(32, Duration::from_millis(10)),
        FlushScope::PerHandle,
    );
}

#[test]
fn single_use_async_single_queue() {
    stress(
        Reuse::SingleUse,
        FlushConfig::asynchronous(64, Duration::from_millis(10)),
        FlushScope::Single,
    );
}

#[test]
fn optimistic_deferred() {
    let reuse = Reuse::Optimistic { quota: 32, time_limit: Duration::from_millis(10) };
    stress(reuse, FlushConfig::deferred(64, Duration::from_millis(10)), FlushScope::PerHandle);
}

#[test]
fn shared_strict() {
    stress(Reuse::Shared, FlushConfig::strict(), FlushScope::Single);
}
