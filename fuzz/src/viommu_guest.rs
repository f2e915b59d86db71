//! The vIOMMU under an arbitrary guest: register writes, table and queue
//! contents, invalidations and device DMA in any order. The host must never
//! panic, never pin a page outside the guest's RAM, never let the device
//! reach a host frame that is not a pinned page of the guest, and keep its
//! pin counts balanced.
//!
//! The guest starts brought up (root, context and a 3-level table in its
//! RAM, translation and queued invalidation on); the input is then a
//! sequence of 12-byte operations: byte 0 picks the operation, bytes 1-2
//! (LE) an index, bytes 4-11 (LE) a value. At most [`MAX_OPS`] run.

use std::collections::BTreeSet;

use invalidation::{Invalidator, QueuedInvalidator};
use viommu::{Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Viommu, ViommuConfig};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{Access, EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{DescriptorWidth, Fsts, Gcmd, GlobalBits, Iqa, Iqt, QueueSize, Rtaddr, offset};
use vtd_regs::{
    ContextScope, DomainId, Iova, Mmio, PAGE_SIZE, PhysAddr, PhysMem, RawDescriptor,
    RemappingUnit, SourceId,
};
use vtd_tables::pte::{entry_address, index};
use vtd_tables::{ContextEntry, ContextManager, RootEntry, SlPte, TableConfig, TranslationType};

/// Operations run per input.
const MAX_OPS: usize = 64;

const GUEST_LOW: u64 = 1 << 20;
const GUEST_HIGH: u64 = 64 << 10;
const HIGH_BASE: u64 = 1 << 20;
const HOST_FRAMES: u64 = 2 << 20;
const HOST_RAM: u64 = 4 << 20;
/// Guest frames: root, context table, L3, L2, L1, queue.
const ROOT: u64 = 0x8_0000;
const CONTEXT: u64 = 0x8_1000;
const L3: u64 = 0x8_2000;
const L2: u64 = 0x8_3000;
const L1: u64 = 0x8_4000;
const QUEUE: u64 = 0x8_5000;
const DEVICE: SourceId = SourceId::from_raw(0x0008);

/// Runs `data` as a guest's behaviour.
pub fn viommu_guest(data: &[u8]) {
    let _ = run(data);
}

/// Runs `data`; returns how many device requests the host unit let through.
fn run(data: &[u8]) -> usize {
    let mut reached = 0;
    let host_mem = HeapMemory::new(HOST_RAM as usize);
    let mem = &host_mem;
    let frames = SimFrameAllocator::new(mem, PhysAddr::new(HOST_FRAMES), PhysAddr::new(HOST_RAM));
    let emu = Emulator::<_, 64, 16>::with_caches(mem, EmuConfig::qemu()).unwrap();
    let unit = RemappingUnit::new(&emu).unwrap();
    let tables = TableConfig::from_cap(unit.cap(), 39).unwrap();
    let contexts = ContextManager::new(mem, &frames).unwrap();
    let qs = QueueSize::from_order(0).unwrap();
    let inv =
        QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, &frames, qs).unwrap();
    let host = spin::Mutex::new(Host::new(mem, &frames, contexts, inv, tables, DomainId::new(1)));

    let layout = GuestLayout::new(PhysAddr::ZERO, GUEST_LOW)
        .with_high(PhysAddr::new(HIGH_BASE), GUEST_HIGH);
    let gmem = GuestMemory::new(mem, layout);
    let config = ViommuConfig { max_pages: 256, max_domains: 4, scan_budget: 4096, ..ViommuConfig::qemu() };
    let dev = Assignment { guest: DEVICE, host: DEVICE };
    let v = Viommu::new(gmem, &host, GuestPinner::new(layout), &[dev], config).unwrap();
    bring_up(&gmem, &v);

    for op in data.chunks_exact(12).take(MAX_OPS) {
        let idx = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let val = u64::from_le_bytes(op[4..12].try_into().unwrap());
        let mut m = &v;
        match op[0] % 7 {
            0 => m.write32((idx as usize) & 0x3fc, val as u32),
            1 => {
                let _ = m.read32((idx as usize) & 0x3fc);
            }
            2 => {
                let at = ROOT + (idx * 8) % (QUEUE + PAGE_SIZE - ROOT);
                let _ = gmem.write_u64(PhysAddr::new(at), val);
            }
            3 => {
                // A leaf in the last-level table, then a page invalidation.
                let iova = Iova::new((idx % 512) << 12);
                let leaf = SlPte(val & !0x780 | 1);
                let _ = gmem.write_u64(entry_address(PhysAddr::new(L1), index(iova, 1)), leaf.0);
                queue(&gmem, &v, idx, iotlb_page(iova));
            }
            4 => queue(&gmem, &v, idx, RawDescriptor::new(val, val.rotate_left(29))),
            5 => m.write32(offset::FSTS, Fsts::W1C),
            _ => {
                let iova = Iova::new(val & 0x3f_ffff);
                let access = if idx & 1 == 0 { Access::Read } else { Access::Write };
                if let Ok(hpa) = v.dma(&emu, DEVICE, iova, access) {
                    reached += 1;
                    let page = hpa.align_down(PAGE_SIZE);
                    let pinned = v.with_pinner(|p| p.pinned_frames().any(|f| f == page));
                    assert!(pinned, "device reached {hpa:?}, not a pinned guest page");
                }
            }
        }
        check(&v, &layout);
    }
    reached
}

/// Root, context entry, an empty 3-level table, translation and the queue.
fn bring_up<V: Copy + Mmio>(gmem: &impl PhysMem, v: V) {
    let mut m = v;
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
    queue(gmem, v, 0, vtd_regs::Descriptor::ContextCache(ctx).encode());
}

/// Writes `desc` at the slot IQT points at and moves IQT one on (or to
/// `idx`'s slot when bit 15 of `idx` is set).
fn queue<V: Copy + Mmio>(gmem: &impl PhysMem, v: V, idx: u64, desc: RawDescriptor) {
    let mut m = v;
    let tail = m.read_reg::<Iqt>().index(DescriptorWidth::Bits128) as u64;
    let slot = if idx & 0x8000 != 0 { idx % 256 } else { tail % 256 };
    let _ = gmem.write_bytes(PhysAddr::new(QUEUE + slot * 16), &desc.to_le_bytes());
    m.write_reg(Iqt::from_index(((slot + 1) % 256) as usize, DescriptorWidth::Bits128));
}

fn iotlb_page(iova: Iova) -> RawDescriptor {
    let scope = vtd_regs::IotlbScope::pages(DomainId::new(1), iova, 0, false).unwrap();
    let inv = vtd_regs::desc::IotlbInv { scope, drain: vtd_regs::Drain::empty() };
    vtd_regs::Descriptor::Iotlb(inv).encode()
}

/// The host's invariants: what is shadowed is pinned, inside the guest,
/// and pins balance.
fn check<V: ShadowView>(v: &V, layout: &GuestLayout) {
    let shadowed: BTreeSet<PhysAddr> = v.shadowed_pages();
    let pinned: BTreeSet<PhysAddr> = v.pinned();
    for gpa in &shadowed {
        assert!(layout.host_address(*gpa, PAGE_SIZE).is_ok(), "{gpa:?} is outside the guest");
    }
    let frames: BTreeSet<PhysAddr> =
        shadowed.iter().map(|g| layout.host_address(*g, PAGE_SIZE).unwrap()).collect();
    assert_eq!(frames, pinned, "pinned pages are not the shadowed ones");
    assert_eq!(v.unbalanced(), 0);
}

/// What [`check`] reads from a vIOMMU.
trait ShadowView {
    fn shadowed_pages(&self) -> BTreeSet<PhysAddr>;
    fn pinned(&self) -> BTreeSet<PhysAddr>;
    fn unbalanced(&self) -> u64;
}

impl<G, M, A, I> ShadowView for Viommu<'_, G, M, A, I, GuestPinner>
where
    G: PhysMem,
    M: PhysMem + Clone,
    A: vtd_regs::FrameAllocator + Clone,
    I: Invalidator,
{
    fn shadowed_pages(&self) -> BTreeSet<PhysAddr> {
        self.shadowed().into_iter().map(|(_, g)| g).collect()
    }
    fn pinned(&self) -> BTreeSet<PhysAddr> {
        self.with_pinner(|p| p.pinned_frames().collect())
    }
    fn unbalanced(&self) -> u64 {
        self.with_pinner(|p| p.unbalanced_unpins()) + self.counters().host_errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(k: u8, idx: u16, val: u64) -> Vec<u8> {
        let mut v = vec![k];
        v.extend_from_slice(&idx.to_le_bytes());
        v.push(0);
        v.extend_from_slice(&val.to_le_bytes());
        v
    }

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
}
