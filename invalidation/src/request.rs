//! What to invalidate, independent of how: the same request is a queued
//! descriptor (VT-d §6.5.2) or a register command (§10.4.7, §10.4.8).

use core::ops::Range;

use vtd_regs::desc::{
    IecScope, Pasid, PasidCacheScope, PasidDevTlbInv, PasidIotlbInv, PasidIotlbScope,
};
use vtd_regs::scope::AddressMaskOrder;
use vtd_regs::{ContextScope, DomainId, Drain, FunctionMask, IotlbScope, Iova, SourceId};

use crate::blocks::PageBlocks;
use crate::tag::Tag;

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
    /// Drop cached PASID-table entries (scalable mode, §6.5.2.2): after a
    /// PASID entry changed. Queued only, in a 256-bit queue.
    PasidCache(PasidCacheScope),
    /// Drop the translations of one PASID of one domain (first-stage and
    /// nested, §6.5.2.4). Queued only, in a 256-bit queue.
    PasidIotlb(PasidIotlbInv),
    /// Invalidate a device's translations of one PASID in its device-TLB
    /// (ATS, §6.5.2.6). Queued only, in a 256-bit queue.
    PasidDevTlb(PasidDevTlbInv),
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

impl Invalidation {
    /// What software owes after changing or clearing the present PASID
    /// entry of `pasid`, which was in `domain` (§6.5.2.2, §6.5.2.4; Linux
    /// `intel_pasid_tear_down_entry`): a PASID-selective PASID-cache
    /// invalidation, then the IOTLB: PASID-selective when the entry's
    /// translations were tagged by the PASID (first-stage, nested),
    /// domain-selective otherwise (second-stage, pass-through). A new
    /// entry where none was is owed the same under caching mode (CAP.CM).
    pub const fn pasid_changed(
        domain: DomainId,
        pasid: Pasid,
        tagged_by_pasid: bool,
    ) -> [Invalidation; 2] {
        let iotlb = if tagged_by_pasid {
            Invalidation::PasidIotlb(PasidIotlbInv { domain, pasid, scope: PasidIotlbScope::Pasid })
        } else {
            Invalidation::Iotlb { scope: IotlbScope::Domain(domain), drain: Drain::empty() }
        };
        [Invalidation::PasidCache(PasidCacheScope::Pasid { domain, pasid }), iotlb]
    }

    /// What software owes after changing or clearing the scalable-mode
    /// context entry of `source` (§6.5.3.3; Linux
    /// `sm_context_flush_caches`): the device's context-cache entry, then
    /// every PASID-cache and IOTLB entry, as the PASID tables behind it may
    /// have been cached under any domain.
    pub const fn scalable_context_changed(source: SourceId) -> [Invalidation; 3] {
        [
            Invalidation::Context(ContextScope::Device {
                domain: DomainId::new(0),
                source,
                function_mask: FunctionMask::None,
            }),
            Invalidation::PasidCache(PasidCacheScope::Global),
            Invalidation::Iotlb { scope: IotlbScope::Global, drain: Drain::empty() },
        ]
    }

    /// The page-selective PASID-based IOTLB invalidations that cover
    /// `range` of `pasid` in `domain` (a first-stage unmap's token), blocks
    /// of at most 2^`max_order` pages (CAP.MAMV), as [`PageBlocks`] splits
    /// a second-stage range.
    pub fn pasid_pages(
        domain: DomainId,
        pasid: Pasid,
        range: &Range<Iova>,
        max_order: AddressMaskOrder,
        leaf_only: bool,
    ) -> impl Iterator<Item = Invalidation> + use<> {
        let tag = Tag::Pasid { domain, pasid };
        PageBlocks::new(domain, range, max_order, leaf_only)
            .map(move |scope| tag.page(scope, Drain::empty()))
    }

    /// Whether the request is one of the PASID-based types, which only a
    /// queue of 256-bit descriptors carries.
    pub const fn needs_wide_queue(&self) -> bool {
        matches!(
            self,
            Invalidation::PasidCache(_)
                | Invalidation::PasidIotlb(_)
                | Invalidation::PasidDevTlb(_)
        )
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
