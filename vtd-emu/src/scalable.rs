//! Scalable-mode translation (VT-d §3.4.3, §3.6–§3.8, §6.2.1–§6.2.4): what
//! the unit does with a request while RTADDR.TTM = 01b on a unit with
//! ECAP.SMTS, and the three caches it keeps for it.
//!
//! - a scalable-mode context cache, by source id (§6.2.1);
//! - a PASID cache, by source id and PASID, holding validated PASID
//!   entries (§6.2.2): a PASID entry software changed keeps being used
//!   until a PASID-cache invalidation (descriptor type 7) of its domain
//!   and PASID (or global) drops it;
//! - an IOTLB of scalable-mode translations, tagged with the domain, the
//!   PASID and the translation type (§6.2.3): first-stage and nested
//!   translations go with a PASID-based IOTLB invalidation of their PASID
//!   (type 6); second-stage, pass-through and (as their second stage may
//!   have changed) nested ones with an IOTLB invalidation of their domain
//!   (type 2, page-selective dropping every nested translation of the
//!   domain, whose guest-physical addresses it cannot tell). A global
//!   IOTLB invalidation drops everything.
//!
//! The caches have fixed capacities ([`CONTEXTS`], [`PASIDS`],
//! [`TRANSLATIONS`]), used up to the configuration's context-cache and
//! IOTLB sizes. Walks are [`vtd_tables::walk::scalable`]'s: bounded, and
//! faulting with Appendix A's scalable-mode reasons; a fault records the
//! request's PASID (FRCD.PP, PV). Not modelled: caching mode's
//! not-present entries in scalable mode (a vIOMMU in scalable mode nests
//! instead of shadowing), second-stage A/D (SSADE), execute requests,
//! page requests.

use vtd_regs::desc::{Pasid, PasidCacheScope, PasidIotlbInv, PasidIotlbScope};
use vtd_regs::regs::FaultType;
use vtd_regs::regs::GlobalBits;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{
    ContextScope, DomainId, FaultReason, IotlbScope, Iova, PageSize, PhysAddr, PhysMem, SourceId,
};
use vtd_tables::Access;
use vtd_tables::scalable::PasidTranslationType;
use vtd_tables::walk::{
    PasidInfo, PasidTranslation, Request, ScalableContextInfo, ScalableLimits, effective_pasid,
    lookup_pasid, lookup_scalable_context, walk_pasid,
};

use crate::cache::{CacheKey, CacheStats, SetAssoc, mix};
use crate::config::EmuConfig;
use crate::emulator::{Emulator, State};
use crate::fault_log::Fault;
use crate::hook::Hook;

/// Scalable-mode context entries cached at most.
pub const CONTEXTS: usize = 16;
/// PASID entries cached at most.
pub const PASIDS: usize = 32;
/// Scalable-mode translations cached at most.
pub const TRANSLATIONS: usize = 64;

/// A PASID-cache key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct PasidKey(SourceId, Pasid);

impl CacheKey for PasidKey {
    fn hash(&self) -> u64 {
        mix(u64::from(self.0.raw()) | u64::from(self.1.raw()) << 16)
    }
}

/// A scalable-mode IOTLB key: domain, PASID, page size and page number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tag {
    domain: DomainId,
    pasid: Pasid,
    size: PageSize,
    page: u64,
}

impl Tag {
    fn of(domain: DomainId, pasid: Pasid, iova: Iova, size: PageSize) -> Self {
        Self { domain, pasid, size, page: iova.as_u64() >> size.shift() }
    }

    /// Whether the page overlaps `[addr, addr + 2^(12 + order))`.
    fn overlaps(&self, addr: Iova, order: u8) -> bool {
        let (start, end) = (self.page << self.size.shift(), (self.page + 1) << self.size.shift());
        let (s, e) = (addr.as_u64(), addr.as_u64().saturating_add(1 << (12 + u32::from(order))));
        start < e && s < end
    }
}

impl CacheKey for Tag {
    fn hash(&self) -> u64 {
        mix(self.page
            ^ u64::from(self.domain.raw()) << 48
            ^ u64::from(self.pasid.raw()) << 28
            ^ (self.size as u64) << 62)
    }
}

/// A cached translation and the translation type of the entry it came by.
type Cached = (PasidTranslation, PasidTranslationType);

/// The scalable-mode half of the unit: its limits and caches.
#[derive(Debug)]
pub(crate) struct ScalableState {
    limits: ScalableLimits,
    contexts: SetAssoc<SourceId, ScalableContextInfo, CONTEXTS>,
    pasids: SetAssoc<PasidKey, PasidInfo, PASIDS>,
    iotlb: SetAssoc<Tag, Cached, TRANSLATIONS>,
}

impl ScalableState {
    pub(crate) fn new(cfg: &EmuConfig) -> Self {
        let haw = cfg.host_address_width.bits();
        let ways = |entries: usize, ways: usize| ways.min(entries.max(1));
        Self {
            limits: ScalableLimits::new(cfg.cap, cfg.ecap, haw),
            contexts: SetAssoc::new(
                cfg.context_cache_entries,
                ways(CONTEXTS, cfg.context_cache_ways),
            ),
            pasids: SetAssoc::new(cfg.context_cache_entries, ways(PASIDS, cfg.context_cache_ways)),
            iotlb: SetAssoc::new(cfg.iotlb_entries, ways(TRANSLATIONS, cfg.iotlb_ways)),
        }
    }

    /// A context-cache invalidation: scalable-mode context entries carry
    /// no domain id, so a domain-selective one drops them all.
    pub(crate) fn invalidate_contexts(&mut self, scope: ContextScope) {
        self.contexts.invalidate(|sid, _| match scope {
            ContextScope::Global | ContextScope::Domain(_) => true,
            ContextScope::Device { source, function_mask, .. } => {
                function_mask.matches(source, *sid)
            }
        });
    }

    /// An IOTLB invalidation (type 2 or IOTLB_REG), as the module docs say.
    pub(crate) fn invalidate_iotlb(&mut self, scope: IotlbScope) {
        self.iotlb.invalidate(|tag, (_, pgtt)| match scope {
            IotlbScope::Global => true,
            IotlbScope::Domain(d) => tag.domain == d && *pgtt != PasidTranslationType::FirstStage,
            IotlbScope::Pages { domain, addr, order, .. } => {
                tag.domain == domain
                    && match pgtt {
                        PasidTranslationType::Nested => true,
                        PasidTranslationType::FirstStage => false,
                        _ => tag.overlaps(addr, order),
                    }
            }
        });
    }

    /// A PASID-based IOTLB invalidation (type 6).
    pub(crate) fn invalidate_pasid_iotlb(&mut self, inv: PasidIotlbInv) {
        self.iotlb.invalidate(|tag, _| {
            tag.domain == inv.domain
                && tag.pasid == inv.pasid
                && match inv.scope {
                    PasidIotlbScope::Pasid => true,
                    PasidIotlbScope::Pages { addr, order, .. } => tag.overlaps(addr, order),
                }
        });
    }

    /// A PASID-cache invalidation (type 7).
    pub(crate) fn invalidate_pasids(&mut self, scope: PasidCacheScope) {
        self.pasids.invalidate(|key, info| match scope {
            PasidCacheScope::Global => true,
            PasidCacheScope::Domain(d) => info.domain == d,
            PasidCacheScope::Pasid { domain, pasid } => info.domain == domain && key.1 == pasid,
        });
    }

    /// Entries held: contexts, PASID entries, translations.
    pub(crate) fn lens(&self) -> (usize, usize, usize) {
        (self.contexts.len(), self.pasids.len(), self.iotlb.len())
    }

    /// Statistics of the IOTLB.
    pub(crate) fn iotlb_stats(&self) -> CacheStats {
        self.iotlb.stats
    }
}

impl<const I: usize, const C: usize, H> State<I, C, H> {
    /// Whether requests are translated in scalable mode: translation on,
    /// a scalable-mode root table latched, on a unit with ECAP.SMTS.
    pub(crate) fn scalable_active(&self) -> bool {
        self.gsts.contains(GlobalBits::TE)
            && self.cfg.ecap.smts()
            && self.root.mode() == Some(TranslationTableMode::Scalable)
    }

    /// Translates `req` to `iova` from `source` in scalable mode: context,
    /// PASID entry and translation, each from its cache or a walk. The
    /// error is the fault and the PASID the request carried.
    pub(crate) fn translate_scalable<M: PhysMem>(
        &mut self,
        mem: &M,
        source: SourceId,
        iova: Iova,
        req: Request,
    ) -> Result<PhysAddr, Fault> {
        let kind = match req.access {
            Access::Read => FaultType::Read,
            Access::Write => FaultType::Write,
        };
        let fault = |reason| Fault { source, addr: iova, reason, kind };
        match self.walk_scalable(mem, source, iova, &req) {
            Ok(t) => {
                let offset = iova.as_u64() & (t.size.bytes() - 1);
                Ok(PhysAddr::new(t.page_phys().as_u64() | offset))
            }
            Err((reason, fpd)) => {
                let f = fault(reason);
                if !fpd {
                    self.log_pasid(&f, req.pasid);
                }
                Err(f)
            }
        }
    }

    /// The translation of `iova`'s page, or the fault reason and whether
    /// fault processing is disabled (FPD) for it.
    fn walk_scalable<M: PhysMem>(
        &mut self,
        mem: &M,
        source: SourceId,
        iova: Iova,
        req: &Request,
    ) -> Result<vtd_tables::Translation, (FaultReason, bool)> {
        let sm = &mut self.scalable;
        let ctx = match sm.contexts.get(&source) {
            Some(c) => c,
            None => {
                self.counters.walks += 1;
                let c = lookup_scalable_context(mem, self.root.table(), source, &sm.limits)
                    .map_err(|r| (r, false))?;
                sm.contexts.insert(source, c);
                c
            }
        };
        let pasid = effective_pasid(&ctx, req, &sm.limits).map_err(|r| (r, ctx.fpd))?;
        let key = PasidKey(source, pasid);
        let info = match sm.pasids.get(&key) {
            Some(i) => i,
            None => {
                self.counters.walks += 1;
                let mut i = lookup_pasid(mem, &ctx, pasid, req.supervisor, &sm.limits)
                    .map_err(|f| (f.reason, f.fpd))?;
                i.domain = self.cfg.domain(i.domain);
                sm.pasids.insert(key, i);
                i
            }
        };
        if req.supervisor && !info.supervisor {
            return Err((FaultReason::SupervisorRequestsDisabled, info.fpd));
        }
        let found = PageSize::ALL.into_iter().find_map(|size| {
            sm.iotlb.probe(&Tag::of(info.domain, pasid, iova, size)).map(|(t, _)| t)
        });
        sm.iotlb.count(found.is_some());
        if let Some(t) = found {
            // A cached translation carries the permissions it was walked
            // with; the unit does not re-walk to find more.
            if !t.translation.perm.contains(req.access.required()) {
                let denied = match req.access {
                    Access::Read => FaultReason::SmReadNotPermitted,
                    Access::Write => FaultReason::SmWriteNotPermitted,
                };
                return Err((denied, info.fpd));
            }
            if !req.supervisor && !t.user {
                return Err((FaultReason::UserNotPermitted, info.fpd));
            }
            return Ok(t.translation);
        }
        self.counters.walks += 1;
        let t = walk_pasid(mem, &info, iova, req, &sm.limits).map_err(|f| (f.reason, f.fpd))?;
        let tag = Tag::of(info.domain, pasid, iova, t.translation.size);
        sm.iotlb.insert(tag, (t, info.pgtt));
        Ok(t.translation)
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Emulator<M, I, C, H> {
    /// Translates a DMA request of `access` to `iova` from `source` carrying
    /// `pasid` (a PCIe PASID prefix; `None` for a request without one) with
    /// privilege `supervisor`, as a scalable-mode unit would (RTADDR.TTM =
    /// 01b latched, ECAP.SMTS): the physical address, or the fault, recorded
    /// with its PASID unless FPD suppresses it.
    ///
    /// A unit in legacy mode translates as [`translate`](Self::translate)
    /// does, ignoring the PASID; with translation disabled requests pass
    /// untranslated.
    pub fn translate_pasid(
        &self,
        source: SourceId,
        pasid: Option<Pasid>,
        supervisor: bool,
        iova: Iova,
        access: Access,
    ) -> Result<PhysAddr, Fault> {
        let mut st = self.state.lock();
        if st.scalable_active() {
            st.counters.translations += 1;
            let req = Request { access, pasid, supervisor };
            return st.translate_scalable(&self.mem, source, iova, req);
        }
        drop(st);
        self.translate(source, iova, access)
    }

    /// Scalable-mode cache occupancy: context entries, PASID entries and
    /// translations held.
    pub fn scalable_cache_entries(&self) -> (usize, usize, usize) {
        self.state.lock().scalable.lens()
    }

    /// Hits, misses, evictions and invalidations of the scalable-mode
    /// IOTLB.
    pub fn scalable_iotlb_stats(&self) -> CacheStats {
        self.state.lock().scalable.iotlb_stats()
    }
}
