//! [`UnitInvalidator`]: a unit's invalidator, whichever interface the unit
//! has: the queue (ECAP.QI, §6.5.2) or, on units without one, the
//! registers (§6.5.1).

use vtd_regs::regs::QueueSize;
use vtd_regs::{FrameAllocator, Mmio, PhysAddr, PhysMem, RemappingUnit};

use crate::counters::InvalidatorCounters;
use crate::invalidator::{InvalidationCaps, Invalidator};
use crate::queued::{QueuedInvalidator, Rejected};
use crate::register::RegisterInvalidator;
use crate::{Invalidation, Result, Ticket};

/// The invalidator a driver brings a unit up with: queued when the unit
/// has a queue, register-based otherwise.
pub enum UnitInvalidator<M: Mmio, P: PhysMem> {
    /// Through the invalidation queue.
    Queued(QueuedInvalidator<M, P>),
    /// Through the register interface.
    Register(RegisterInvalidator<M>),
}

impl<M: Mmio, P: PhysMem> UnitInvalidator<M, P> {
    /// Turns DMA remapping on with the root table at `root`: with a queue of
    /// 2^`size` pages from `frames` if ECAP.QI reports one
    /// ([`QueuedInvalidator::enable_remapping`]), through the registers
    /// otherwise ([`RegisterInvalidator::enable_remapping`]).
    ///
    /// On failure the unit is given back ([`Rejected`]).
    pub fn enable_remapping<A: FrameAllocator>(
        unit: RemappingUnit<M>,
        root: PhysAddr,
        mem: P,
        frames: &A,
        size: QueueSize,
    ) -> core::result::Result<Self, Rejected<M>> {
        if unit.ecap().qi() {
            QueuedInvalidator::enable_remapping(unit, root, mem, frames, size).map(Self::Queued)
        } else {
            RegisterInvalidator::enable_remapping(unit, root).map(Self::Register)
        }
    }

    /// The unit, for commands other than invalidation.
    pub fn unit(&mut self) -> &mut RemappingUnit<M> {
        match self {
            Self::Queued(q) => q.unit(),
            Self::Register(r) => r.unit(),
        }
    }

    /// What the invalidator has done.
    pub fn counters(&self) -> &InvalidatorCounters {
        match self {
            Self::Queued(q) => q.counters(),
            Self::Register(r) => r.counters(),
        }
    }

    /// Stops invalidating and gives the unit back: shuts the queue down
    /// and gives its frames back ([`QueuedInvalidator::shutdown`]). A unit
    /// that does not stop using its queue comes back with the error and
    /// keeps its frames.
    #[allow(clippy::result_large_err, reason = "the caller needs the invalidator back to retry")]
    pub fn shutdown<A: FrameAllocator>(
        self,
        frames: &A,
    ) -> core::result::Result<RemappingUnit<M>, (crate::Error, Self)> {
        match self {
            Self::Queued(q) => q.shutdown(frames).map_err(|(e, q)| (e, Self::Queued(q))),
            Self::Register(r) => Ok(r.into_unit()),
        }
    }
}

impl<M: Mmio, P: PhysMem> Invalidator for UnitInvalidator<M, P> {
    #[inline]
    fn caps(&self) -> InvalidationCaps {
        match self {
            Self::Queued(q) => q.caps(),
            Self::Register(r) => r.caps(),
        }
    }

    #[inline]
    fn post<I>(&mut self, batch: I) -> Result<Ticket>
    where
        I: IntoIterator<Item = Invalidation>,
    {
        match self {
            Self::Queued(q) => q.post(batch),
            Self::Register(r) => r.post(batch),
        }
    }

    #[inline]
    fn is_complete(&mut self, ticket: Ticket) -> Result<bool> {
        match self {
            Self::Queued(q) => q.is_complete(ticket),
            Self::Register(r) => r.is_complete(ticket),
        }
    }

    #[inline]
    fn wait(&mut self, ticket: Ticket) -> Result<()> {
        match self {
            Self::Queued(q) => q.wait(ticket),
            Self::Register(r) => r.wait(ticket),
        }
    }
}
