//! The unit behind an invalidator: interrupt remapping's bring-up needs
//! both the unit's registers (SIRTP, CFI, IRE, §10.4.4) and its
//! invalidation queue (the global interrupt entry cache invalidation,
//! §6.5.2.7), and the `invalidation` crate's invalidators own the unit.

use invalidation::{Invalidator, QueuedInvalidator, RegisterInvalidator, UnitInvalidator};
use vtd_regs::{Mmio, PhysMem, RemappingUnit};

/// An invalidator that owns its unit and lends it out.
pub trait UnitAccess: Invalidator {
    /// The register access of the unit.
    type Regs: Mmio;
    /// The unit, for its register commands.
    fn remapping_unit(&mut self) -> &mut RemappingUnit<Self::Regs>;
}

impl<M: Mmio, P: PhysMem> UnitAccess for QueuedInvalidator<M, P> {
    type Regs = M;
    fn remapping_unit(&mut self) -> &mut RemappingUnit<M> {
        self.unit()
    }
}

impl<M: Mmio, P: PhysMem> UnitAccess for UnitInvalidator<M, P> {
    type Regs = M;
    fn remapping_unit(&mut self) -> &mut RemappingUnit<M> {
        self.unit()
    }
}

/// Register-based invalidation cannot invalidate the interrupt entry
/// cache: bring-up on it fails at that step with
/// [`invalidation::Error::Unsupported`] (a unit with ECAP.IR has a queue).
impl<M: Mmio> UnitAccess for RegisterInvalidator<M> {
    type Regs = M;
    fn remapping_unit(&mut self) -> &mut RemappingUnit<M> {
        self.unit()
    }
}
