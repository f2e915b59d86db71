//! The vIOMMU under an arbitrary guest: register writes, table and queue
//! contents, invalidations and device DMA in any order. What must hold:
//! - the host: no panic; no page mapped (so pinned) or reached outside
//!   the guest's RAM; the device reaches only pinned pages of the guest;
//!   pins balanced (every page unpinned was pinned, and what is pinned is
//!   what the vIOMMU has mapped);
//! - the guest's own protection: once a guest invalidation of everything
//!   (a global context-cache and IOTLB invalidation) has completed, the
//!   host lets the device reach no IOVA the guest's tables do not map to
//!   that page with that permission (that invariant fails when the
//!   vIOMMU reads the queue apart from the unit, as with IQA address bits
//!   above the host width);
//! - interrupts: every host interrupt route the vIOMMU holds names the
//!   guest's device and a vCPU (APIC 0-3) and vector (16-255) the guest
//!   owns, fixed or lowest priority, edge-triggered, whatever the guest
//!   wrote in its interrupt remapping table (256 entries, interrupt
//!   remapping on from the start; an operation 2 with byte 3 odd writes
//!   the table instead of the DMA tables; the global invalidation of
//!   operation 7 includes the interrupt entry cache).
//!
//! The guest starts brought up (root, context and a 3-level table in its
//! RAM, translation and queued invalidation on); the input is then a
//! sequence of 12-byte operations: byte 0 picks the operation, bytes 1-2
//! (LE) an index, bytes 4-11 (LE) a value. At most [`MAX_OPS`] run.

use std::collections::BTreeSet;
use std::sync::Arc;

use invalidation::QueuedInvalidator;
use viommu::interrupts::{GuestApics, MsiRoutes};
use viommu::{
    Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Native, Viommu, ViommuConfig,
};
use vtd_regs::desc::IecScope;
use vtd_regs::irq::{DeliveryMode, DestinationMode, TriggerMode};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{Access, EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{
    Ccmd, DescriptorWidth, Fsts, Gcmd, GlobalBits, Gsts, IotlbInv, Iqa, Iqt, Irta, Iva, QueueSize,
    Rtaddr, offset,
};
use vtd_regs::{
    ContextScope, Descriptor, DomainId, Drain, IotlbScope, Iova, Mmio, PAGE_SIZE, PhysAddr,
    PhysMem, RawDescriptor, RemappingUnit, SourceId,
};
use vtd_tables::pte::{entry_address, index};
use vtd_tables::{ContextEntry, ContextManager, RootEntry, SlPte, TableConfig, TranslationType};

/// Operations run per input.
const MAX_OPS: usize = 64;

const GUEST_LOW: u64 = 1 << 20;
const GUEST_HIGH: u64 = 64 << 10;
const HIGH_BASE: u64 = 1 << 20;
const HOST_FRAMES: u64 = 2 << 20;
const HOST_RAM: u64 = 3 << 20;
/// Guest frames: root, context table, L3, L2, L1, queue, status.
const ROOT: u64 = 0x8_0000;
const CONTEXT: u64 = 0x8_1000;
const L3: u64 = 0x8_2000;
const L2: u64 = 0x8_3000;
const L1: u64 = 0x8_4000;
const QUEUE: u64 = 0x8_5000;
const STATUS: u64 = 0x8_6000;
/// The guest's interrupt remapping table: one page, 256 entries.
const IRT: u64 = 0x8_7000;
/// The guest's vCPUs: APIC ids 0-3.
const VCPUS: u32 = 4;
const DEVICE: SourceId = SourceId::from_raw(0x0008);

type Mem<'a> = &'a HeapMemory;
type HostUnit<'a> = Emulator<Mem<'a>, 64, 16>;
type Frames<'a> = &'a SimFrameAllocator<Mem<'a>>;
type Backend<'a> = Native<Mem<'a>, Frames<'a>, QueuedInvalidator<&'a HostUnit<'a>, Mem<'a>>, GuestPinner>;
type Routes = MsiRoutes<GuestApics, 256>;
type Vmmu<'a> = Viommu<GuestMemory<Mem<'a>>, Backend<'a>, Routes>;

/// Runs `data` as a guest's behaviour.
pub fn viommu_guest(data: &[u8]) {
    let _ = run(data);
}

/// The host and the guest of one run.
struct Rig<'a> {
    host_unit: &'a HostUnit<'a>,
    v: Vmmu<'a>,
    layout: GuestLayout,
    gmem: GuestMemory<Mem<'a>>,
    /// Wait status tokens handed out.
    token: u32,
}

impl<'a> Rig<'a> {
    fn new(mem: Mem<'a>, frames: Frames<'a>, host_unit: &'a HostUnit<'a>) -> Self {
        let unit = RemappingUnit::new(host_unit).unwrap();
        let tables = TableConfig::from_cap(unit.cap(), 39).unwrap();
        let contexts = ContextManager::new(mem, frames).unwrap();
        let qs = QueueSize::from_order(0).unwrap();
        let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, qs)
            .unwrap();
        let host = Arc::new(Host::new(mem, frames, contexts, inv, tables, DomainId::new(1)));
        let layout = GuestLayout::new(PhysAddr::ZERO, GUEST_LOW)
            .with_high(PhysAddr::new(HIGH_BASE), GUEST_HIGH);
        let gmem = GuestMemory::new(mem, layout);
        let config = ViommuConfig {
            max_pages: 256,
            max_domains: 4,
            scan_budget: 4096,
            ..ViommuConfig::qemu()
        };
        let dev = Assignment { guest: DEVICE, host: DEVICE };
        let backend = Native::new(host, GuestPinner::new(layout));
        let routes = Routes::new(GuestApics::new(VCPUS));
        let v = Viommu::with_interrupts(gmem, backend, routes, &[dev], config).unwrap();
        Rig { host_unit, v, layout, gmem, token: 0 }
    }

    /// The guest's register page.
    fn regs(&self) -> &Vmmu<'a> {
        &self.v
    }

    /// Where the host unit sends the device's `access` at `iova`.
    fn host_dma(&self, iova: Iova, access: Access) -> Option<PhysAddr> {
        self.host_unit.translate(DEVICE, iova, access).ok()
    }
}

/// Runs `data`; returns how many device requests the host unit let through.
fn run(data: &[u8]) -> usize {
    let mut reached = 0;
    let host_mem = HeapMemory::new(HOST_RAM as usize);
    let mem = &host_mem;
    let frames = SimFrameAllocator::new(mem, PhysAddr::new(HOST_FRAMES), PhysAddr::new(HOST_RAM));
    let host_unit: HostUnit<'_> = Emulator::with_caches(mem, EmuConfig::qemu()).unwrap();
    let mut rig = Rig::new(mem, &frames, &host_unit);
    bring_up(&mut rig);
    for op in data.chunks_exact(12).take(MAX_OPS) {
        let idx = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let val = u64::from_le_bytes(op[4..12].try_into().unwrap());
        let mut m = rig.regs();
        match op[0] % 8 {
            0 => m.write32((idx as usize) & 0x3fc, val as u32),
            1 => {
                let _ = m.read32((idx as usize) & 0x3fc);
            }
            2 if op[3] & 1 != 0 => {
                let at = IRT + (idx * 8) % PAGE_SIZE;
                let _ = rig.gmem.write_u64(PhysAddr::new(at), val);
            }
            2 => {
                let at = ROOT + (idx * 8) % (STATUS - ROOT);
                let _ = rig.gmem.write_u64(PhysAddr::new(at), val);
            }
            3 => {
                // A leaf in the last-level table, then a page invalidation.
                let iova = Iova::new((idx % 512) << 12);
                let leaf = SlPte(val & !0x780 | 1);
                let _ = rig.gmem.write_u64(entry_address(PhysAddr::new(L1), index(iova, 1)), leaf.0);
                queue(&rig, idx, iotlb_page(iova));
            }
            4 => queue(&rig, idx, RawDescriptor::new(val, val.rotate_left(29))),
            5 => m.write32(offset::FSTS, Fsts::W1C),
            6 => {
                let iova = Iova::new(val & 0x3f_ffff);
                let access = if idx & 1 == 0 { Access::Read } else { Access::Write };
                if let Some(hpa) = rig.host_dma(iova, access) {
                    reached += 1;
                    let page = hpa.align_down(PAGE_SIZE);
                    let pinned = rig.v.with_backend(|b| b.pinner().pinned_frames().any(|f| f == page));
                    assert!(pinned, "device reached {hpa:?}, not a pinned guest page");
                }
            }
            _ => {
                if sync(&mut rig) {
                    check_guest_protection(&rig, val);
                }
                check_routes(&rig);
            }
        }
    }
    check_host(&rig);
    reached
}

/// Root, context entry, an empty 3-level table, translation and the queue.
fn bring_up(rig: &mut Rig<'_>) {
    let gmem = &rig.gmem;
    let mut m = rig.regs();
    RootEntry::new(PhysAddr::new(CONTEXT)).write(gmem, PhysAddr::new(ROOT), 0).unwrap();
    let ce = ContextEntry::translated(
        DomainId::new(1),
        PhysAddr::new(L3),
        Agaw::Bits39,
        TranslationType::Untranslated,
    );
    ce.write(gmem, PhysAddr::new(CONTEXT), DEVICE).unwrap();
    for (table, next) in [(L3, L2), (L2, L1)] {
        gmem.write_u64(PhysAddr::new(table), SlPte::table(PhysAddr::new(next)).0).unwrap();
    }
    m.write_reg(Rtaddr::new(PhysAddr::new(ROOT), TranslationTableMode::Legacy));
    m.write_reg(Gcmd::from_bits(GlobalBits::SRTP));
    m.write_reg(Gcmd::from_bits(GlobalBits::TE));
    m.write_reg(Iqt(0));
    let iqa = Iqa::new(PhysAddr::new(QUEUE), QueueSize::from_order(0).unwrap(), DescriptorWidth::Bits128);
    m.write_reg(iqa);
    m.write_reg(Gcmd::from_bits(GlobalBits::TE | GlobalBits::QIE));
    let ctx = vtd_regs::desc::ContextCacheInv { scope: ContextScope::Global };
    queue(rig, 0, Descriptor::ContextCache(ctx).encode());
    m.write_reg(Irta::new(PhysAddr::new(IRT), 7, false));
    m.write_reg(Gcmd::from_bits(GlobalBits::TE | GlobalBits::QIE | GlobalBits::SIRTP));
    m.write_reg(Gcmd::from_bits(GlobalBits::TE | GlobalBits::QIE | GlobalBits::IRE));
}

/// Writes `desc` at the slot IQT points at and moves IQT one on (or to
/// `idx`'s slot when bit 15 of `idx` is set).
fn queue(rig: &Rig<'_>, idx: u64, desc: RawDescriptor) {
    let mut m = rig.regs();
    let tail = m.read_reg::<Iqt>().index(DescriptorWidth::Bits128) as u64;
    let slot = if idx & 0x8000 != 0 { idx % 256 } else { tail % 256 };
    let _ = rig.gmem.write_bytes(PhysAddr::new(QUEUE + slot * 16), &desc.to_le_bytes());
    m.write_reg(Iqt::from_index(((slot + 1) % 256) as usize, DescriptorWidth::Bits128));
}

fn iotlb_page(iova: Iova) -> RawDescriptor {
    let scope = IotlbScope::pages(DomainId::new(1), iova, 0, false).unwrap();
    let inv = vtd_regs::desc::IotlbInv { scope, drain: Drain::empty() };
    vtd_regs::Descriptor::Iotlb(inv).encode()
}

/// The guest invalidates everything (context cache and IOTLB, globally),
/// queued with a wait when queued invalidation is on, through the
/// registers when it is off. Whether the invalidation completed.
fn sync(rig: &mut Rig<'_>) -> bool {
    let mut m = rig.regs();
    if Gsts(m.read32(offset::GSTS)).contains(GlobalBits::QIE) {
        rig.token = rig.token.wrapping_add(1);
        let status = PhysAddr::new(STATUS);
        let wait = vtd_regs::desc::WaitDesc::NONE.with_status_write(status, rig.token).unwrap();
        let context = vtd_regs::desc::ContextCacheInv { scope: ContextScope::Global };
        let iotlb = vtd_regs::desc::IotlbInv { scope: IotlbScope::Global, drain: Drain::empty() };
        let iec = Descriptor::Iec(vtd_regs::desc::IecInv { scope: IecScope::Global });
        for d in [Descriptor::from(context), Descriptor::from(iotlb), iec, Descriptor::from(wait)] {
            queue(rig, 0, d.encode());
        }
        rig.gmem.read_u32(status) == Ok(rig.token)
    } else {
        let ecap = rig.v.unit().config().ecap;
        let (iva_at, iotlb_at) = (Iva::offset(ecap), IotlbInv::offset(ecap));
        m.write_reg(Ccmd::invalidate(ContextScope::Global));
        let (iva, iotlb) = IotlbInv::invalidate(IotlbScope::Global, Drain::empty());
        m.write64(iva_at, iva.0);
        m.write64(iotlb_at, iotlb.0);
        !m.read_reg::<Ccmd>().icc() && !IotlbInv(m.read64(iotlb_at)).ivt()
    }
}

/// After a completed global invalidation: every page the host lets the
/// device reach (every page the vIOMMU says it mapped, and a few IOVAs
/// the input picks) the guest's unit translates, through the guest's
/// tables as they are now, to the same page with that permission.
fn check_guest_protection(rig: &Rig<'_>, val: u64) {
    let mut probes: BTreeSet<u64> = (0..8).map(|i| val.rotate_left(8 * i) & 0x3f_f000).collect();
    rig.v.for_each_mapping(|m| {
        probes.extend((0..m.len).step_by(PAGE_SIZE as usize).map(|off| m.iova.as_u64() + off));
    });
    for iova in probes {
        for access in [Access::Read, Access::Write] {
            let Some(hpa) = rig.host_dma(Iova::new(iova), access) else { continue };
            let guest = rig.v.unit().translate(DEVICE, Iova::new(iova), access);
            let host_of = |gpa: PhysAddr| rig.layout.host_address(gpa, 1).ok();
            assert!(
                guest.is_ok_and(|gpa| host_of(gpa) == Some(hpa)),
                "after a completed invalidation the device reaches {hpa:?} at {iova:#x} \
                 ({access:?}); the guest's tables say {guest:?}"
            );
        }
    }
}

/// Every host interrupt route is the guest's device's, to a vCPU and a
/// vector the guest owns, in a mode a device may use.
fn check_routes(rig: &Rig<'_>) {
    rig.v.for_each_route(|device, index, route| {
        assert_eq!(device, Assignment { guest: DEVICE, host: DEVICE });
        let ok = route.vector >= 16
            && route.destination < VCPUS
            && route.destination_mode == DestinationMode::Physical
            && matches!(route.delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority)
            && route.trigger == TriggerMode::Edge;
        assert!(ok, "index {index}: host route {route:?}");
    });
    let mut table: Vec<_> = rig.v.with_routes(|r| r.iter().map(|m| (m.index, m.interrupt)).collect());
    let mut held = Vec::new();
    rig.v.for_each_route(|_, index, route| held.push((index, route)));
    table.sort_by_key(|r| r.0);
    assert_eq!(table, held, "the VMM's table and the vIOMMU disagree");
}

/// The host's invariants: what is mapped is inside the guest and pinned,
/// and pins balance.
fn check_host(rig: &Rig<'_>) {
    check_routes(rig);
    let mut mapped = BTreeSet::new();
    rig.v.for_each_mapping(|m| {
        for off in (0..m.len).step_by(PAGE_SIZE as usize) {
            let gpa = PhysAddr::new(m.gpa.as_u64() + off);
            let host = rig.layout.host_address(gpa, PAGE_SIZE);
            assert!(host.is_ok(), "{gpa:?} is outside the guest");
            mapped.insert(host.unwrap());
        }
    });
    let (pinned, unbalanced) = rig.v.with_backend(|b| {
        (b.pinner().pinned_frames().collect::<BTreeSet<_>>(), b.pinner().unbalanced_unpins())
    });
    assert_eq!(mapped, pinned, "pinned pages are not the mapped ones");
    assert_eq!(unbalanced, 0);
    assert_eq!(rig.v.counters().host_errors, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op;

    #[test]
    fn a_mapped_page_is_reached_and_an_outside_one_is_not() {
        let mut data = op(3, 5, 0x3003);
        data.extend(op(6, 0, 0x5000));
        data.extend(op(6, 1, 0x5000));
        assert_eq!(run(&data), 2);
        let mut data = op(3, 5, 0x20_0003);
        data.extend(op(6, 0, 0x5000));
        assert_eq!(run(&data), 0);
    }

    /// An entry written in the guest's interrupt remapping table becomes
    /// a host route at the next global invalidation; a reserved vector
    /// written over it removes the route.
    #[test]
    fn an_interrupt_entry_becomes_a_route() {
        use vtd_regs::irq::{Interrupt, InterruptMode, RemappedIrte};
        let irq = |vector| {
            let e = RemappedIrte::for_device(DEVICE, Interrupt::fixed(1, vector));
            e.encode(InterruptMode::XApic).unwrap()
        };
        let host_mem = HeapMemory::new(HOST_RAM as usize);
        let frames =
            SimFrameAllocator::new(&host_mem, PhysAddr::new(HOST_FRAMES), PhysAddr::new(HOST_RAM));
        let host_unit: HostUnit<'_> = Emulator::with_caches(&host_mem, EmuConfig::qemu()).unwrap();
        let mut rig = Rig::new(&host_mem, &frames, &host_unit);
        bring_up(&mut rig);
        let at = |i: u64| PhysAddr::new(IRT + 16 + i);
        rig.gmem.write_u64(at(8), irq(0x41).hi()).unwrap();
        rig.gmem.write_u64(at(0), irq(0x41).lo()).unwrap();
        assert!(sync(&mut rig));
        assert_eq!(rig.v.with_routes(|r| r.get(DEVICE, 1)), Some(Interrupt::fixed(1, 0x41)));
        rig.gmem.write_u64(at(0), irq(0x0f).lo()).unwrap();
        assert!(sync(&mut rig));
        assert_eq!(rig.v.with_routes(|r| r.len()), 0);
        check_host(&rig);
    }

    /// The case of issue 14: IQA moved to an address with a bit above the
    /// host width (QI off, IQA high half, QI on), then the guest unmaps a
    /// page it had mapped: after its completed invalidation the device must
    /// not reach it.
    #[test]
    fn a_queue_address_above_the_host_width_keeps_the_guest_protected() {
        let gcmd = |bits: u32| op(0, offset::GCMD as u16, u64::from(bits));
        let te = GlobalBits::TE.bits();
        let mut data = op(3, 5, 0x3003); // map IOVA 0x5000
        data.extend(op(6, 0, 0x5000));
        data.extend(gcmd(te)); // QI off
        data.extend(op(0, offset::IQA as u16 + 4, 1 << 8)); // IQA bit 40
        data.extend(op(0, offset::IQT as u16, 0));
        data.extend(gcmd(te | GlobalBits::QIE.bits())); // QI on
        let leaf = (L1 + 5 * 8 - ROOT) / 8;
        data.extend(op(2, leaf as u16, 0)); // unmap IOVA 0x5000
        data.extend(op(7, 0, 0x5000)); // global invalidation, then check
        data.extend(op(6, 0, 0x5000));
        assert_eq!(run(&data), 1, "reached once, before the unmap");
    }
}
