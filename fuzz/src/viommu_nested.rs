//! The nested vIOMMU under an arbitrary guest: register writes, scalable-mode
//! table, PASID and queue contents, first-stage maps and unmaps,
//! invalidations and device DMA at any PASID in any order. What must hold:
//! - the host: no panic; the device's DMA, with or without a PASID, lands
//!   only in the guest's RAM (the second stage confines every first-stage
//!   table and page the guest names); all guest RAM stays pinned, no more;
//!   no host operation fails;
//! - the guest's own protection: once a guest invalidation of everything
//!   (global context-cache, PASID-cache and IOTLB invalidations) has
//!   completed, the host lets the device reach a page only where the
//!   guest's unit, walking the guest's tables as they are now, translates
//!   the same request to that page.
//!
//! The guest starts brought up by this workspace's drivers (scalable-mode
//! root and context tables, a PASID table whose PASIDs 0 and 1 use
//! first-stage tables, a 256-bit invalidation queue, translation on); the
//! input is then a sequence of 12-byte operations: byte 0 picks the
//! operation, bytes 1-2 (LE) an index, bytes 4-11 (LE) a value. At most
//! [`MAX_OPS`] run.

use std::collections::BTreeSet;
use std::sync::Arc;

use invalidation::{Invalidation, Invalidator, QueuedInvalidator};
use viommu::nested::{NativeNested, NestedConfig, NestedHost, NestedIommu, NestedViommu};
use viommu::{Assignment, GuestLayout, GuestMemory, GuestPinner};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{Access, EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::{
    ContextCacheInv, IotlbInv, Pasid, PasidCacheInv, PasidCacheScope, WaitDesc,
};
use vtd_regs::regs::{GlobalBits, Gsts, Iqa, Iqt, QueueSize, offset};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{
    ContextScope, Descriptor, DomainId, Drain, Iova, IotlbScope, Mmio, PAGE_SIZE, PageSize, PhysAddr,
    PhysMem, PollBudget, RemappingUnit, SourceId,
};
use vtd_tables::{
    PasidAttachment, PasidTable, Perm, ScalableContextManager, SlPageTable, TableConfig,
};

/// Operations run per input.
const MAX_OPS: usize = 64;

/// Host RAM: the guest's at `GUEST_BASE`, the host's frames above.
const HOST_RAM: u64 = 8 << 20;
const HOST_FRAMES: u64 = 4 << 20;
const GUEST_BASE: u64 = 2 << 20;
/// Guest RAM: data below `GUEST_FRAMES`, the driver's frames above.
const GUEST_RAM: u64 = 2 << 20;
const GUEST_FRAMES: u64 = 1 << 20;
/// The status word of the harness's own invalidation waits: guest RAM the
/// input's writes do not reach.
const STATUS: u64 = GUEST_FRAMES - 0x1000;
/// The part of the driver's frames hostile writes land in (where its
/// tables, PASID table and queue are).
const HOSTILE_SPAN: u64 = 64 << 10;
const GUEST_DEVICE: SourceId = SourceId::from_raw(0x0008);
const HOST_DEVICE: SourceId = SourceId::from_raw(0x0110);
const DOMAIN: DomainId = DomainId::new(1);

type Mem<'a> = &'a HeapMemory;
type Frames<'a> = &'a SimFrameAllocator<Mem<'a>>;
type HostUnit<'a> = Emulator<Mem<'a>>;
type HostInv<'a> = QueuedInvalidator<&'a HostUnit<'a>, Mem<'a>>;
type Backend<'a> = NativeNested<Mem<'a>, Frames<'a>, HostInv<'a>, GuestPinner>;
type GMem<'a> = GuestMemory<Mem<'a>>;
type GFrames<'v, 'm> = &'v SimFrameAllocator<GMem<'m>>;
type Vmmu<'a> = NestedViommu<GMem<'a>, Backend<'a>>;
type GuestInv<'v, 'm> = QueuedInvalidator<&'v Vmmu<'m>, GMem<'m>>;
type GuestTable<'v, 'm> = SlPageTable<GMem<'m>, GFrames<'v, 'm>>;

/// Runs `data` as a guest's behaviour.
pub fn viommu_nested(data: &[u8]) {
    let _ = run(data);
}

/// The host and the guest of one run.
struct Rig<'v, 'm> {
    host_unit: &'m HostUnit<'m>,
    v: &'v Vmmu<'m>,
    gmem: GMem<'m>,
    inv: GuestInv<'v, 'm>,
    /// The first-stage tables of PASIDs 0 (RID_PASID) and 1.
    tables: [GuestTable<'v, 'm>; 2],
    /// IOVAs the guest mapped.
    mapped: BTreeSet<u64>,
    /// Wait status tokens handed out by [`sync`].
    token: u32,
}

impl Rig<'_, '_> {
    /// The device's DMA at `iova` with `pasid` (none: RID_PASID), on the
    /// host unit.
    fn host_dma(&self, pasid: Option<Pasid>, iova: Iova, access: Access) -> Option<PhysAddr> {
        self.host_unit.translate_pasid(HOST_DEVICE, pasid, false, iova, access).ok()
    }
}

/// A PASID of 0-2, or none, from `idx`.
fn pasid_of(idx: u64) -> Option<Pasid> {
    (idx % 4 != 3).then(|| Pasid::new((idx % 4) as u32).unwrap())
}

/// Runs `data`; returns how many device requests the host unit let through
/// and how many of the guest's global invalidations completed.
fn run(data: &[u8]) -> (usize, usize) {
    let host_mem = HeapMemory::new(HOST_RAM as usize);
    let mem = &host_mem;
    let frames = SimFrameAllocator::new(mem, PhysAddr::new(HOST_FRAMES), PhysAddr::new(HOST_RAM));
    let host_unit: HostUnit<'_> = Emulator::new(mem, EmuConfig::scalable()).unwrap();
    let host = host(mem, &frames, &host_unit);
    let layout = GuestLayout::new(PhysAddr::new(GUEST_BASE), GUEST_RAM);
    let gmem = GuestMemory::new(mem, layout);
    let ram = [PhysAddr::ZERO..PhysAddr::new(GUEST_RAM)];
    let backend = NativeNested::new(host, GuestPinner::new(layout), ram).unwrap();
    let devices = [Assignment { guest: GUEST_DEVICE, host: HOST_DEVICE }];
    let v = NestedViommu::new(gmem, backend, &devices, NestedConfig::new()).unwrap();
    let gframes =
        SimFrameAllocator::new(gmem, PhysAddr::new(GUEST_FRAMES), PhysAddr::new(GUEST_RAM));
    let mut rig = bring_up(&host_unit, &v, gmem, &gframes);
    let (mut reached, mut synced) = (0, 0);
    for op in data.chunks_exact(12).take(MAX_OPS) {
        let idx = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let val = u64::from_le_bytes(op[4..12].try_into().unwrap());
        let mut m = rig.v;
        match op[0] % 8 {
            0 => m.write32((idx as usize) & 0xffc, val as u32),
            1 => {
                let _ = m.read32((idx as usize) & 0xffc);
            }
            2 => {
                let at = GUEST_FRAMES + (idx * 8) % HOSTILE_SPAN;
                let _ = rig.gmem.write_u64(PhysAddr::new(at), val);
            }
            3 => map(&mut rig, idx, val),
            4 => {
                let iova = Iova::new(val & 0x7f_f000);
                let t = &mut rig.tables[(idx & 1) as usize];
                // The token is dropped: its frames leak, never reused.
                let _ = t.unmap(iova, PageSize::Size4KiB);
            }
            5 => invalidate(&mut rig, idx, val),
            6 => {
                let iova = Iova::new(val & 0x7f_ffff);
                let access = if idx & 4 == 0 { Access::Read } else { Access::Write };
                if let Some(hpa) = rig.host_dma(pasid_of(idx), iova, access) {
                    reached += 1;
                    let guest = GUEST_BASE..GUEST_BASE + GUEST_RAM;
                    assert!(guest.contains(&hpa.as_u64()), "device reached {hpa:?}, not guest RAM");
                }
            }
            _ => {
                if sync(&mut rig) {
                    synced += 1;
                    check_guest_protection(&rig, val);
                }
            }
        }
    }
    check_host(&rig);
    (reached, synced)
}

/// The host: a scalable-mode unit with nesting, its context table, queue
/// and translation on.
fn host<'a>(
    mem: Mem<'a>,
    frames: Frames<'a>,
    unit: &'a HostUnit<'a>,
) -> Arc<NestedHost<Mem<'a>, Frames<'a>, HostInv<'a>>> {
    let unit = RemappingUnit::new(unit).unwrap();
    let tables = TableConfig::from_cap(unit.cap(), 39).unwrap();
    let size = QueueSize::from_order(0).unwrap();
    let mut inv = QueuedInvalidator::new(unit, mem, frames, size).map_err(|r| r.error).unwrap();
    let contexts = ScalableContextManager::new(mem, frames).unwrap();
    inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).unwrap();
    inv.unit().enable_translation().unwrap();
    Arc::new(NestedHost::new(mem, frames, contexts, inv, tables, DomainId::new(1)))
}

/// The guest's drivers bring its unit up: PASIDs 0 and 1 first-stage, the
/// device's context scalable, translation on.
fn bring_up<'v, 'm>(
    host_unit: &'m HostUnit<'m>,
    v: &'v Vmmu<'m>,
    gmem: GMem<'m>,
    frames: GFrames<'v, 'm>,
) -> Rig<'v, 'm> {
    // The unit answers at once or never: a short poll.
    let unit = RemappingUnit::with_budget(v, PollBudget::new(4)).unwrap();
    let size = QueueSize::from_order(0).unwrap();
    let mut inv = QueuedInvalidator::new(unit, gmem, frames, size).map_err(|r| r.error).unwrap();
    let cfg = TableConfig::first_stage(false, true, 39, true).unwrap();
    let tables = [(); 2].map(|()| SlPageTable::new(gmem, frames, cfg).unwrap());
    let mut contexts = ScalableContextManager::new(gmem, frames).unwrap();
    let mut pasids = PasidTable::new(gmem, frames).unwrap();
    for (p, table) in tables.iter().enumerate() {
        let pasid = Pasid::new(p as u32).unwrap();
        let _new = pasids.set(pasid, PasidAttachment::table(DOMAIN, table)).unwrap();
    }
    let change = contexts.attach(GUEST_DEVICE, &pasids, Pasid::default(), true).unwrap();
    inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).unwrap();
    inv.invalidate(Invalidation::scalable_context_changed(change.sid)).unwrap();
    inv.unit().enable_translation().unwrap();
    // PASID 1 is nested once the guest says its entry changed.
    inv.invalidate(Invalidation::pasid_changed(DOMAIN, Pasid::new(1).unwrap(), true)).unwrap();
    // The managers go out of scope here; their tables stay in guest RAM
    // (a manager frees nothing when dropped), where the input writes.
    Rig { host_unit, v, gmem, inv, tables, mapped: BTreeSet::new(), token: 0 }
}

/// A first-stage map in table `idx & 1`: a 4 KiB page (or a 2 MiB one
/// when bit 1 of `idx` is set) at an IOVA below 8 MiB onto a guest page
/// below 3 MiB (the last MiB is not guest RAM), with the permission of
/// `val`'s top bits.
fn map(rig: &mut Rig<'_, '_>, idx: u64, val: u64) {
    let (size, mask) = if idx & 2 == 0 {
        (PageSize::Size4KiB, 0xfff)
    } else {
        (PageSize::Size2MiB, 0x1f_ffff)
    };
    let iova = (val & 0x7f_ffff) & !mask;
    let gpa = ((val >> 24) % (3 << 20)) & !mask;
    let perm = match val >> 62 {
        0 | 1 => Perm::READ,
        2 => Perm::WRITE,
        _ => Perm::READ_WRITE,
    };
    let t = &mut rig.tables[(idx & 1) as usize];
    if t.map(Iova::new(iova), PhysAddr::new(gpa), size, perm).is_ok() {
        rig.mapped.insert(iova);
    }
}

/// What the guest's driver posts (ignoring failures: a hostile guest may
/// have broken its own queue): page-selective PASID-based IOTLB
/// invalidations, a PASID entry changed, the context changed.
fn invalidate(rig: &mut Rig<'_, '_>, idx: u64, val: u64) {
    let pasid = pasid_of(idx >> 2).unwrap_or_default();
    let _ = match idx % 3 {
        0 => {
            let at = Iova::new(val & 0x7f_f000);
            let range = at..Iova::new(at.as_u64() + PAGE_SIZE);
            let owed: Vec<_> = Invalidation::pasid_pages(DOMAIN, pasid, &range, 0, idx & 8 != 0)
                .collect();
            rig.inv.invalidate(owed)
        }
        1 => rig.inv.invalidate(Invalidation::pasid_changed(DOMAIN, pasid, true)),
        _ => rig.inv.invalidate(Invalidation::scalable_context_changed(GUEST_DEVICE)),
    };
}

/// The guest invalidates everything (context and PASID caches, IOTLB,
/// globally) and waits: the descriptors written where the unit's IQA and
/// IQT registers say, the wait's status in a word of guest RAM the input
/// cannot write (the driver's own status word may be scribbled over, and
/// would then fake a completion). Whether the invalidation completed.
fn sync(rig: &mut Rig<'_, '_>) -> bool {
    let m = rig.v;
    if !Gsts(m.read_register(offset::GSTS)).contains(GlobalBits::QIE) {
        return false;
    }
    let iqa = Iqa(m.read_register64(offset::IQA));
    let width = iqa.width();
    rig.token = rig.token.wrapping_add(1);
    let status = PhysAddr::new(STATUS);
    let Ok(wait) = WaitDesc::NONE.with_status_write(status, rig.token) else { return false };
    let iotlb = IotlbInv { scope: IotlbScope::Global, drain: Drain::empty() };
    let all = [
        Descriptor::ContextCache(ContextCacheInv { scope: ContextScope::Global }),
        Descriptor::PasidCache(PasidCacheInv { scope: PasidCacheScope::Global }),
        Descriptor::Iotlb(iotlb),
        Descriptor::Wait(wait),
    ];
    let entries = iqa.entries();
    let mut tail = Iqt(m.read_register64(offset::IQT)).index(width) % entries;
    let _ = rig.gmem.write_u32(status, 0);
    for d in all {
        let mut slot = [0u8; 32];
        let bytes = &mut slot[..width.bytes()];
        let at = iqa.base().as_u64() + (tail * width.bytes()) as u64;
        if d.write(width, bytes).is_err() || rig.gmem.write_bytes(PhysAddr::new(at), bytes).is_err() {
            return false;
        }
        tail = (tail + 1) % entries;
    }
    m.write_register64(offset::IQT, Iqt::from_index(tail, width).0);
    rig.gmem.read_u32(status) == Ok(rig.token)
}

/// After a completed global invalidation: every page the host lets the
/// device reach at the IOVAs the guest mapped (and a few the input picks),
/// with each PASID, is the page the guest's unit translates the same
/// request to, through the guest's tables as they are now.
fn check_guest_protection(rig: &Rig<'_, '_>, val: u64) {
    let mut probes: BTreeSet<u64> = (0..4).map(|i| val.rotate_left(16 * i) & 0x7f_f000).collect();
    probes.extend(rig.mapped.iter().flat_map(|&iova| [iova, iova + 0x1000]));
    for iova in probes {
        for pasid in [None, Some(0), Some(1), Some(2)].map(|p| p.and_then(Pasid::new)) {
            for access in [Access::Read, Access::Write] {
                let iova = Iova::new(iova);
                let Some(hpa) = rig.host_dma(pasid, iova, access) else { continue };
                let guest = rig.v.unit().translate_pasid(GUEST_DEVICE, pasid, false, iova, access);
                assert!(
                    guest.is_ok_and(|gpa| gpa.as_u64() + GUEST_BASE == hpa.as_u64()),
                    "after a completed invalidation the device reaches {hpa:?} at {iova:?} \
                     ({pasid:?}, {access:?}); the guest's tables say {guest:?}"
                );
            }
        }
    }
}

/// The host's invariants: all guest RAM pinned, no host operation failed.
fn check_host(rig: &Rig<'_, '_>) {
    assert_eq!(rig.v.with_backend(|b| b.pinned_pages()), GUEST_RAM / PAGE_SIZE);
    assert_eq!(rig.v.counters().host_errors, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op;

    #[test]
    fn a_mapped_page_is_reached_until_the_guest_invalidates_its_unmap() {
        // PASID 0's table maps IOVA 0x5000 -> guest 0x3000, read-write.
        let mut data = op(3, 0, (3 << 62) | (0x3000 << 24) | 0x5000);
        // Reached without a PASID (RID_PASID) and with PASID 0; not with 1.
        data.extend(op(6, 3, 0x5000));
        data.extend(op(6, 0, 0x5000));
        data.extend(op(6, 1, 0x5000));
        assert_eq!(run(&data), (2, 0));
        // Unmapped: still reached until invalidated (as on hardware)...
        data.extend(op(4, 0, 0x5000));
        data.extend(op(6, 3, 0x5000));
        assert_eq!(run(&data).0, 3);
        // ... and not after the guest's PASID-based invalidation.
        data.extend(op(5, 0, 0x5000));
        data.extend(op(6, 3, 0x5000));
        data.extend(op(7, 0, 0));
        assert_eq!(run(&data), (3, 1));
    }

    #[test]
    fn a_page_outside_guest_ram_is_not_reached() {
        let data = [op(3, 0, (3 << 62) | ((2 << 20) << 24) | 0x6000), op(6, 3, 0x6000)].concat();
        assert_eq!(run(&data), (0, 0));
    }

    #[test]
    fn the_seeds_replay() {
        let seeds = seeds();
        assert!(seeds.iter().all(|s| run(s).1 > 0), "every seed's invalidation completes");
        assert!(seeds.iter().any(|s| run(s).0 > 0));
    }

    /// Seeds for the corpus: map, reach, unmap, invalidate, sync, in a few
    /// orders, with hostile writes mixed in.
    fn seeds() -> Vec<Vec<u8>> {
        let map = op(3, 0, (3 << 62) | (0x3000 << 24) | 0x5000);
        let map1 = op(3, 1, (2 << 62) | (0x8000 << 24) | 0x9000);
        let big = op(3, 2, (3 << 62) | ((1 << 20) << 24) | 0x20_0000);
        let dma = op(6, 3, 0x5000);
        let dma1 = op(6, 5, 0x9000);
        let unmap = op(4, 0, 0x5000);
        let inv = op(5, 0, 0x5000);
        let sync = op(7, 0, 0x5000);
        let hostile = op(2, 0x200, 0xdead_beef_0000_0fff);
        vec![
            [map.clone(), dma.clone(), unmap.clone(), inv.clone(), dma.clone(), sync.clone()].concat(),
            [map1, dma1.clone(), op(5, 5, 0), dma1, sync.clone()].concat(),
            [big, op(6, 3, 0x20_1000), sync.clone()].concat(),
            [map, hostile, op(5, 2, 0), dma, sync].concat(),
        ]
    }

    /// Writes the seeds into `corpus/viommu_nested/` (run once, by hand:
    /// `cargo test -p viommu-fuzz write_seeds -- --ignored`).
    #[test]
    #[ignore]
    fn write_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/viommu_nested");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
}
