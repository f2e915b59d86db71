//! The four uses of IOMMU emulation the paper names (Amit et al. 2011, §3):
//! memory overcommit, intra-guest protection, DMA redirection, and
//! inter-guest protection kept intact. Each guest runs this workspace's own
//! driver stack against its vIOMMU; its device's DMA goes through the host's
//! (software) VT-d.

mod common;

use std::collections::BTreeSet;

use common::*;
use viommu::HIGH_RAM_START;
use vtd_regs::{FaultReason, Iova, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::{Access, Perm};

/// Overcommit: a guest page is pinned exactly while the host unit can reach
/// it, and the pinned pages are the host frames the host unit reaches.
#[test]
fn pages_are_pinned_only_while_mapped() {
    let rig = HostRig::new();
    let mut g = Guest::new(&rig, 0, 1 << 39);
    let v = g.viommu;
    assert_eq!(v.with_pinner(|p| p.pinned_pages()), 0);
    // Eight pages, one of them mapped twice (two IOVAs, one page).
    let mut maps = Vec::new();
    for i in 0..8u64 {
        let gpa = PhysAddr::new(0x10_0000 + i * PAGE_SIZE);
        maps.push((g.mapper.map(gpa, PAGE_SIZE, Perm::READ_WRITE).unwrap(), gpa));
    }
    let twice = PhysAddr::new(0x10_0000);
    maps.push((g.mapper.map(twice, PAGE_SIZE, Perm::READ).unwrap(), twice));

    let reach = |maps: &[(Iova, PhysAddr)]| -> BTreeSet<PhysAddr> {
        maps.iter()
            .filter_map(|(iova, _)| v.dma(rig.emu, GUEST_DEVICE, *iova, Access::Read).ok())
            .map(|hpa| hpa.align_down(PAGE_SIZE))
            .collect()
    };
    let pinned = |v: &Vmmu| v.with_pinner(|p| p.pinned_frames().collect::<BTreeSet<_>>());
    let reached = reach(&maps);
    assert_eq!(reached.len(), 8);
    assert_eq!(pinned(v), reached);
    assert_eq!(v.with_pinner(|p| p.pins(twice)), 2);
    for (iova, gpa) in &maps {
        let hpa = v.dma(rig.emu, GUEST_DEVICE, *iova, Access::Read).unwrap();
        assert_eq!(hpa, g.host_address(gpa.as_u64()));
    }

    // Unmap five (one of the two mappings of the shared page among them).
    for (iova, _) in maps.drain(4..) {
        g.mapper.unmap(iova, PAGE_SIZE).unwrap();
    }
    let reached = reach(&maps);
    assert_eq!(reached.len(), 4);
    assert_eq!(pinned(v), reached);
    assert_eq!(v.with_pinner(|p| p.pins(twice)), 1);
    for (iova, _) in maps.drain(..) {
        g.mapper.unmap(iova, PAGE_SIZE).unwrap();
    }
    assert_eq!(v.with_pinner(|p| p.pinned_pages()), 0);
    let c = v.counters();
    assert_eq!(c.pins, 9);
    assert_eq!(c.unpins, 9);
    assert_eq!(c.host_errors, 0);
    assert_eq!(v.with_pinner(|p| p.unbalanced_unpins()), 0);
}

/// Intra-guest protection: once the guest's (strict) unmap has completed,
/// its device cannot reach the page, and the fault shows in the guest's
/// fault recording registers.
#[test]
fn unmapped_iova_faults_and_the_guest_sees_it() {
    let rig = HostRig::new();
    let mut g = Guest::new(&rig, 0, 1 << 39);
    let v = g.viommu;
    let gpa = PhysAddr::new(0x20_0000);
    let iova = g.mapper.map(gpa, PAGE_SIZE, Perm::READ).unwrap();
    assert_eq!(v.dma(rig.emu, GUEST_DEVICE, iova, Access::Read), Ok(g.host_address(0x20_0000)));
    // Read-only: a write faults already.
    let f = v.dma(rig.emu, GUEST_DEVICE, iova, Access::Write).unwrap_err();
    assert_eq!(f.reason, FaultReason::WriteNotPermitted);
    g.mapper.unmap(iova, PAGE_SIZE).unwrap();
    let f = v.dma(rig.emu, GUEST_DEVICE, iova, Access::Read).unwrap_err();
    assert_eq!(f.reason, FaultReason::ReadNotPermitted);

    let unit = g.mapper.invalidator().unit();
    let records: Vec<_> = unit.drain_faults().collect();
    assert_eq!(records.len(), 1, "one fault record (the unit has one register)");
    assert_eq!(records[0].source, GUEST_DEVICE);
    assert_eq!(records[0].fault_info, iova.as_u64() & !0xfff);
    let host = rig.emu.counters();
    assert_eq!(host.faults_recorded + host.faults_dropped, 2, "the host unit saw both");
}

/// DMA redirection: a device limited to 32-bit addresses reaches guest
/// memory above 4 GiB through a guest mapping below 4 GiB.
#[test]
fn a_32_bit_device_reaches_high_memory() {
    let rig = HostRig::new();
    let mut g = Guest::new(&rig, 0, 1 << 32);
    let v = g.viommu;
    let high = HIGH_RAM_START + 0x3000;
    let iova = g.mapper.map(PhysAddr::new(high + 0x10), 64, Perm::WRITE).unwrap();
    assert!(iova.as_u64() < 1 << 32);
    let hpa = v.dma(rig.emu, GUEST_DEVICE, iova, Access::Write).unwrap();
    assert_eq!(hpa, g.host_address(high + 0x10));
    // The host sees the DMA land where the guest reads its high page.
    rig.mem.write_u64(hpa.align_down(8), 0xfeed).unwrap();
    assert_eq!(g.mem.read_u64(PhysAddr::new(high + 0x10)), Ok(0xfeed));
    // Without the guest's mapping the device could not address it at all.
    assert!(v.dma(rig.emu, GUEST_DEVICE, Iova::new(high), Access::Write).is_err());
}

/// A tiny deterministic generator for hostile guest writes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Inter-guest protection: two guests, two host domains; whatever guest 1
/// writes into its tables and however it invalidates, its device reaches
/// only pinned pages of its own RAM, and guest 0's mappings keep working.
#[test]
fn no_guest_reaches_another_guests_memory() {
    let rig = HostRig::new();
    let mut a = Guest::new(&rig, 0, 1 << 39);
    let mut b = Guest::new(&rig, 1, 1 << 39);
    let a_iova = a.mapper.map(PhysAddr::new(0x1000), PAGE_SIZE, Perm::READ_WRITE).unwrap();
    let mut b_iovas = Vec::new();
    for i in 0..16 {
        let gpa = PhysAddr::new(0x4000 + i * PAGE_SIZE);
        b_iovas.push(b.mapper.map(gpa, PAGE_SIZE, Perm::READ_WRITE).unwrap());
    }
    // B's IOVAs mean nothing to A's device and the other way round.
    for iova in &b_iovas {
        if *iova != a_iova {
            assert!(a.viommu.dma(rig.emu, GUEST_DEVICE, *iova, Access::Read).is_err());
        }
    }

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bv = b.viommu;
    for step in 0..150 {
        // Guest B scribbles on its table and queue frames...
        let at = GUEST_FRAMES + (rng.next() % (16 * PAGE_SIZE)) / 8 * 8;
        let value = match rng.next() % 4 {
            // A leaf or table pointer anywhere in (and beyond) guest RAM,
            // including where the other guest's RAM is in host memory.
            0 => (rng.next() % (4 * GUEST_LOW)) & !0xfff | 3,
            1 => (HIGH_RAM_START + rng.next() % (2 * GUEST_HIGH)) & !0xfff | 3,
            2 => rng.next(),
            _ => 0,
        };
        b.mem.write_u64(PhysAddr::new(at), value).unwrap();
        // ...and invalidates (errors are the guest's problem).
        let scope = match rng.next() % 3 {
            0 => vtd_regs::IotlbScope::Global,
            1 => vtd_regs::IotlbScope::Domain(GUEST_DOMAIN),
            _ => vtd_regs::IotlbScope::pages(GUEST_DOMAIN, b_iovas[step % 16], 0, false).unwrap(),
        };
        let reqs = [
            invalidation::Invalidation::Context(vtd_regs::ContextScope::Global),
            invalidation::Invalidation::Iotlb { scope, drain: vtd_regs::Drain::empty() },
        ];
        let _ = invalidation::Invalidator::invalidate(b.mapper.invalidator(), reqs);
        // Everything B's device reaches is a pinned page of B's own RAM.
        let probes = b_iovas.iter().copied().chain((0..64).map(|p| Iova::new(p << 12)));
        let pinned: BTreeSet<PhysAddr> = bv.with_pinner(|p| p.pinned_frames().collect());
        for iova in probes.chain(bv.shadowed().into_iter().map(|(i, _)| i)) {
            for access in [Access::Read, Access::Write] {
                if let Ok(hpa) = bv.dma(rig.emu, GUEST_DEVICE, iova, access) {
                    let page = hpa.align_down(PAGE_SIZE);
                    assert!(in_windows(1, page), "step {step}: B reached {hpa:?}");
                    assert!(pinned.contains(&page), "step {step}: {hpa:?} is not pinned");
                }
            }
        }
        // A is untouched.
        assert_eq!(
            a.viommu.dma(rig.emu, GUEST_DEVICE, a_iova, Access::Write),
            Ok(a.host_address(0x1000))
        );
    }
    assert_eq!(bv.counters().host_errors, 0);
    assert_eq!(bv.with_pinner(|p| p.unbalanced_unpins()), 0);
}

/// Guest `n`'s host windows.
fn windows(n: u64) -> [(u64, u64); 2] {
    let layout = HostRig::layout(n);
    let low = layout.host_address(PhysAddr::new(0), GUEST_LOW).unwrap().as_u64();
    let high = layout.host_address(PhysAddr::new(HIGH_RAM_START), GUEST_HIGH).unwrap().as_u64();
    [(low, low + GUEST_LOW), (high, high + GUEST_HIGH)]
}

fn in_windows(n: u64, hpa: PhysAddr) -> bool {
    windows(n).iter().any(|(s, e)| (*s..*e).contains(&hpa.as_u64()))
}

/// A guest 2 MiB page backed by contiguous host memory is one 2 MiB page in
/// the host's table (the unit has 2 MiB pages, CAP.SLLPS), also where a
/// 4 KiB page was mapped and unmapped before (the host table keeps that
/// emptied last-level table until a 2 MiB page needs its place).
#[test]
fn a_guest_superpage_is_a_host_superpage() {
    let rig = HostRig::new();
    let g = RawGuest::new(&rig, 0, viommu::ViommuConfig::qemu());
    let mut g = g;
    let iova = Iova::new(0x4000_0000);
    let gpa = PhysAddr::new(0x40_0000);
    let small = vtd_regs::IotlbScope::pages(GUEST_DOMAIN, iova, 0, false).unwrap();
    g.table.map(iova, gpa, vtd_regs::PageSize::Size4KiB, Perm::READ).unwrap();
    g.unit.invalidate_iotlb(small, vtd_regs::Drain::empty()).unwrap();
    let token = g.table.unmap(iova, vtd_regs::PageSize::Size4KiB).unwrap();
    g.unit.invalidate_iotlb(small, vtd_regs::Drain::empty()).unwrap();
    g.table.release(token).unwrap();
    let mut kept = Vec::new();
    g.viommu.for_each_domain(|d| kept.extend(d.table().empty_tables()));
    assert_eq!(kept, [iova]);
    let before = g.viommu.with_backend(|b| b.counters());
    g.table.map(iova, gpa, vtd_regs::PageSize::Size2MiB, Perm::READ_WRITE).unwrap();
    let scope = vtd_regs::IotlbScope::pages(GUEST_DOMAIN, iova, 9, false).unwrap();
    g.unit.invalidate_iotlb(scope, vtd_regs::Drain::empty()).unwrap();
    let counters = g.viommu.with_backend(|b| b.counters());
    let maps = (counters.pins - before.pins, counters.table_maps - before.table_maps);
    assert_eq!(maps, (512, 1));
    let at = Iova::new(iova.as_u64() + 0x1234);
    let hpa = rig.emu.translate(HostRig::host_device(0), at, Access::Write).unwrap();
    assert_eq!(HostRig::guest_address(0, hpa), Some(PhysAddr::new(0x40_1234)));
    let mut sizes = Vec::new();
    g.viommu.for_each_domain(|d| sizes.push(d.table().translate(iova).unwrap().size));
    assert_eq!(sizes, [vtd_regs::PageSize::Size2MiB]);
    g.viommu.for_each_domain(|d| assert_eq!(d.table().empty_tables().count(), 0));
}

/// A shadow domain grows with the guest: 3000 single pages, more than a
/// fixed-capacity store holds, each its own mapping.
#[test]
fn shadow_domains_grow() {
    let rig = HostRig::new();
    let mut g = RawGuest::new(&rig, 0, viommu::ViommuConfig::qemu());
    for i in 0..3000u64 {
        // Every other page, so no two coalesce.
        let iova = Iova::new(0x100_0000 + 2 * i * PAGE_SIZE);
        let gpa = PhysAddr::new(0x10_0000 + i * PAGE_SIZE);
        g.table.map(iova, gpa, vtd_regs::PageSize::Size4KiB, Perm::READ).unwrap();
    }
    g.unit
        .invalidate_iotlb(vtd_regs::IotlbScope::Domain(GUEST_DOMAIN), vtd_regs::Drain::empty())
        .unwrap();
    let c = g.viommu.counters();
    assert_eq!((c.pins, c.map_calls, c.quota_drops), (3000, 3000, 0));
    let last = Iova::new(0x100_0000 + 2 * 2999 * PAGE_SIZE);
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, last, Access::Read).is_ok());
}
