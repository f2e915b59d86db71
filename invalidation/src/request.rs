//! What to invalidate, independent of how: the same request is a queued
//! descriptor (VT-d §6.5.2) or a register command (§10.4.7, §10.4.8).

use vtd_regs::desc::IecScope;
use vtd_regs::{ContextScope, DomainId, Drain, FunctionMask, IotlbScope, SourceId};

/// One invalidation request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Invalidation {
    /// Drop cached context entries (after attach, detach or a context
    /// change; §6.5.1).
    Context(ContextScope),
    /// Drop cached translations (and paging-structure entries unless the
    /// scope's invalidation hint says only leaves changed).
    Iotlb {
        /// Which translations.
        scope: IotlbScope,
        /// Drain DMA reads/writes in flight before completing; only the
        /// drains the unit supports (CAP.DRD, CAP.DWD) are honoured.
        drain: Drain,
    },
    /// Drop cached interrupt remapping table entries (after an entry was
    /// changed or freed, §6.5.2.7): queued invalidation only, the register
    /// interface has no such command.
    InterruptEntries(IecScope),
}

impl Invalidation {
    /// What software owes after changing or clearing the present context
    /// entry of `source`, which was programmed with `domain` (VT-d §6.5.3.3,
    /// §6.2.3.1): a device-selective context-cache invalidation, then a
    /// domain-selective IOTLB invalidation of the old domain, in this
    /// order, as one batch. Attach and detach both end here.
    pub const fn context_changed(source: SourceId, domain: DomainId) -> [Invalidation; 2] {
        [
            Invalidation::Context(ContextScope::Device {
                domain,
                source,
                function_mask: FunctionMask::None,
            }),
            Invalidation::Iotlb { scope: IotlbScope::Domain(domain), drain: Drain::empty() },
        ]
    }
}

impl Invalidation {
    /// What software owes after making the context entry of `source`
    /// present where none was, in `domain`, on a unit in caching mode
    /// (CAP.CM, §6.1): the unit may have cached the not-present entry, as
    /// if in domain 0, so a device-selective context-cache invalidation
    /// with domain id 0, then a domain-selective IOTLB invalidation of the
    /// new domain (Linux's `domain_context_mapping_one`). Without caching
    /// mode nothing is cached for a not-present entry: a write-buffer flush
    /// where CAP.RWBF asks for one is all that is owed.
    pub const fn context_created(source: SourceId, domain: DomainId) -> [Invalidation; 2] {
        [
            Invalidation::Context(ContextScope::Device {
                domain: DomainId::new(0),
                source,
                function_mask: FunctionMask::None,
            }),
            Invalidation::Iotlb { scope: IotlbScope::Domain(domain), drain: Drain::empty() },
        ]
    }
}

/// A token for posted invalidations: they have completed once the
/// invalidator reports this ticket done. Tickets are ordered: completing one
/// completes every earlier one, as invalidations complete in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Ticket(pub(crate) u32);

impl Ticket {
    /// The sequence number carried by the ticket (the status-write data of
    /// its invalidation wait descriptor for a queued invalidator).
    pub const fn sequence(self) -> u32 {
        self.0
    }

    /// Whether this ticket is done given that `completed` is: sequence
    /// numbers are compared with wrap-around.
    pub const fn is_covered_by(self, completed: Ticket) -> bool {
        (completed.0.wrapping_sub(self.0) as i32) >= 0
    }
}
