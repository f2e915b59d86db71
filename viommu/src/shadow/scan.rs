//! Finding what a second-level table maps in a range of IOVA pages (VT-d
//! §3.7, §9.8), over memory the vIOMMU does not trust, as runs a backend
//! maps in one call each.
//!
//! The scan visits only present entries of the part of the table that
//! covers the range, so a page-selective invalidation costs a few reads and
//! a domain-wide one costs what the guest has mapped. Each leaf found is
//! confirmed with `vtd_tables::walk_second_level_any` (the walker hardware
//! models use, for a read or a write, in one walk), so every check a unit
//! makes (reserved bits, address width, the interrupt range, permissions
//! over all levels) applies to what gets shadowed; one walk serves every
//! page of a leaf, as they share its path.
//! Consecutive leaves mapping contiguous guest-physical memory with one
//! permission become one run, split where a RAM region of the guest ends;
//! pages outside the guest's RAM are left out (and counted). The scan is
//! bounded by a budget of entry visits; when it runs out the runs found
//! are those of a prefix of the range, which only ever leaves pages
//! unmapped (never maps one the guest did not).

use vtd_regs::{Iova, PAGE_SHIFT, PhysAddr};
use vtd_tables::pte::{PTES_PER_TABLE, entry_address, leaf_size};
use vtd_tables::{ContextInfo, Perm, SlPte, TranslationType, WalkLimits, walk_second_level_any};

use crate::guest_mem::GuestRam;

/// Pages `[iova, iova + pages)` (page numbers) translate to guest pages
/// `[gpa, gpa + pages)` with `perm`, all in one RAM region of the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Run {
    pub(crate) iova: u64,
    pub(crate) pages: u64,
    pub(crate) gpa: u64,
    pub(crate) perm: Perm,
}

impl Run {
    /// The first IOVA page after the run.
    pub(crate) fn end(&self) -> u64 {
        self.iova + self.pages
    }
}

/// What a scan saw besides its runs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scanned {
    /// The budget ran out: only runs below this IOVA page were found.
    pub(crate) truncated_at: Option<u64>,
    /// Pages the table maps outside the guest's RAM (left out).
    pub(crate) outside_ram: u64,
}

/// Runs being built: the one that may still grow, and where its RAM region
/// ends.
struct Builder<'e, E> {
    open: Option<(Run, u64)>,
    emit: &'e mut E,
}

impl<E: FnMut(Run)> Builder<'_, E> {
    /// Adds `pages` pages from IOVA page `iova` onto guest page `gpa`, in
    /// the RAM region ending at page `region_end`.
    fn push(&mut self, iova: u64, pages: u64, gpa: u64, perm: Perm, region_end: u64) {
        if let Some((run, end)) = &mut self.open
            && run.end() == iova
            && run.gpa + run.pages == gpa
            && run.perm == perm
            && *end == region_end
        {
            run.pages += pages;
            return;
        }
        self.flush();
        self.open = Some((Run { iova, pages, gpa, perm }, region_end));
    }

    fn flush(&mut self) {
        if let Some((run, _)) = self.open.take() {
            (self.emit)(run);
        }
    }
}

/// Walks `ctx`'s table over IOVA pages `[first, end)` of a guest whose RAM
/// is `mem`, with at most `budget` entry visits; calls `emit` with each run
/// in ascending IOVA order. Only translated contexts (TT = 00b) map
/// anything.
pub(crate) fn scan<G: GuestRam + ?Sized>(
    mem: &G,
    ctx: &ContextInfo,
    limits: &WalkLimits,
    (first, end): (u64, u64),
    budget: u32,
    emit: &mut impl FnMut(Run),
) -> Scanned {
    let width = u32::from(ctx.agaw.bits().min(limits.mgaw));
    let pages = 1u64.checked_shl(width.saturating_sub(PAGE_SHIFT)).unwrap_or(u64::MAX);
    let end = end.min(pages);
    let mut s = Scan {
        mem,
        ctx,
        limits,
        first,
        end,
        budget,
        seen: Scanned::default(),
        runs: Builder { open: None, emit },
    };
    if ctx.translation_type == TranslationType::Untranslated && first < end {
        if end - first == 1 {
            // One page (a page-selective invalidation of a 4 KiB map or
            // unmap): its walk is the whole scan.
            s.leaf(first, end);
        } else {
            s.visit(ctx.slptptr, ctx.agaw.levels(), 0);
        }
    }
    s.runs.flush();
    s.seen
}

/// Identity runs over the guest's RAM in IOVA pages `[first, end)`, read
/// and write: what a pass-through context (or translation off) lets a
/// device reach.
pub(crate) fn identity<G: GuestRam + ?Sized>(
    mem: &G,
    (first, end): (u64, u64),
    emit: &mut impl FnMut(Run),
) {
    let mut page = first;
    while page < end {
        let Some(region) = mem.ram_from(PhysAddr::new(page << PAGE_SHIFT)) else {
            return;
        };
        let from = page.max(region.start.page_number());
        if from >= end {
            return;
        }
        let to = end.min(region.end.page_number());
        emit(Run { iova: from, pages: to - from, gpa: from, perm: Perm::READ_WRITE });
        page = to;
    }
}

struct Scan<'a, 'e, G: ?Sized, E> {
    mem: &'a G,
    ctx: &'a ContextInfo,
    limits: &'a WalkLimits,
    first: u64,
    end: u64,
    budget: u32,
    seen: Scanned,
    runs: Builder<'e, E>,
}

impl<G: GuestRam + ?Sized, E: FnMut(Run)> Scan<'_, '_, G, E> {
    /// Spends one entry visit; `false` (and the scan stops at IOVA page
    /// `at`) when the budget is spent.
    fn spend(&mut self, at: u64) -> bool {
        if self.seen.truncated_at.is_some() {
            return false;
        }
        if self.budget == 0 {
            self.seen.truncated_at = Some(at);
            return false;
        }
        self.budget -= 1;
        true
    }

    /// Visits the table at `level` whose first entry maps IOVA page `base`.
    fn visit(&mut self, table: PhysAddr, level: u8, base: u64) {
        let shift = 9 * (u32::from(level) - 1);
        let span = 1u64.checked_shl(shift).unwrap_or(u64::MAX);
        let lo = self.first.max(base).saturating_sub(base) >> shift;
        let hi = (self.end.saturating_sub(base)).div_ceil(span).min(PTES_PER_TABLE as u64);
        for idx in lo..hi {
            let at = base + (idx << shift);
            if !self.spend(self.first.max(at)) {
                return;
            }
            let Ok(raw) = self.mem.read_u64(entry_address(table, idx as usize)) else {
                continue;
            };
            let pte = SlPte(raw);
            if !pte.is_present() {
                continue;
            }
            let leaf = level == 1 || (pte.is_superpage() && leaf_size(level).is_some());
            if leaf {
                let (from, to) = (self.first.max(at), self.end.min(at.saturating_add(span)));
                self.leaf(from, to);
            } else if level > 1 {
                self.visit(pte.address(), level - 1, at);
            }
        }
    }

    /// Walks the leaf covering IOVA pages `[from, to)` as the unit would
    /// (once: its pages share the path) and adds its pages in RAM; nothing
    /// if the walk faults (not mapped, or refused as the unit refuses it).
    fn leaf(&mut self, from: u64, to: u64) {
        if !self.spend(from) {
            return;
        }
        let iova = Iova::new(from << PAGE_SHIFT);
        let Ok(t) = walk_second_level_any(self.mem, self.ctx, iova, self.limits) else {
            return;
        };
        let (mut page, mut gpa) = (from, t.phys.page_number());
        while page < to {
            let n = to - page;
            match self.mem.ram_from(PhysAddr::new(gpa << PAGE_SHIFT)) {
                Some(r) if r.start.page_number() <= gpa => {
                    let region_end = r.end.page_number();
                    let k = n.min(region_end - gpa);
                    self.runs.push(page, k, gpa, t.perm, region_end);
                    (page, gpa) = (page + k, gpa + k);
                }
                other => {
                    // Not RAM up to the next region (or at all).
                    let gap = other.map_or(n, |r| n.min(r.start.page_number() - gpa));
                    self.seen.outside_ram += gap;
                    (page, gpa) = (page + gap, gpa + gap);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use vtd_emu::mem::HeapMemory;
    use vtd_regs::regs::cap::Agaw;
    use vtd_regs::{DomainId, PageSize, PhysMem};
    use vtd_tables::pte::index;

    use super::*;
    use crate::guest_mem::{GuestLayout, GuestMemory};

    const L3: u64 = 0x10_0000;
    const L2: u64 = 0x10_1000;
    const L1: u64 = 0x10_2000;

    fn rig() -> (GuestMemory<HeapMemory>, ContextInfo, WalkLimits) {
        rig_of(4 << 20)
    }

    /// `ram` bytes of guest RAM with a 3-level table at 1 MiB.
    fn rig_of(ram: u64) -> (GuestMemory<HeapMemory>, ContextInfo, WalkLimits) {
        let mem = GuestMemory::new(HeapMemory::new(4 << 20), GuestLayout::new(PhysAddr::ZERO, ram));
        for (t, n) in [(L3, L2), (L2, L1)] {
            mem.write_u64(PhysAddr::new(t), SlPte::table(PhysAddr::new(n)).0).unwrap();
        }
        let ctx = ContextInfo {
            domain: DomainId::new(1),
            translation_type: TranslationType::Untranslated,
            agaw: Agaw::Bits39,
            slptptr: PhysAddr::new(L3),
            fpd: false,
        };
        let cfg = vtd_emu::EmuConfig::qemu();
        let limits = WalkLimits::new(cfg.cap, cfg.ecap, 39);
        (mem, ctx, limits)
    }

    fn leaf(mem: &impl PhysMem, page: u64, gpa: u64, perm: Perm) {
        let iova = Iova::new(page << 12);
        let e = SlPte::leaf(PhysAddr::new(gpa << 12), perm, PageSize::Size4KiB);
        mem.write_u64(entry_address(PhysAddr::new(L1), index(iova, 1)), e.0).unwrap();
    }

    fn runs(
        mem: &GuestMemory<HeapMemory>,
        ctx: &ContextInfo,
        limits: &WalkLimits,
        range: (u64, u64),
        budget: u32,
    ) -> (Vec<Run>, Scanned) {
        let mut out = Vec::new();
        let seen = scan(mem, ctx, limits, range, budget, &mut |r| out.push(r));
        (out, seen)
    }

    #[test]
    fn contiguous_leaves_with_one_permission_make_one_run() {
        let (mem, ctx, limits) = rig();
        for p in 0..4 {
            leaf(&mem, 16 + p, 0x200 + p, Perm::READ);
        }
        leaf(&mem, 20, 0x204, Perm::READ_WRITE); // another permission
        leaf(&mem, 21, 0x300, Perm::READ_WRITE); // not contiguous
        leaf(&mem, 23, 0x2000, Perm::READ); // outside the 4 MiB of RAM
        let (r, seen) = runs(&mem, &ctx, &limits, (0, 512), 1 << 20);
        let run = |iova, pages, gpa, perm| Run { iova, pages, gpa, perm };
        assert_eq!(
            r,
            [
                run(16, 4, 0x200, Perm::READ),
                run(20, 1, 0x204, Perm::READ_WRITE),
                run(21, 1, 0x300, Perm::READ_WRITE)
            ]
        );
        assert_eq!(seen.outside_ram, 1);
        assert_eq!(seen.truncated_at, None);
        // Clipped to the range asked.
        let (r, _) = runs(&mem, &ctx, &limits, (17, 19), 1 << 20);
        assert_eq!(r, [run(17, 2, 0x201, Perm::READ)]);
        // A small budget stops early, at the page it could not look at.
        let (r, seen) = runs(&mem, &ctx, &limits, (0, 512), 20);
        assert!(r.iter().all(|x| x.end() <= seen.truncated_at.unwrap()));
        assert!(seen.truncated_at.is_some());
    }

    #[test]
    fn a_superpage_is_one_run_split_at_the_end_of_ram() {
        // 3 MiB of RAM: 2 MiB at IOVA 2 MiB onto guest 0..2 MiB is one run
        // of 512 pages; 2 MiB at IOVA 4 MiB onto guest 2..4 MiB is half RAM.
        let (mem, ctx, limits) = rig_of(3 << 20);
        for (iova, gpa, perm) in [(2, 0, Perm::READ_WRITE), (4, 2, Perm::READ)] {
            let iova = Iova::new(iova << 20);
            let e = SlPte::leaf(PhysAddr::new(gpa << 20), perm, PageSize::Size2MiB);
            mem.write_u64(entry_address(PhysAddr::new(L2), index(iova, 2)), e.0).unwrap();
        }
        let (r, seen) = runs(&mem, &ctx, &limits, (0, 4096), 1 << 20);
        let run = |iova, pages, gpa, perm| Run { iova, pages, gpa, perm };
        assert_eq!(r, [run(512, 512, 0, Perm::READ_WRITE), run(1024, 256, 512, Perm::READ)]);
        assert_eq!(seen.outside_ram, 256);
    }

    #[test]
    fn identity_covers_the_ram_in_range() {
        let layout = GuestLayout::new(PhysAddr::ZERO, 0x4000).with_high(PhysAddr::ZERO, 0x2000);
        let mem = GuestMemory::new(HeapMemory::new(0x4000), layout);
        let mut out = Vec::new();
        identity(&mem, (2, u64::MAX), &mut |r| out.push(r));
        let high = crate::HIGH_RAM_START >> 12;
        assert_eq!(
            out,
            [
                Run { iova: 2, pages: 2, gpa: 2, perm: Perm::READ_WRITE },
                Run { iova: high, pages: 2, gpa: high, perm: Perm::READ_WRITE },
            ]
        );
    }
}
