//! The mechanism behind every flush policy: something that performs
//! invalidations, either through the invalidation queue (VT-d §6.5.2) or
//! through the register interface (§6.5.1, §10.4.7, §10.4.8).

use crate::{Invalidation, Result, Ticket};
use vtd_regs::Drain;
use vtd_regs::regs::Cap;
use vtd_regs::scope::AddressMaskOrder;

/// What a unit can invalidate, read from its capabilities.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InvalidationCaps {
    /// Page-selective IOTLB invalidation is supported (CAP.PSI).
    pub page_selective: bool,
    /// The largest address-mask order accepted (CAP.MAMV).
    pub max_mask_order: AddressMaskOrder,
    /// The drains the unit supports (CAP.DRD, CAP.DWD).
    pub drain: Drain,
    /// Caching mode (CAP.CM): the unit may cache not-present entries, so
    /// making an entry present needs an invalidation too (§6.1). An
    /// emulated IOMMU sets it to learn of every map.
    pub caching_mode: bool,
}

impl InvalidationCaps {
    /// The invalidation capabilities CAP reports.
    pub fn from_cap(cap: Cap) -> Self {
        let mut drain = Drain::empty();
        drain.set(Drain::READS, cap.drd());
        drain.set(Drain::WRITES, cap.dwd());
        InvalidationCaps {
            page_selective: cap.psi(),
            max_mask_order: cap.mamv().max_order(),
            drain,
            caching_mode: cap.caching_mode(),
        }
    }
}

/// Performs invalidations. Requests posted together complete together, in
/// the order they were posted.
pub trait Invalidator {
    /// The unit's invalidation capabilities.
    fn caps(&self) -> InvalidationCaps;

    /// Posts a batch of requests and returns the ticket that completes when
    /// all of them (and everything posted before) have completed. A queued
    /// invalidator makes the batch visible to the hardware with one write
    /// of the queue tail; a register-based one performs it before returning.
    fn post<I>(&mut self, batch: I) -> Result<Ticket>
    where
        I: IntoIterator<Item = Invalidation>;

    /// Whether `ticket` has completed, without waiting.
    fn is_complete(&mut self, ticket: Ticket) -> Result<bool>;

    /// Waits, boundedly, until `ticket` has completed.
    fn wait(&mut self, ticket: Ticket) -> Result<()>;

    /// Posts a batch and waits for it.
    fn invalidate<I>(&mut self, batch: I) -> Result<()>
    where
        I: IntoIterator<Item = Invalidation>,
    {
        let ticket = self.post(batch)?;
        self.wait(ticket)
    }
}
