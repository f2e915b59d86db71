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

/// A register page that is plain memory to the guest (a VM's RAM page):
/// the driver's plain stores, GCMD and the write-1-to-clear registers
/// included, are served by a sidecore polling every register.
#[test]
fn a_page_of_plain_memory_is_served_whole() {
    std::thread::Builder::new().stack_size(STACK).spawn(polled).unwrap().join().unwrap();
}

/// The guest's side of a polled page: plain 32-bit loads and stores.
#[derive(Clone, Copy)]
struct PlainPage(&'static [std::sync::atomic::AtomicU32]);

impl vtd_regs::Mmio for PlainPage {
    fn read32(&self, off: usize) -> u32 {
        self.0[off / 4].load(Ordering::Acquire)
    }
    fn write32(&mut self, off: usize, value: u32) {
        self.0[off / 4].store(value, Ordering::Release);
    }
}

fn polled() {
    use viommu::sidecore::{Layout, Polling};
    use vtd_regs::regs::offset;
    use vtd_regs::{Mmio, PhysMem};
    let rig = HostRig::new();
    let v = rig.viommu(0, ViommuConfig::qemu());
    let words: &'static [std::sync::atomic::AtomicU32] =
        Box::leak((0..1024).map(|_| std::sync::atomic::AtomicU32::new(0)).collect());
    let stop = AtomicBool::new(false);
    let layout = Layout::new(&v.unit().config(), Polling::All);
    let mut sidecore = Sidecore::with_layout(words, v, layout);
    std::thread::scope(|s| {
        let sc = s.spawn(|| {
            sidecore.run_with(v, &stop, std::thread::yield_now);
            sidecore.served()
        });
        let mut g: Guest<PlainPage> = Guest::with_mmio(0, &rig, v, PlainPage(words), 1 << 39);
        for round in 0..20u64 {
            let gpa = PhysAddr::new(POOL_BASE + (round % POOL) * PAGE_SIZE);
            let iova = g.mapper.map(gpa, PAGE_SIZE, Perm::READ_WRITE).unwrap();
            assert_eq!(
                v.dma(rig.emu, GUEST_DEVICE, iova, Access::Write),
                Ok(g.host_address(gpa.as_u64()))
            );
            g.mapper.unmap(iova, PAGE_SIZE).unwrap();
            assert!(v.dma(rig.emu, GUEST_DEVICE, iova, Access::Write).is_err());
        }
        // The same GCMD value twice (a second SRTP) is served twice.
        let mut page = PlainPage(words);
        let srtps = v.unit().counters().writes_of(vtd_emu::RegisterName::Gcmd);
        let gsts = page.read32(offset::GSTS);
        for _ in 0..2 {
            page.write32(offset::GCMD, gsts & 0x96ff_ffff | 1 << 30);
            while page.read32(offset::GCMD) != viommu::sidecore::GCMD_IDLE {
                std::thread::yield_now();
            }
        }
        assert_eq!(v.unit().counters().writes_of(vtd_emu::RegisterName::Gcmd), srtps + 2);
        // A queue error, cleared by writing its status bit to FSTS.
        let unit = g.mapper.invalidator().unit();
        let tail = unit.queue_head().unwrap();
        let (frame, _) = (unit.queue().unwrap().base(), ());
        g.mem.write_bytes(PhysAddr::new(frame.as_u64() + tail as u64 * 16), &[0xf; 16]).unwrap();
        unit.write_queue_tail((tail + 1) % 256).unwrap();
        while page.read32(offset::FSTS) & 0x10 == 0 {
            std::thread::yield_now();
        }
        assert_eq!(
            page.read32(offset::FSTS) & viommu::sidecore::W1C_MARK,
            viommu::sidecore::W1C_MARK
        );
        // Replace the bad descriptor by a harmless one, clear IQE: the queue
        // resumes.
        let fence = vtd_regs::Descriptor::from(vtd_regs::desc::WaitDesc::NONE).encode();
        g.mem
            .write_bytes(PhysAddr::new(frame.as_u64() + tail as u64 * 16), &fence.to_le_bytes())
            .unwrap();
        page.write32(offset::FSTS, 0x10);
        while page.read32(offset::FSTS) & 0x10 != 0 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Release);
        assert!(sc.join().unwrap() >= 40);
    });
    assert_eq!(v.with_pinner(|p| p.pinned_pages()), 0);
}
