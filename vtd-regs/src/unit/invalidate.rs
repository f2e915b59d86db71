//! Register-based invalidation (§6.5.1, §10.4.7 and §10.4.8): one
//! command register write, a bounded wait for the unit to clear the command
//! bit, and the granularity the unit actually performed.

use super::RemappingUnit;
use super::error::{Feature, Operation, UnitError};
use crate::addr::PAGE_SHIFT;
use crate::ids::DomainId;
use crate::mmio::Mmio;
use crate::regs::{Ccmd, GlobalBits, IotlbInv};
use crate::scope::{ContextScope, Drain, Granularity, IotlbScope, MisalignedScope};

impl<M: Mmio> RemappingUnit<M> {
    /// Register-based invalidation may not be used while queued invalidation
    /// is on (§6.5.2).
    fn register_invalidation_allowed(&self, domain: Option<DomainId>) -> Result<(), UnitError> {
        if self.status().contains(GlobalBits::QIE) {
            return Err(UnitError::QueuedInvalidationEnabled);
        }
        match (domain, self.cap.nd().domains()) {
            (Some(d), Some(n)) if d.raw() as u32 >= n => Err(UnitError::DomainOutOfRange(d)),
            _ => Ok(()),
        }
    }

    /// Invalidates the context cache for `scope` through CCMD: writes
    /// ICC = 1 with CIRG, waits for ICC to clear, and returns the
    /// granularity the unit performed (CAIG), which may be coarser than asked.
    pub fn invalidate_context(&mut self, scope: ContextScope) -> Result<Granularity, UnitError> {
        let domain = match scope {
            ContextScope::Global => None,
            ContextScope::Domain(d) | ContextScope::Device { domain: d, .. } => Some(d),
        };
        self.register_invalidation_allowed(domain)?;
        self.mmio.write_reg(Ccmd::invalidate(scope));
        let done = self.budget.wait(&self.mmio, Operation::ContextInvalidation, |m| {
            let c: Ccmd = m.read_reg();
            (!c.icc()).then_some(c)
        })?;
        done.caig().ok_or(UnitError::NotPerformed)
    }

    /// Invalidates the IOTLB for `scope` through IVA_REG and IOTLB_REG (at
    /// ECAP.IRO): writes IVA (page-selective only), then IOTLB_REG with IVT,
    /// waits for IVT to clear, and returns the granularity performed (IAIG).
    ///
    /// Page-selective scopes need CAP.PSI and an order within CAP.MAMV. Drain
    /// requests the unit does not support (CAP.DRD, CAP.DWD) are dropped.
    pub fn invalidate_iotlb(
        &mut self,
        scope: IotlbScope,
        drain: Drain,
    ) -> Result<Granularity, UnitError> {
        if let IotlbScope::Pages { addr, order, .. } = scope {
            if !self.cap.psi() {
                return Err(UnitError::Unsupported(Feature::PageSelectiveInvalidation));
            }
            let max = self.cap.mamv().max_order();
            if order > max {
                return Err(UnitError::AddressMaskTooLarge { order, max });
            }
            let aligned =
                1u64.checked_shl(PAGE_SHIFT + order as u32).is_some_and(|a| addr.is_aligned(a));
            if !aligned {
                return Err(UnitError::Misaligned(MisalignedScope { addr, order }));
            }
        }
        self.register_invalidation_allowed(scope.domain())?;
        let mut drain = drain;
        drain.set(Drain::READS, drain.contains(Drain::READS) && self.cap.drd());
        drain.set(Drain::WRITES, drain.contains(Drain::WRITES) && self.cap.dwd());
        let (iva, cmd) = IotlbInv::invalidate(scope, drain);
        let off = self.ecap.iro();
        if let IotlbScope::Pages { .. } = scope {
            self.mmio.write64(off.iva(), iva.0);
        }
        self.mmio.write64(off.iotlb(), cmd.0);
        let done = self.budget.wait(&self.mmio, Operation::IotlbInvalidation, |m| {
            let c = IotlbInv(m.read64(off.iotlb()));
            (!c.ivt()).then_some(c)
        })?;
        done.iaig().ok_or(UnitError::NotPerformed)
    }
}
