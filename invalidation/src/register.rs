//! Register-based invalidation (VT-d §6.5.1, §10.4.7, §10.4.8), the
//! fallback for units without queued invalidation (ECAP.QI = 0): each
//! request is one command, performed and waited for before `post` returns.

use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{ContextScope, Drain, IotlbScope, Mmio, PhysAddr, RemappingUnit};

use crate::counters::InvalidatorCounters;
use crate::invalidator::{InvalidationCaps, Invalidator};
use crate::queued::Rejected;
use crate::{Error, Invalidation, Result, Ticket};

/// The register-based invalidator: owns the unit.
pub struct RegisterInvalidator<M: Mmio> {
    unit: RemappingUnit<M>,
    caps: InvalidationCaps,
    /// Sequence number of the last batch (all are complete on return).
    last: u32,
    counters: InvalidatorCounters,
}

impl<M: Mmio> RegisterInvalidator<M> {
    /// Takes over the unit's invalidation; queued invalidation must be off.
    pub fn new(unit: RemappingUnit<M>) -> Self {
        let caps = InvalidationCaps::from_cap(unit.cap());
        RegisterInvalidator { unit, caps, last: 0, counters: InvalidatorCounters::default() }
    }

    /// Turns DMA remapping on through the registers, in the order of
    /// [`QueuedInvalidator::enable_remapping`](crate::QueuedInvalidator::enable_remapping):
    /// latches the legacy-mode root table at `root` (SRTP), invalidates the
    /// context cache and the IOTLB globally (§6.5), then enables
    /// translation (§10.4.4). Queued invalidation must be off.
    ///
    /// On failure the unit is given back ([`Rejected`]).
    pub fn enable_remapping(
        mut unit: RemappingUnit<M>,
        root: PhysAddr,
    ) -> core::result::Result<Self, Rejected<M>> {
        let done = unit
            .set_root_table(root, TranslationTableMode::Legacy)
            .and_then(|()| unit.invalidate_context(ContextScope::Global).map(drop))
            .and_then(|()| unit.invalidate_iotlb(IotlbScope::Global, Drain::empty()).map(drop))
            .and_then(|()| unit.enable_translation());
        match done {
            Ok(()) => Ok(Self::new(unit)),
            Err(e) => Err(Rejected { error: Error::Unit(e), unit }),
        }
    }

    /// The unit, for commands other than invalidation.
    pub fn unit(&mut self) -> &mut RemappingUnit<M> {
        &mut self.unit
    }

    /// Gives the unit back.
    pub fn into_unit(self) -> RemappingUnit<M> {
        self.unit
    }

    /// What the invalidator has done.
    pub fn counters(&self) -> &InvalidatorCounters {
        &self.counters
    }
}

impl<M: Mmio> Invalidator for RegisterInvalidator<M> {
    fn caps(&self) -> InvalidationCaps {
        self.caps
    }

    fn post<I>(&mut self, batch: I) -> Result<Ticket>
    where
        I: IntoIterator<Item = Invalidation>,
    {
        for req in batch {
            match req {
                Invalidation::Context(scope) => self.unit.invalidate_context(scope),
                Invalidation::Iotlb { scope, drain } => self.unit.invalidate_iotlb(scope, drain),
                Invalidation::InterruptEntries(_) => return Err(Error::Unsupported(req)),
            }
            .map_err(Error::Unit)?;
            self.counters.register_commands += 1;
        }
        self.counters.batches += 1;
        self.last = self.last.wrapping_add(1);
        Ok(Ticket(self.last))
    }

    fn is_complete(&mut self, ticket: Ticket) -> Result<bool> {
        Ok(ticket.is_covered_by(Ticket(self.last)))
    }

    fn wait(&mut self, ticket: Ticket) -> Result<()> {
        self.counters.waits += 1;
        if ticket.is_covered_by(Ticket(self.last)) { Ok(()) } else { Err(Error::Timeout) }
    }
}
