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

/// Loom model of the completion watermark (`RUSTFLAGS="--cfg loom" cargo
/// test -p invalidation --lib --release loom`): whichever CPU learns that a
/// ticket completed, through the unit under the lock or through the
/// watermark another CPU recorded, also sees everything the unit did
/// before completing it (the translation gone). With `wait` recording the
/// ticket before waiting for it, the model fails: the other CPU sees the
/// ticket complete through the watermark while the translation is still
/// there.
#[cfg(all(test, loom))]
mod loom_model {
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use loom::thread;

    use super::SharedInvalidator;
    use crate::invalidator::{InvalidationCaps, Invalidator};
    use crate::{Invalidation, Result, Ticket};
    use vtd_regs::Drain;

    /// What the unit does: takes posted waits in order, drops the
    /// translation the wait covers, then completes it.
    struct Unit {
        posted: AtomicU32,
        done: AtomicU32,
        gone: [AtomicBool; 3],
    }

    impl Unit {
        fn new() -> Self {
            let gone = [AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false)];
            Self { posted: AtomicU32::new(0), done: AtomicU32::new(0), gone }
        }

        /// Runs the unit: it completes waits in order, each after dropping
        /// the translation it covers (whether posted yet or not: the model
        /// only needs the order of the two stores).
        fn run(&self, n: u32) {
            for seq in 1..=n {
                self.gone[seq as usize].store(true, Ordering::Relaxed);
                self.done.store(seq, Ordering::Release);
            }
        }

        fn gone(&self, ticket: Ticket) -> bool {
            self.gone[ticket.0 as usize].load(Ordering::Relaxed)
        }
    }

    /// The driver's view of the unit (what `SharedInvalidator` locks).
    struct Driver(Arc<Unit>);

    impl Invalidator for Driver {
        fn caps(&self) -> InvalidationCaps {
            InvalidationCaps {
                page_selective: true,
                max_mask_order: 0,
                drain: Drain::empty(),
                caching_mode: false,
            }
        }

        fn post<B>(&mut self, _: B) -> Result<Ticket>
        where
            B: IntoIterator<Item = Invalidation>,
        {
            Ok(Ticket(self.0.posted.fetch_add(1, Ordering::Release) + 1))
        }

        fn is_complete(&mut self, ticket: Ticket) -> Result<bool> {
            Ok(self.0.done.load(Ordering::Acquire) >= ticket.0)
        }

        fn wait(&mut self, ticket: Ticket) -> Result<()> {
            while !self.is_complete(ticket)? {
                thread::yield_now();
            }
            Ok(())
        }
    }

    #[test]
    fn a_ticket_seen_complete_is_complete_for_every_cpu() {
        let mut model = loom::model::Builder::new();
        // Every interleaving with up to 3 preemptions: enough for the
        // watermark's handoff, a few seconds on 2 cores.
        model.preemption_bound = Some(3);
        model.check(|| {
            let unit = Arc::new(Unit::new());
            let shared = Arc::new(SharedInvalidator::new(Driver(unit.clone())));
            let hw = {
                let unit = unit.clone();
                thread::spawn(move || unit.run(2))
            };
            // CPU A posts, waits and releases what its ticket covered.
            let a = {
                let (shared, unit) = (shared.clone(), unit.clone());
                thread::spawn(move || {
                    let mut inv = &*shared;
                    let t = inv.post(core::iter::empty()).unwrap();
                    inv.wait(t).unwrap();
                    assert!(unit.gone(t), "A released before its translation was gone");
                    t
                })
            };
            // CPU B reaps the first ticket, whoever posted it: through the
            // watermark if A recorded it, else through the unit.
            let mut inv = &*shared;
            let mine = inv.post(core::iter::empty()).unwrap();
            let first = Ticket(1);
            if inv.is_complete(first).unwrap() {
                assert!(unit.gone(first), "B released before the translation was gone");
            }
            inv.wait(mine).unwrap();
            assert!(unit.gone(mine));
            a.join().unwrap();
            hw.join().unwrap();
        });
    }
}
