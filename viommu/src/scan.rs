//! Finding what a second-level table maps in a range of IOVA pages (VT-d
//! §3.7, §9.8), over memory the vIOMMU does not trust.
//!
//! The scan visits only present entries of the part of the table that
//! covers the range, so a page-selective invalidation costs a few reads and
//! a domain-wide one costs what the guest has mapped. Each leaf found is
//! confirmed with `vtd_tables::walk_second_level`, the walker hardware
//! models use, so every check a unit makes (reserved bits, address width,
//! the interrupt range, permissions over all levels) applies to what gets
//! shadowed. The scan is bounded by a budget of entry visits; when the
//! budget runs out the result is a subset of the mappings, which only ever
//! leaves pages unmapped (never maps one the guest did not).

use alloc::collections::BTreeMap;

use vtd_regs::{Iova, PAGE_SHIFT, PhysAddr, PhysMem};
use vtd_tables::pte::{PTES_PER_TABLE, entry_address, leaf_size};
use vtd_tables::{
    Access, ContextInfo, Perm, SlPte, TranslationType, WalkLimits, walk_second_level,
};

/// What an IOVA page translates to: the guest-physical page and the
/// effective permission.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Leaf {
    /// Guest-physical page number.
    pub(crate) page: u64,
    /// Effective permission over all levels.
    pub(crate) perm: Perm,
}

/// The mappings of pages `[first, end)` (IOVA page numbers) of the table of
/// `ctx`, keyed by IOVA page number.
pub(crate) struct Scan<'a, G: ?Sized> {
    mem: &'a G,
    ctx: &'a ContextInfo,
    limits: &'a WalkLimits,
    first: u64,
    end: u64,
    budget: u32,
    /// The budget ran out before the whole range was seen.
    pub(crate) truncated: bool,
    pub(crate) found: BTreeMap<u64, Leaf>,
}

impl<'a, G: PhysMem + ?Sized> Scan<'a, G> {
    /// Scans `[first, end)` of `ctx`'s table with at most `budget` entry
    /// visits. Only translated contexts (TT = 00b) map anything.
    pub(crate) fn run(
        mem: &'a G,
        ctx: &'a ContextInfo,
        limits: &'a WalkLimits,
        (first, end): (u64, u64),
        budget: u32,
    ) -> Self {
        let width = u32::from(ctx.agaw.bits().min(limits.mgaw));
        let pages = 1u64.checked_shl(width.saturating_sub(PAGE_SHIFT)).unwrap_or(u64::MAX);
        let end = end.min(pages);
        let mut s =
            Scan { mem, ctx, limits, first, end, budget, truncated: false, found: BTreeMap::new() };
        if ctx.translation_type == TranslationType::Untranslated && first < end {
            s.visit(ctx.slptptr, ctx.agaw.levels(), 0);
        }
        s
    }

    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            self.truncated = true;
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
            if !self.spend() {
                return;
            }
            let Ok(raw) = self.mem.read_u64(entry_address(table, idx as usize)) else {
                continue;
            };
            let pte = SlPte(raw);
            if !pte.is_present() {
                continue;
            }
            let at = base + (idx << shift);
            let leaf = level == 1 || (pte.is_superpage() && leaf_size(level).is_some());
            if leaf {
                let (from, to) = (self.first.max(at), self.end.min(at.saturating_add(span)));
                for page in from..to {
                    if !self.spend() {
                        return;
                    }
                    self.confirm(page);
                }
            } else if level > 1 {
                self.visit(pte.address(), level - 1, at);
            }
        }
    }

    /// Walks `page` as the unit would and records its translation.
    fn confirm(&mut self, page: u64) {
        let iova = Iova::new(page << PAGE_SHIFT);
        let walk = |a| walk_second_level(self.mem, self.ctx, iova, a, self.limits);
        if let Ok(t) = walk(Access::Read).or_else(|_| walk(Access::Write)) {
            self.found.insert(page, Leaf { page: t.phys.page_number(), perm: t.perm });
        }
    }
}
