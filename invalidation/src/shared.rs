//! One invalidator shared by every CPU's flush queue: the unit has one
//! invalidation queue, so posting takes a lock (as Linux's `qi->q_lock`),
//! but asking whether a ticket completed usually does not: the highest
//! ticket seen complete is kept in an atomic word, and tickets complete in
//! order (§6.5.2: a wait descriptor completes after everything before it),
//! so a ticket at or below it is complete whoever posted or reaped it.

use iommu_platform::Lock;
use iommu_platform::sync::atomic::{AtomicU64, Ordering};

use crate::invalidator::{InvalidationCaps, Invalidator};
use crate::{Invalidation, Result, Ticket};

/// Marks the watermark word as holding a ticket (0: none seen yet).
const SEEN: u64 = 1 << 32;

/// An [`Invalidator`] several CPUs post through: `&SharedInvalidator<I>`
/// is an invalidator, `Sync` when `I` is `Send`.
#[derive(Debug)]
pub struct SharedInvalidator<I> {
    inner: Lock<I>,
    caps: InvalidationCaps,
    /// `SEEN | sequence` of the highest ticket seen complete, or 0.
    completed: AtomicU64,
}

impl<I: Invalidator> SharedInvalidator<I> {
    /// Shares `inv`.
    pub fn new(inv: I) -> Self {
        let caps = inv.caps();
        Self { inner: Lock::new(inv), caps, completed: AtomicU64::new(0) }
    }

    /// The unit's invalidation capabilities.
    pub fn caps(&self) -> InvalidationCaps {
        self.caps
    }

    /// Runs `f` on the invalidator, under the lock (for its counters, or a
    /// context invalidation outside the mapping path).
    pub fn with<R>(&self, f: impl FnOnce(&mut I) -> R) -> R {
        f(&mut self.inner.lock())
    }

    /// Gives the invalidator back.
    pub fn into_inner(self) -> I {
        self.inner.into_inner()
    }

    /// Whether `ticket` is known complete without asking the unit.
    #[inline]
    fn seen(&self, ticket: Ticket) -> bool {
        let w = self.completed.load(Ordering::Acquire);
        w & SEEN != 0 && ticket.is_covered_by(Ticket(w as u32))
    }

    /// Records that `ticket` completed (keeping the highest).
    fn record(&self, ticket: Ticket) {
        let mut w = self.completed.load(Ordering::Relaxed);
        while w & SEEN == 0 || !ticket.is_covered_by(Ticket(w as u32)) {
            let new = SEEN | u64::from(ticket.0);
            match self.completed.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => w = now,
            }
        }
    }
}

impl<I: Invalidator> Invalidator for &SharedInvalidator<I> {
    fn caps(&self) -> InvalidationCaps {
        self.caps
    }

    fn post<B>(&mut self, batch: B) -> Result<Ticket>
    where
        B: IntoIterator<Item = Invalidation>,
    {
        self.inner.lock().post(batch)
    }

    fn is_complete(&mut self, ticket: Ticket) -> Result<bool> {
        if self.seen(ticket) {
            return Ok(true);
        }
        let done = self.inner.lock().is_complete(ticket)?;
        if done {
            self.record(ticket);
        }
        Ok(done)
    }

    fn wait(&mut self, ticket: Ticket) -> Result<()> {
        if self.seen(ticket) {
            return Ok(());
        }
        self.inner.lock().wait(ticket)?;
        self.record(ticket);
        Ok(())
    }
}
