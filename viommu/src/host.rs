//! The physical side every guest's vIOMMU shares: the host's remapping unit
//! (its context tables and its invalidator), the memory its tables live in
//! and the frames they come from, and the host domain ids.
//!
//! Each guest domain the vIOMMU shadows becomes one host domain with its own
//! second-level table; a guest's device is attached to the host domain of
//! the guest domain its guest context entry names (VT-d §3.4.2). Host domain
//! ids are never reused, so two guests can never share one.

use invalidation::{Invalidation, InvalidationCaps, Invalidator, Ticket};
use vtd_regs::{ContextScope, DomainId, Drain, FrameAllocator, IotlbScope, PhysMem, SourceId};
use vtd_tables::{ContextManager, SlPageTable, TableConfig};

use crate::Error;

/// The host's remapping unit as the vIOMMU drives it.
pub struct Host<M: PhysMem, A: FrameAllocator, I> {
    mem: M,
    frames: A,
    contexts: ContextManager<M, A>,
    inv: I,
    tables: TableConfig,
    next_domain: u32,
    /// Invalidations performed on the physical unit.
    invalidations: u64,
}

impl<M, A, I> Host<M, A, I>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
{
    /// The host unit whose root table `contexts` manages (already set with
    /// SRTP, translation enabled), invalidated through `inv`, with domain
    /// tables of `tables` built in `mem` from `frames`. Host domain ids are
    /// handed out from `first_domain` up.
    pub fn new(
        mem: M,
        frames: A,
        contexts: ContextManager<M, A>,
        inv: I,
        tables: TableConfig,
        first_domain: DomainId,
    ) -> Self {
        Self {
            mem,
            frames,
            contexts,
            inv,
            tables,
            next_domain: u32::from(first_domain.raw()),
            invalidations: 0,
        }
    }

    /// Invalidations performed on the physical unit so far.
    pub const fn invalidations(&self) -> u64 {
        self.invalidations
    }

    /// The physical invalidator.
    pub fn invalidator(&mut self) -> &mut I {
        &mut self.inv
    }

    /// A new host domain with an empty table.
    pub(crate) fn new_domain(&mut self) -> Result<(DomainId, SlPageTable<M, A>), Error> {
        let id = u16::try_from(self.next_domain).map_err(|_| Error::OutOfDomains)?;
        let table = SlPageTable::new(self.mem.clone(), self.frames.clone(), self.tables)
            .map_err(Error::Table)?;
        self.next_domain += 1;
        Ok((DomainId::new(id), table))
    }

    /// Points `sid`'s context entry at `table` of `domain`, or blocks it
    /// (`None`), and waits until the unit's caches dropped the old context
    /// and the old domain's translations (§6.5.3.3).
    pub(crate) fn set_context(
        &mut self,
        sid: SourceId,
        to: Option<(DomainId, &SlPageTable<M, A>)>,
    ) -> Result<(), Error> {
        let change = match to {
            Some((domain, table)) => self.contexts.attach(sid, domain, table),
            None => self.contexts.detach(sid),
        }
        .map_err(Error::Table)?;
        let context = Invalidation::Context(ContextScope::Global);
        match change.previous {
            Some(old) => self.invalidate([context, iotlb(IotlbScope::Domain(old))]),
            None => self.invalidate([context]),
        }
    }

    /// Performs `batch` on the physical unit and waits for its completion.
    fn invalidate<const N: usize>(&mut self, batch: [Invalidation; N]) -> Result<(), Error> {
        self.invalidations += 1;
        self.inv.invalidate(batch).map_err(Error::Invalidation)
    }

    /// Frees `table` (no context entry points at it any more, and its
    /// translations were invalidated).
    pub(crate) fn destroy(&mut self, table: SlPageTable<M, A>) {
        let _ = table.destroy();
    }
}

/// An IOTLB invalidation of `scope` without drains.
const fn iotlb(scope: IotlbScope) -> Invalidation {
    Invalidation::Iotlb { scope, drain: Drain::empty() }
}

/// The host unit's invalidator as the mapper of one shadow domain uses it:
/// each call holds the host's lock only for its own duration, so the
/// shadows of every guest share the unit.
pub(crate) struct SharedHost<'h, M: PhysMem, A: FrameAllocator, I> {
    host: &'h spin::Mutex<Host<M, A, I>>,
    /// The unit's capabilities, read once (the mapper asks on every map).
    caps: InvalidationCaps,
}

impl<'h, M: PhysMem, A: FrameAllocator, I: Invalidator> SharedHost<'h, M, A, I> {
    pub(crate) fn new(host: &'h spin::Mutex<Host<M, A, I>>) -> Self {
        let caps = host.lock().inv.caps();
        Self { host, caps }
    }
}

impl<M: PhysMem, A: FrameAllocator, I: Invalidator> Invalidator for SharedHost<'_, M, A, I> {
    fn caps(&self) -> InvalidationCaps {
        self.caps
    }

    fn post<B>(&mut self, batch: B) -> invalidation::Result<Ticket>
    where
        B: IntoIterator<Item = Invalidation>,
    {
        let mut host = self.host.lock();
        host.invalidations += 1;
        host.inv.post(batch)
    }

    fn is_complete(&mut self, ticket: Ticket) -> invalidation::Result<bool> {
        self.host.lock().inv.is_complete(ticket)
    }

    fn wait(&mut self, ticket: Ticket) -> invalidation::Result<()> {
        self.host.lock().inv.wait(ticket)
    }
}
