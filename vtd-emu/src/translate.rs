//! Translating a device's request (VT-d §3.4, §3.6, §6.2): context cache,
//! then IOTLB, then a walk of the tables in memory, with faults recorded
//! (§7.2).
//!
//! Both caches are real: a cached context or translation is used as long as
//! it stays cached, whatever the tables in memory say now, until an
//! invalidation covering it or an eviction drops it. That is what makes a
//! driver that forgets an invalidation observable.

use vtd_regs::regs::FaultType;
use vtd_regs::regs::GlobalBits;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{FaultReason, Iova, PageSize, PhysAddr, PhysMem, SourceId};
use vtd_tables::{Access, ContextInfo, Perm, Translation, lookup_context, walk_second_level};

use crate::emulator::{Emulator, State};
use crate::fault_log::{Fault, Logged};
use crate::hook::Hook;

impl<const I: usize, const C: usize, H> State<I, C, H> {
    fn translate<M: PhysMem>(
        &mut self,
        mem: &M,
        source: SourceId,
        iova: Iova,
        access: Access,
    ) -> Result<PhysAddr, Fault> {
        self.counters.translations += 1;
        if !self.gsts.contains(GlobalBits::TE) {
            // Remapping disabled: requests pass untranslated (§10.4.4).
            return Ok(PhysAddr::new(iova.as_u64()));
        }
        if self.scalable_active() {
            let req = vtd_tables::walk::Request::untagged(access);
            return self.translate_scalable(mem, source, iova, req);
        }
        let fault = |reason| Fault {
            source,
            addr: iova,
            reason,
            kind: match access {
                Access::Read => FaultType::Read,
                Access::Write => FaultType::Write,
            },
        };
        let ctx = self.context(mem, source).map_err(|r| {
            let f = fault(r);
            self.log(&f);
            f
        })?;
        let t = self.translation(mem, &ctx, iova, access).map_err(|(r, fpd)| {
            let f = fault(r);
            if !fpd {
                self.log(&f);
            }
            f
        })?;
        let offset = iova.as_u64() & (t.size.bytes() - 1);
        Ok(PhysAddr::new(t.page_phys().as_u64() | offset))
    }

    /// The context of `source`: from the context cache, or read from the
    /// root table latched by SRTP.
    fn context<M: PhysMem>(
        &mut self,
        mem: &M,
        source: SourceId,
    ) -> Result<ContextInfo, FaultReason> {
        if let Some(ctx) = self.contexts.lookup(source) {
            return Ok(ctx);
        }
        // Only legacy-mode tables are implemented (no ECAP.SMTS, no ADMS):
        // the other modes are reserved on this unit (fault 31h).
        if self.root.mode() != Some(TranslationTableMode::Legacy) {
            return Err(FaultReason::InvalidTableMode);
        }
        self.counters.walks += 1;
        let mut ctx = lookup_context(mem, self.root.table(), source, &self.limits)?;
        ctx.domain = self.cfg.domain(ctx.domain);
        self.contexts.insert(source, ctx.domain, ctx);
        Ok(ctx)
    }

    /// The translation of `iova`'s page in `ctx`'s domain, from the IOTLB or
    /// a walk; the error carries the fault reason and the context's FPD.
    fn translation<M: PhysMem>(
        &mut self,
        mem: &M,
        ctx: &ContextInfo,
        iova: Iova,
        access: Access,
    ) -> Result<Translation, (FaultReason, bool)> {
        if let Some((_, t)) = self.iotlb.lookup(ctx.domain, iova) {
            // A cached translation carries the permissions it was walked
            // with; the unit does not re-walk to find more.
            if !t.perm.contains(access.required()) {
                return Err((access.denied(), ctx.fpd));
            }
            return Ok(t);
        }
        self.counters.walks += 1;
        match walk_second_level(mem, ctx, iova, access, &self.limits) {
            Ok(t) => {
                self.iotlb.insert(ctx.domain, iova, t.size, t);
                Ok(t)
            }
            Err(f) => {
                if f.reason == access.denied() && self.cfg.cap.caching_mode() {
                    self.cache_not_present(mem, ctx, iova, access);
                }
                Err((f.reason, f.fpd))
            }
        }
    }

    /// Caching mode (CAP.CM, §6.1): the unit may cache not-present entries,
    /// and this one does, so software that makes an entry present without
    /// invalidating it keeps faulting, exactly what caching mode asks
    /// software to prevent. A fault for lack of permission is cached as a
    /// not-present page only if the entry allows neither access.
    fn cache_not_present<M: PhysMem>(
        &mut self,
        mem: &M,
        ctx: &ContextInfo,
        iova: Iova,
        access: Access,
    ) {
        let other = match access {
            Access::Read => Access::Write,
            Access::Write => Access::Read,
        };
        self.counters.walks += 1;
        let probe = walk_second_level(mem, ctx, iova, other, &self.limits);
        if probe.is_err_and(|f| f.reason == other.denied()) {
            let none =
                Translation { phys: PhysAddr::ZERO, perm: Perm::empty(), size: PageSize::Size4KiB };
            self.iotlb.insert(ctx.domain, iova, PageSize::Size4KiB, none);
        }
    }

    /// Records a fault and raises the fault event it calls for.
    pub(crate) fn log(&mut self, fault: &Fault) {
        self.log_pasid(fault, None);
    }

    /// [`log`](Self::log) for a request that carried `pasid` (FRCD.PP, PV).
    pub(crate) fn log_pasid(&mut self, fault: &Fault, pasid: Option<vtd_regs::desc::Pasid>) {
        match self.faults.record_pasid(fault, pasid.map(vtd_regs::desc::Pasid::raw)) {
            Logged::Recorded { first_pending, .. } => {
                self.counters.faults_recorded += 1;
                if first_pending {
                    self.fault_event.raise();
                }
            }
            Logged::Overflowed => {
                self.counters.faults_dropped += 1;
                self.fault_event.raise();
            }
            Logged::Dropped => self.counters.faults_dropped += 1,
        }
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Emulator<M, I, C, H> {
    /// Translates a DMA request of `access` to `iova` from `source`, as the
    /// unit would: the physical address it goes to, or the fault that blocked
    /// it (recorded in the fault recording registers unless the context
    /// entry's FPD bit suppresses it, §7.1.2).
    ///
    /// With translation disabled (GSTS.TES = 0) requests pass untranslated.
    pub fn translate(
        &self,
        source: SourceId,
        iova: Iova,
        access: Access,
    ) -> Result<PhysAddr, Fault> {
        self.state.lock().translate(&self.mem, source, iova, access)
    }

    /// Records `fault` in the fault recording registers (raising the fault
    /// event it calls for, §7.3) as if a request had caused it: for an
    /// embedder that learns of a blocked request elsewhere (a vIOMMU whose
    /// host IOMMU blocked the guest's device).
    pub fn record_fault(&self, fault: &Fault) {
        self.state.lock().log(fault)
    }
}
