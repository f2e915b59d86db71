//! A misbehaving guest gets VT-d errors and faults; the host never panics,
//! never pins a page it should not, and never maps outside the guest.

mod common;

use common::*;
use viommu::ViommuConfig;
use vtd_regs::{DomainId, Drain, IotlbScope, Iova, PAGE_SIZE, PageSize, PhysAddr, PhysMem};
use vtd_tables::{Access, ContextEntry, Perm, TranslationType};

const PAGE: Iova = Iova::new(0x40_0000);

/// Register-based invalidation (no queue) is shadowed too.
#[test]
fn register_invalidation_is_shadowed() {
    let rig = HostRig::new();
    let mut g = RawGuest::new(&rig, 0, ViommuConfig::qemu());
    g.table.map(PAGE, PhysAddr::new(0x3000), PageSize::Size4KiB, Perm::READ).unwrap();
    // Caching mode: not reachable until the guest invalidates.
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read).is_err());
    g.unit
        .invalidate_iotlb(IotlbScope::pages(GUEST_DOMAIN, PAGE, 0, false).unwrap(), Drain::empty())
        .unwrap();
    let hpa = HostRig::layout(0).host_address(PhysAddr::new(0x3000), 1).unwrap();
    assert_eq!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read), Ok(hpa));
    // Unmap, domain-selective invalidation: gone, unpinned.
    let t = g.table.unmap(PAGE, PageSize::Size4KiB).unwrap();
    g.unit.invalidate_iotlb(IotlbScope::Domain(GUEST_DOMAIN), Drain::empty()).unwrap();
    g.table.release(t).unwrap();
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read).is_err());
    assert_eq!(g.viommu.with_pinner(|p| p.pinned_pages()), 0);
    // Detach through a context invalidation: the host blocks the device.
    g.table.map(PAGE, PhysAddr::new(0x3000), PageSize::Size4KiB, Perm::READ).unwrap();
    g.unit.invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read).is_ok());
    let _ = g.contexts.detach(GUEST_DEVICE).unwrap();
    g.unit.invalidate_context(vtd_regs::ContextScope::Global).unwrap();
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read).is_err());
    assert_eq!(g.viommu.with_pinner(|p| p.pinned_pages()), 0, "the domain's pages are unpinned");
}

/// Leaves and table pointers outside the guest's RAM: nothing is pinned or
/// mapped; the device's requests fault.
#[test]
fn pointers_outside_guest_ram_are_never_followed() {
    let rig = HostRig::new();
    let mut g = RawGuest::new(&rig, 0, ViommuConfig::qemu());
    // A leaf beyond low RAM (where guest 1's RAM is in host memory).
    g.table.map(PAGE, PhysAddr::new(GUEST_LOW), PageSize::Size4KiB, Perm::READ).unwrap();
    g.unit.invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read).is_err());
    assert_eq!(g.viommu.with_pinner(|p| p.pinned_pages()), 0);
    assert_eq!(g.viommu.counters().outside_ram, 1);
    // A context entry whose table is outside guest RAM.
    let root = g.contexts.root_table();
    let ctx_table = PhysAddr::new(g.mem.read_u64(root).unwrap() & !0xfff);
    let bad = ContextEntry::translated(
        DomainId::new(2),
        PhysAddr::new(1 << 36),
        vtd_regs::regs::cap::Agaw::Bits39,
        TranslationType::Untranslated,
    );
    bad.write(&g.mem, ctx_table, GUEST_DEVICE).unwrap();
    g.unit.invalidate_context(vtd_regs::ContextScope::Global).unwrap();
    g.unit.invalidate_iotlb(IotlbScope::Global, Drain::empty()).unwrap();
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read).is_err());
    assert_eq!(g.viommu.with_pinner(|p| p.pinned_pages()), 0);
    // The guest's unit reports the fault its tables cause.
    let records: Vec<_> = g.unit.drain_faults().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].reason(), Some(vtd_regs::FaultReason::PagingEntryAccess));
    assert_eq!(g.viommu.counters().host_errors, 0);
}

/// The page quota bounds what a guest can pin.
#[test]
fn page_quota_bounds_pins() {
    let rig = HostRig::new();
    let config = ViommuConfig { max_pages: 4, ..ViommuConfig::qemu() };
    let mut g = RawGuest::new(&rig, 0, config);
    // One 2 MiB guest page: 512 small pages to shadow.
    g.table
        .map(Iova::new(0x20_0000), PhysAddr::new(0x20_0000), PageSize::Size2MiB, Perm::READ)
        .unwrap();
    g.unit.invalidate_iotlb(IotlbScope::Domain(GUEST_DOMAIN), Drain::empty()).unwrap();
    assert_eq!(g.viommu.with_pinner(|p| p.pinned_pages()), 4);
    assert_eq!(g.viommu.counters().quota_drops, 508);
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, Iova::new(0x20_0000), Access::Read).is_ok());
    assert!(g.viommu.dma(rig.emu, GUEST_DEVICE, Iova::new(0x3f_f000), Access::Read).is_err());
}

/// A malformed descriptor: the descriptors before it are shadowed and
/// completed, the guest gets IQE, nothing after it runs until the guest
/// fixes it and clears IQE, and then it is shadowed too.
#[test]
fn malformed_descriptor_gives_iqe() {
    let rig = HostRig::new();
    let mut g = RawGuest::new(&rig, 0, ViommuConfig::qemu());
    g.enable_queue();
    let second = Iova::new(PAGE.as_u64() + PAGE_SIZE);
    g.table.map(PAGE, PhysAddr::new(0x3000), PageSize::Size4KiB, Perm::READ).unwrap();
    g.table.map(second, PhysAddr::new(0x4000), PageSize::Size4KiB, Perm::READ).unwrap();
    let status = PhysAddr::new(0x8000);
    let garbage = vtd_regs::RawDescriptor::new(0x7f, 0);
    g.submit(&[
        RawGuest::iotlb_page(PAGE),
        garbage,
        RawGuest::iotlb_page(second),
        RawGuest::wait(status, 1),
    ]);
    let v = g.viommu;
    assert!(v.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read).is_ok());
    assert!(v.dma(rig.emu, GUEST_DEVICE, second, Access::Read).is_err());
    assert_eq!(g.mem.read_u32(status), Ok(0), "no completion past the bad descriptor");
    let err = g.unit.take_queue_error().expect("IQE");
    assert_eq!(err.queue, Some(vtd_regs::regs::QueueErrorInfo::InvalidType));
    // take_queue_error cleared IQE, so the unit fetched the bad slot again.
    assert!(g.unit.take_queue_error().is_some(), "still malformed");
    // Fix the slot (a harmless wait) and clear IQE again.
    let (frame, _) = g.queue.unwrap();
    let fixed = RawGuest::wait(PhysAddr::new(0x8008), 2);
    g.mem.write_bytes(PhysAddr::new(frame.as_u64() + 16), &fixed.to_le_bytes()).unwrap();
    use vtd_regs::Mmio;
    let mut m = v;
    m.write32(vtd_regs::regs::offset::FSTS, vtd_regs::regs::Fsts(0).with_iqe(true).0);
    assert_eq!(g.mem.read_u32(status), Ok(1));
    assert!(v.dma(rig.emu, GUEST_DEVICE, second, Access::Read).is_ok());
}

/// Queue and status addresses outside guest RAM: errors for the guest, and
/// nothing for the host to do.
#[test]
fn queue_outside_guest_ram() {
    let rig = HostRig::new();
    let mut g = RawGuest::new(&rig, 0, ViommuConfig::qemu());
    let iqa = vtd_regs::regs::Iqa::new(
        PhysAddr::new(GUEST_LOW),
        vtd_regs::regs::QueueSize::from_order(0).unwrap(),
        vtd_regs::regs::DescriptorWidth::Bits128,
    );
    g.unit.enable_queued_invalidation(iqa).unwrap();
    let before = g.viommu.counters().invalidations_shadowed;
    g.unit.write_queue_tail(3).unwrap();
    let err = g.unit.take_queue_error().expect("fetch error");
    assert_eq!(err.queue, Some(vtd_regs::regs::QueueErrorInfo::FetchError));
    assert_eq!(g.viommu.counters().invalidations_shadowed, before);
    assert_eq!(g.viommu.with_pinner(|p| p.pinned_pages()), 0);
}

/// A guest's 64-bit store to IQT (Linux's `writeq`) is one emulated access
/// that runs the queue: the invalidation is shadowed and the wait's status
/// written before the access returns.
#[test]
fn a_64_bit_tail_write_is_one_access() {
    let rig = HostRig::new();
    let mut g = RawGuest::new(&rig, 0, ViommuConfig::qemu());
    g.enable_queue();
    g.table.map(PAGE, PhysAddr::new(0x3000), PageSize::Size4KiB, Perm::READ).unwrap();
    let (frame, _) = g.queue.unwrap();
    let status = PhysAddr::new(frame.as_u64() + 0x800);
    for (i, d) in [RawGuest::iotlb_page(PAGE), RawGuest::wait(status, 7)].iter().enumerate() {
        g.mem.write_bytes(PhysAddr::new(frame.as_u64() + 16 * i as u64), &d.to_le_bytes()).unwrap();
    }
    let before = g.viommu.counters().register_accesses;
    g.viommu.write_register64(vtd_regs::regs::offset::IQT, 2 << 4);
    assert_eq!(g.viommu.counters().register_accesses, before + 1);
    assert_eq!(g.mem.read_u32(status), Ok(7));
    assert_eq!(g.viommu.read_register64(vtd_regs::regs::offset::IQH), 2 << 4);
    let hpa = HostRig::layout(0).host_address(PhysAddr::new(0x3000), 1).unwrap();
    assert_eq!(g.viommu.dma(rig.emu, GUEST_DEVICE, PAGE, Access::Read), Ok(hpa));
}
