//! The sidecore front end under threads: the guest's driver runs over the
//! shared register page while a sidecore thread serves it, a device thread
//! does DMA all along, and another guest runs trap-and-emulate beside it.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use viommu::ViommuConfig;
use viommu::sidecore::{RegisterPage, Sidecore, SidecoreMmio};
use vtd_regs::{Iova, PAGE_SIZE, PhysAddr};
use vtd_tables::{Access, Perm};

/// Guest pages the guests map (per guest).
const POOL: u64 = 32;
const POOL_BASE: u64 = 0x10_0000;

/// The guests' mappers hold their registries inline: run on big stacks.
const STACK: usize = 64 << 20;

#[test]
fn sidecore_serves_a_guest_while_devices_run() {
    std::thread::Builder::new().stack_size(STACK).spawn(stress).unwrap().join().unwrap();
}

fn stress() {
    let rig = HostRig::new();
    let cfg = ViommuConfig::qemu();
    let va = rig.viommu(0, cfg);
    let page: &'static RegisterPage = leak(RegisterPage::new());
    let stop = AtomicBool::new(false);
    let unit_cfg = va.unit().config();
    let mut sidecore = Sidecore::new(page, va, &unit_cfg);
    let allowed = |n: u64| -> BTreeSet<PhysAddr> {
        (0..POOL)
            .map(|i| {
                HostRig::layout(n)
                    .host_address(PhysAddr::new(POOL_BASE + i * PAGE_SIZE), 1)
                    .unwrap()
            })
            .collect()
    };
    let (allowed_a, allowed_b) = (allowed(0), allowed(1));
    let mut b = Guest::new(&rig, 1, 1 << 39);
    let vb = b.viommu;
    let emu = rig.emu;
    /// Stops the sidecore and the device even if the guest panics.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    std::thread::scope(|s| {
        let _stop_on_exit = Stop(&stop);
        let sc = s.spawn(|| {
            sidecore.run_with(va, &stop, std::thread::yield_now);
            sidecore.served()
        });
        // A device of each guest, hammering IOVAs the guests use.
        let dev = s.spawn(|| {
            let mut hits = 0u64;
            while !stop.load(Ordering::Acquire) {
                for p in 0..64u64 {
                    let iova = Iova::new(p << 12);
                    for (v, allowed) in [(va, &allowed_a), (vb, &allowed_b)] {
                        if let Ok(hpa) = v.dma(emu, GUEST_DEVICE, iova, Access::Write) {
                            assert!(allowed.contains(&hpa.align_down(PAGE_SIZE)), "{hpa:?}");
                            hits += 1;
                        }
                    }
                }
                std::thread::yield_now();
            }
            hits
        });
        // Guest B under trap-and-emulate.
        let big = || std::thread::Builder::new().stack_size(STACK);
        let trap = big().spawn_scoped(s, move || {
            for round in 0..100u64 {
                let gpa = PhysAddr::new(POOL_BASE + (round % POOL) * PAGE_SIZE);
                let iova = b.mapper.map(gpa, PAGE_SIZE, Perm::READ_WRITE).unwrap();
                b.mapper.unmap(iova, PAGE_SIZE).unwrap();
            }
        });
        // Guest A over the sidecore.
        let mmio = SidecoreMmio::new(page, va, &unit_cfg);
        let mut a: Guest<SidecoreRegs> = Guest::with_mmio(0, &rig, va, mmio, 1 << 39);
        let mut live = Vec::new();
        for round in 0..200u64 {
            let gpa = PhysAddr::new(POOL_BASE + (round % POOL) * PAGE_SIZE);
            let iova = a.mapper.map(gpa, PAGE_SIZE, Perm::READ_WRITE).unwrap();
            // Mapped: the device reaches it now (the guest saw completion).
            assert_eq!(
                va.dma(emu, GUEST_DEVICE, iova, Access::Write),
                Ok(a.host_address(gpa.as_u64()))
            );
            live.push(iova);
            if live.len() > 4 {
                let old = live.remove(0);
                a.mapper.unmap(old, PAGE_SIZE).unwrap();
                // Unmapped and invalidated: unreachable now.
                assert!(va.dma(emu, GUEST_DEVICE, old, Access::Write).is_err());
            }
        }
        for iova in live.drain(..) {
            a.mapper.unmap(iova, PAGE_SIZE).unwrap();
        }
        trap.unwrap().join().unwrap();
        stop.store(true, Ordering::Release);
        let served = sc.join().unwrap();
        let hits = dev.join().unwrap();
        assert!(served >= 400, "served {served}");
        let _ = hits;
    });
    for v in [va, vb] {
        assert_eq!(v.with_pinner(|p| p.pinned_pages()), 0);
        assert_eq!(v.with_pinner(|p| p.unbalanced_unpins()), 0);
        assert_eq!(v.counters().host_errors, 0);
    }
}
