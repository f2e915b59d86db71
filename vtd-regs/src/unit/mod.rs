//! [`RemappingUnit`]: a driver handle that performs a remapping unit's
//! register protocols (§10.4) over any [`Mmio`].
//!
//! The handle owns the register access, caches the read-only VER, CAP and
//! ECAP, and bounds every wait for a status bit by a [`PollBudget`]. Nothing
//! it reads can make it panic or loop forever: a unit that stops answering
//! gives [`UnitError::Timeout`].
//!
//! Bringing a unit up with the register-based interface, then switching to
//! queued invalidation (`regs` is any [`Mmio`], e.g. a [`VolatileMmio`](crate::VolatileMmio)
//! over the DRHD's register page):
//!
//! ```no_run
//! # fn bring_up<M: vtd_regs::Mmio>(regs: M) -> Result<(), vtd_regs::UnitError> {
//! use vtd_regs::regs::{DescriptorWidth, Iqa, QueueSize, TranslationTableMode};
//! use vtd_regs::{ContextScope, Drain, IotlbScope, PhysAddr, RemappingUnit};
//!
//! let mut unit = RemappingUnit::new(regs)?;
//! unit.set_root_table(PhysAddr::new(0x10_0000), TranslationTableMode::Legacy)?;
//! unit.invalidate_context(ContextScope::Global)?;
//! unit.invalidate_iotlb(IotlbScope::Global, Drain::empty())?;
//! unit.enable_translation()?;
//! if unit.ecap().qi() {
//!     let size = QueueSize::from_order(0).unwrap_or_default();
//!     let iqa = Iqa::new(PhysAddr::new(0x20_0000), size, DescriptorWidth::Bits128);
//!     unit.enable_queued_invalidation(iqa)?;
//! }
//! for fault in unit.drain_faults() {
//!     let _ = (fault.source, fault.reason(), fault.fault_info);
//! }
//! # Ok(()) }
//! ```

mod error;
mod fault;
mod global;
mod invalidate;
mod poll;
mod queue;
#[cfg(test)]
mod tests;

pub use error::{Feature, Operation, UnitError};
pub use fault::FaultDrain;
pub use poll::PollBudget;
pub use queue::QueueError;

use crate::mmio::Mmio;
use crate::regs::{Cap, Ecap, GlobalBits, Gsts, Iqa, Ver};

/// A DMA-remapping hardware unit, driven through its registers.
#[derive(Debug)]
pub struct RemappingUnit<M: Mmio> {
    mmio: M,
    ver: Ver,
    cap: Cap,
    ecap: Ecap,
    budget: PollBudget,
    /// The queue programmed while queued invalidation is enabled.
    queue: Option<Iqa>,
}

impl<M: Mmio> RemappingUnit<M> {
    /// Takes over the unit behind `mmio`: reads VER, CAP and ECAP, and, if
    /// queued invalidation is already enabled, the queue's IQA. Fails with
    /// [`UnitError::NotPresent`] if CAP reads as all ones.
    pub fn new(mmio: M) -> Result<Self, UnitError> {
        Self::with_budget(mmio, PollBudget::DEFAULT)
    }

    /// [`new`](Self::new) with a poll budget.
    pub fn with_budget(mmio: M, budget: PollBudget) -> Result<Self, UnitError> {
        let cap: Cap = mmio.read_reg();
        if cap.0 == u64::MAX {
            return Err(UnitError::NotPresent);
        }
        let gsts: Gsts = mmio.read_reg();
        let queue = if gsts.contains(GlobalBits::QIE) { Some(mmio.read_reg()) } else { None };
        Ok(Self { ver: mmio.read_reg(), cap, ecap: mmio.read_reg(), mmio, budget, queue })
    }

    /// The architecture version (VER_REG).
    pub const fn ver(&self) -> Ver {
        self.ver
    }
    /// The capabilities (CAP_REG).
    pub const fn cap(&self) -> Cap {
        self.cap
    }
    /// The extended capabilities (ECAP_REG).
    pub const fn ecap(&self) -> Ecap {
        self.ecap
    }
    /// The poll budget of every wait.
    pub const fn budget(&self) -> PollBudget {
        self.budget
    }
    /// Changes the poll budget.
    pub fn set_budget(&mut self, budget: PollBudget) {
        self.budget = budget;
    }
    /// The current global status (GSTS_REG).
    pub fn status(&self) -> Gsts {
        self.mmio.read_reg()
    }
    /// The register access, for reads this handle does not wrap.
    pub const fn mmio(&self) -> &M {
        &self.mmio
    }
    /// Gives the register access back.
    pub fn into_inner(self) -> M {
        self.mmio
    }
}
