//! A guest that programs its vIOMMU the way Linux's `intel-iommu` driver
//! (6.1, the kernel of Debian 12) does on a unit in caching mode, replayed
//! as raw register accesses and raw descriptors, with the assigned
//! device's reach through the host unit checked after every step.
//!
//! The sequences follow the driver's source: `dmar_enable_qi` (IQT, IQA,
//! GCMD.QIE), `iommu_set_irq_remapping` (IRTA, SIRTP, a global interrupt
//! entry cache flush, IRE), `iommu_set_root_entry` (RTADDR, SRTP, then a
//! global context and a global IOTLB invalidation), `iommu_enable_translation`
//! (TE), `domain_context_mapping_one` (in caching mode: a device-selective
//! context flush with domain id 0, then a domain-selective IOTLB flush),
//! `__mapping_notify_one` (in caching mode a page-selective flush after every
//! map) and `iommu_flush_iotlb_psi`, whose address mask widens until the
//! aligned block covers the range while the address keeps its low bits (so
//! 8 KiB unmapped at 0x203000 goes out as qw0 0x400f2, qw1 0x203003), falling
//! back to a domain-selective flush beyond CAP.MAMV. Every request is
//! `qi_submit_sync`: the descriptor, then a wait with a status write and
//! the fence flag, one 32-bit IQT write, and a poll of the status in memory
//! (and of FSTS for errors). Drain bits are set as CAP.DRD/DWD allow;
//! unmaps set IH; interrupt entries are flushed index-selectively.
#![cfg(feature = "alloc")]

mod common;

use common::*;
use viommu::ViommuConfig;
use vtd_regs::regs::offset;
use vtd_regs::{Iova, Mmio, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::Access;

/// Guest frames the replay uses (all in the guest's low RAM, above the
/// data pages).
const QUEUE: u64 = 0x80_0000;
const STATUS: u64 = 0x80_1000;
const ROOT: u64 = 0x81_0000;
const CONTEXT: u64 = 0x81_1000;
const L3: u64 = 0x81_2000;
const L2: u64 = 0x81_3000;
/// Level-1 tables, one per 2 MiB of IOVA from 0.
const L1: u64 = 0x81_4000;
/// The interrupt remapping table: 2^16 entries of 16 bytes (IRTA.S = 0xf).
const IR_TABLE: u64 = 0xa0_0000;
/// The domain id Linux gives the device's domain (0 is reserved in caching
/// mode).
const DID: u64 = 4;

/// Linux's `QI_DONE` and `QI_IN_USE` status values.
const QI_DONE: u32 = 2;
const QI_IN_USE: u32 = 1;
/// GCMD/GSTS bits.
const TE: u32 = 1 << 31;
const SRTP: u32 = 1 << 30;
const QIE: u32 = 1 << 26;
const IRE: u32 = 1 << 25;
const SIRTP: u32 = 1 << 24;

/// Linux's driver state for one unit: its copy of GCMD and its queue.
struct Linux {
    v: &'static Vmmu,
    mem: GMem,
    gcmd: u32,
    free_head: u64,
    /// Descriptors submitted (each with its wait).
    submitted: u64,
    cap: u64,
}

impl Linux {
    fn new(v: &'static Vmmu, mem: GMem) -> Self {
        let cap = v.read64(offset::CAP);
        Linux { v, mem, gcmd: 0, free_head: 0, submitted: 0, cap }
    }

    fn readl(&self, off: usize) -> u32 {
        self.v.read32(off)
    }

    fn writel(&self, off: usize, value: u32) {
        let mut regs = self.v;
        regs.write32(off, value)
    }

    /// `dmar_writeq`: one 64-bit access (low half, then high half).
    fn writeq(&self, off: usize, value: u64) {
        let mut regs = self.v;
        regs.write64(off, value)
    }

    /// `IOMMU_WAIT_OP` on GSTS.
    fn wait_status(&self, bit: u32, set: bool) {
        for _ in 0..1000 {
            if (self.readl(offset::GSTS) & bit != 0) == set {
                return;
            }
        }
        panic!("GSTS bit {bit:#x} never became {set}");
    }

    /// `writel(iommu->gcmd | cmd, GCMD)` for a one-shot command, then the
    /// wait for its status bit.
    fn one_shot(&self, cmd: u32) {
        self.writel(offset::GCMD, self.gcmd | cmd);
        self.wait_status(cmd, true);
    }

    /// `iommu->gcmd |= bit; writel(gcmd)` and the wait.
    fn enable(&mut self, bit: u32) {
        self.gcmd |= bit;
        self.writel(offset::GCMD, self.gcmd);
        self.wait_status(bit, true);
    }

    /// `__dmar_enable_qi`: a one-page queue of 256 128-bit descriptors.
    fn enable_qi(&mut self) {
        self.writeq(offset::IQT, 0);
        self.writeq(offset::IQA, QUEUE);
        self.enable(QIE);
    }

    /// `qi_submit_sync` of one descriptor: it, then a wait with status
    /// write and fence, one IQT write, and the poll for `QI_DONE`.
    fn submit(&mut self, qw0: u64, qw1: u64) {
        let index = self.free_head;
        let wait_index = (index + 1) % 256;
        let status = STATUS + wait_index * 4;
        self.mem.write_u32(PhysAddr::new(status), QI_IN_USE).unwrap();
        let wait = (u64::from(QI_DONE) << 32) | 1 << 6 | 1 << 5 | 5;
        for (slot, (lo, hi)) in [(index, (qw0, qw1)), (wait_index, (wait, status))] {
            let at = QUEUE + slot * 16;
            self.mem.write_u64(PhysAddr::new(at), lo).unwrap();
            self.mem.write_u64(PhysAddr::new(at + 8), hi).unwrap();
        }
        self.free_head = (wait_index + 1) % 256;
        self.writel(offset::IQT, (self.free_head << 4) as u32);
        for _ in 0..1000 {
            if self.mem.read_u32(PhysAddr::new(status)).unwrap() == QI_DONE {
                self.submitted += 1;
                return;
            }
            let fsts = self.readl(offset::FSTS);
            assert_eq!(fsts & 0x70, 0, "queue error (FSTS {fsts:#x}) on {qw0:#x} {qw1:#x}");
        }
        panic!("wait for {qw0:#x} {qw1:#x} never completed");
    }

    /// `qi_global_iec`.
    fn global_iec(&mut self) {
        self.submit(4, 0);
    }

    /// `qi_flush_iec(iommu, index, mask)`: index-selective.
    fn flush_iec(&mut self, index: u64, mask: u64) {
        self.submit(index << 32 | mask << 27 | 1 << 4 | 4, 0);
    }

    /// `qi_flush_context`: granularity 1 global, 3 device-selective.
    fn flush_context(&mut self, did: u64, sid: u64, gran: u64) {
        self.submit(sid << 32 | did << 16 | gran << 4 | 1, 0);
    }

    /// `qi_flush_iotlb` with the drains the unit supports: granularity 1
    /// global, 2 domain, 3 page-selective (`addr` may carry IH in bit 6).
    fn flush_iotlb(&mut self, did: u64, addr: u64, am: u64, gran: u64) {
        let dr = u64::from(self.cap >> 55 & 1 == 1) << 7;
        let dw = u64::from(self.cap >> 54 & 1 == 1) << 6;
        self.submit(did << 16 | dr | dw | gran << 4 | 2, addr | am);
    }

    /// `iommu_flush_iotlb_psi(iommu, domain, pfn, pages, ih, map)` of 6.1.
    fn flush_psi(&mut self, pfn: u64, pages: u64, ih: bool) {
        let aligned = pages.next_power_of_two();
        let mut mask = u64::from(aligned.trailing_zeros());
        let bitmask = aligned - 1;
        if bitmask & pfn != 0 {
            let end = pfn + pages - 1;
            let shared = !(pfn ^ end) & !bitmask;
            mask = if shared != 0 { u64::from(shared.trailing_zeros()) } else { 64 };
        }
        let mamv = self.cap >> 48 & 0x3f;
        if mask > mamv {
            self.flush_iotlb(DID, 0, 0, 2);
        } else {
            self.flush_iotlb(DID, pfn << 12 | u64::from(ih) << 6, mask, 3);
        }
    }

    /// Writes the leaf of IOVA page `pfn` (read + write) to guest page
    /// `gpfn`, building the path to it; or clears it.
    fn set_pte(&self, pfn: u64, gpfn: Option<u64>) {
        let table = L1 + (pfn >> 9) * PAGE_SIZE;
        let l2e = L2 + ((pfn >> 9) & 0x1ff) * 8;
        self.mem.write_u64(PhysAddr::new(l2e), table | 3).unwrap();
        self.mem.write_u64(PhysAddr::new(L3), L2 | 3).unwrap();
        let leaf = gpfn.map_or(0, |g| g << 12 | 3);
        self.mem.write_u64(PhysAddr::new(table + (pfn & 0x1ff) * 8), leaf).unwrap();
    }

    /// Maps `pages` IOVA pages from `pfn` to guest pages from `gpfn`, then
    /// the caching-mode flush.
    fn map(&mut self, pfn: u64, gpfn: u64, pages: u64) {
        for i in 0..pages {
            self.set_pte(pfn + i, Some(gpfn + i));
        }
        self.flush_psi(pfn, pages, false);
    }

    /// Unmaps `pages` IOVA pages from `pfn`, strict: cleared, then flushed
    /// with IH (only leaves changed).
    fn unmap(&mut self, pfn: u64, pages: u64) {
        for i in 0..pages {
            self.set_pte(pfn + i, None);
        }
        self.flush_psi(pfn, pages, true);
    }
}

/// Where the device's read of IOVA page `pfn` lands, as a guest page
/// number; `None` when the host unit blocks it.
fn reach(rig: &HostRig, v: &Vmmu, pfn: u64) -> Option<u64> {
    let hpa = v.dma(rig.emu, GUEST_DEVICE, Iova::new(pfn << 12), Access::Read).ok()?;
    let base = HostRig::layout(0).host_address(PhysAddr::ZERO, 1).unwrap().as_u64();
    Some((hpa.as_u64() - base) >> 12)
}

/// Asserts the device reaches exactly `expected` (IOVA page, guest page)
/// among `probe`, and nothing else of it.
#[track_caller]
fn assert_reach(rig: &HostRig, v: &Vmmu, probe: &[u64], expected: &[(u64, u64)], step: &str) {
    for &pfn in probe {
        let want = expected.iter().find(|(i, _)| *i == pfn).map(|(_, g)| *g);
        assert_eq!(reach(rig, v, pfn), want, "{step}: IOVA page {pfn:#x}");
    }
}

#[test]
fn a_linux_guest_in_caching_mode() {
    let rig = HostRig::new();
    let v = rig.viommu(0, ViommuConfig::qemu());
    let mem = viommu::GuestMemory::new(rig.mem, HostRig::layout(0));
    let mut linux = Linux::new(v, mem);
    let probe = [0x100, 0x101, 0x203, 0x204, 0x205, 0x400, 0x43f, 0x440, 0x1000];
    let none: &[(u64, u64)] = &[];

    // What the driver checks first: caching mode, queued invalidation,
    // interrupt remapping, PSI.
    assert!(linux.cap & 1 << 7 != 0, "CAP.CM");
    let ecap = v.read64(offset::ECAP);
    assert!(ecap & 0b1010 == 0b1010, "ECAP.QI and ECAP.IR");
    assert!(linux.cap & 1 << 39 != 0, "CAP.PSI");
    assert_reach(&rig, v, &probe, none, "reset");

    linux.enable_qi();
    assert_reach(&rig, v, &probe, none, "QI on");

    // Interrupt remapping: the table, SIRTP, a global IEC flush, IRE.
    linux.writeq(offset::IRTA, IR_TABLE | 0xf);
    linux.one_shot(SIRTP);
    linux.global_iec();
    linux.enable(IRE);
    assert_eq!(linux.readl(offset::GSTS) & (QIE | IRE), QIE | IRE);
    assert_reach(&rig, v, &probe, none, "IR on");

    // The root table (an empty context table behind bus 0), SRTP, and the
    // global flushes that follow it.
    mem.write_u64(PhysAddr::new(ROOT), CONTEXT | 1).unwrap();
    linux.writeq(offset::RTADDR, ROOT);
    linux.one_shot(SRTP);
    linux.flush_context(0, 0, 1);
    linux.flush_iotlb(0, 0, 0, 1);
    linux.enable(TE);
    assert_reach(&rig, v, &probe, none, "TE on, no context entry");

    // Attach 00:01.0 to domain 4 (3-level table at L3): the context entry,
    // then in caching mode the device-selective flush with DID 0 and the
    // domain-selective IOTLB flush.
    let sid = u64::from(GUEST_DEVICE.raw());
    let entry = CONTEXT + (sid & 0xff) * 16;
    mem.write_u64(PhysAddr::new(entry + 8), DID << 8 | 1).unwrap();
    mem.write_u64(PhysAddr::new(entry), L3 | 1).unwrap();
    linux.flush_context(0, sid, 3);
    linux.flush_iotlb(DID, 0, 0, 2);
    assert_reach(&rig, v, &probe, none, "attached, nothing mapped");

    // A one-page map: PSI with AM 0.
    linux.map(0x100, 0x300, 1);
    assert_reach(&rig, v, &probe, &[(0x100, 0x300)], "one page");
    // Two pages at 0x203: Linux sends AM 3 with the address 0x203000.
    linux.map(0x203, 0x500, 2);
    let mapped = [(0x100, 0x300), (0x203, 0x500), (0x204, 0x501)];
    assert_reach(&rig, v, &probe, &mapped, "two pages, unaligned PSI");
    // 64 pages at 0x400: AM 6, aligned; and one more page after it.
    linux.map(0x400, 0x600, 64);
    linux.map(0x440, 0x700, 1);
    let mut more = mapped.to_vec();
    more.extend([(0x400, 0x600), (0x43f, 0x63f), (0x440, 0x700)]);
    assert_reach(&rig, v, &probe, &more, "64 pages, AM 6");

    // Interrupt entries change: an index-selective IEC flush (4 entries
    // from 0x20) changes nothing for DMA.
    linux.flush_iec(0x20, 2);
    assert_reach(&rig, v, &probe, &more, "IEC");

    // Strict unmaps with IH: one page of the unaligned pair (0x204, AM 0),
    // then the other, 0x203.
    linux.unmap(0x204, 1);
    let after: Vec<(u64, u64)> = more.iter().copied().filter(|(i, _)| *i != 0x204).collect();
    assert_reach(&rig, v, &probe, &after, "unmapped 0x204");
    linux.unmap(0x203, 1);
    let after: Vec<(u64, u64)> = after.iter().copied().filter(|(i, _)| *i != 0x203).collect();
    assert_reach(&rig, v, &probe, &after, "unmapped 0x203");
    // Part of the 64-page range, unaligned: 3 pages at 0x43e (AM 7 covers
    // 0x400..0x47f, including 0x440, which stays mapped).
    linux.unmap(0x43e, 3);
    let after: Vec<(u64, u64)> =
        after.iter().copied().filter(|(i, _)| !(0x43e..0x441).contains(i)).collect();
    assert_reach(&rig, v, &probe, &after, "unmapped 0x43e..=0x440");
    assert_eq!(reach(&rig, v, 0x43d), Some(0x63d), "the rest of the range stays");
    assert_eq!(reach(&rig, v, 0x401), Some(0x601));

    // A flush wider than MAMV (2^19 pages) falls back to domain-selective:
    // map one page, and unmap a range that needs AM 19.
    let mamv = linux.cap >> 48 & 0x3f;
    assert_eq!(mamv, 18);
    linux.map(0x1000, 0x800, 1);
    assert_eq!(reach(&rig, v, 0x1000), Some(0x800));
    for i in 0..0x40 {
        linux.set_pte(0x400 + i, None);
    }
    linux.set_pte(0x1000, None);
    linux.flush_psi(0x7_ffff, 2, true);
    assert_reach(&rig, v, &probe, &[(0x100, 0x300)], "domain-selective fallback");

    // Detach: the entry cleared, a device-selective context flush with the
    // domain's id and a domain-selective IOTLB flush.
    mem.write_u64(PhysAddr::new(entry), 0).unwrap();
    mem.write_u64(PhysAddr::new(entry + 8), 0).unwrap();
    linux.flush_context(DID, sid, 3);
    linux.flush_iotlb(DID, 0, 0, 2);
    assert_reach(&rig, v, &probe, none, "detached");

    // Every request completed without a queue error, and the host holds no
    // pin of the guest any more.
    assert_eq!(linux.readl(offset::FSTS) & 0x70, 0);
    assert!(linux.submitted > 15);
    assert_eq!(v.with_pinner(|p| p.pinned_pages()), 0);
    let c = v.counters();
    assert_eq!(c.host_errors, 0, "{c:?}");
}
