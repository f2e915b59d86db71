//! The native VT-d backend: a hypervisor that owns the host's remapping unit
//! shadows guest domains into host domains it builds itself.
//!
//! [`Host`] is the unit every guest shares: its context tables, its
//! invalidator, the memory and frames its domain tables come from, and the
//! host domain ids (never reused, so two guests never share one). It has a
//! lock of its own, taken once per call. [`Native`] is one guest's backend
//! ([`HostIommu`]): an `Arc` of the host and the guest's
//! [`PagePinner`], which gives the host frame of each guest page and keeps
//! it resident while mapped.
//!
//! A host domain ([`NativeDomain`]) is a domain id and a second-level
//! table (`vtd_tables::SlPageTable`). A map pins the range's pages and
//! writes each run of contiguous host frames with one range map, so a
//! guest 2 MiB page backed by contiguous, aligned host memory becomes a
//! 2 MiB host page where the unit supports it (CAP.SLLPS). An unmap clears
//! the translations and keeps their `Unmapped` token and pages; completing
//! the domain posts one batch of page-selective invalidations (§6.5.2.3,
//! one domain-selective one when the batch would be long), waits for it,
//! frees the detached table frames and only then unpins. A unit in caching
//! mode (CAP.CM, a host that is itself virtual) also gets an invalidation
//! after each map (§6.1).
//!
//! The mapping layer of `teardown` is not used for host domains: its
//! registry has a fixed capacity (the shadow already records what is
//! mapped, without a limit under `alloc`) and refuses to unmap part of a
//! mapping, which a guest's unmap may ask for. Its [`PagePinner`] contract
//! is the same here.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use invalidation::{Invalidation, InvalidationCaps, Invalidator, PageBlocks};
use teardown::{PagePinner, PinError};
use vtd_regs::{
    ContextScope, DomainId, Drain, FrameAllocator, FunctionMask, IotlbScope, Iova, PAGE_SHIFT,
    PAGE_SIZE, PageSize, PhysAddr, PhysMem, SourceId,
};
use vtd_tables::{
    ContextManager, MAX_KEPT_TABLES, MAX_SPARE_FRAMES, SlPageTable, TableConfig, Unmapped,
};

use crate::host::{HostIommu, Placed};

/// The most page-selective invalidations one completion posts; a longer
/// batch becomes one domain-selective invalidation.
const MAX_PAGE_SELECTIVE: usize = 32;

/// Why the native backend failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum NativeError {
    /// A host table could not be built or changed.
    Table(vtd_tables::Error),
    /// The host unit's invalidation failed.
    Invalidation(invalidation::Error),
    /// A guest page could not be pinned.
    Pin(PinError),
    /// Every host domain id is in use.
    OutOfDomains,
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeError::Table(e) => write!(f, "host table: {e}"),
            NativeError::Invalidation(e) => write!(f, "host invalidation: {e}"),
            NativeError::Pin(e) => write!(f, "cannot pin guest page {:?}", e.page),
            NativeError::OutOfDomains => f.write_str("no host domain id left"),
        }
    }
}

impl core::error::Error for NativeError {}

/// What the lock of a [`Host`] protects.
struct Unit<M: PhysMem, A: FrameAllocator, I> {
    mem: M,
    frames: A,
    contexts: ContextManager<M, A>,
    inv: I,
    tables: TableConfig,
    next_domain: u32,
    invalidations: u64,
}

/// The host's remapping unit as the native backends of all guests share it
/// (see [`Native`]). Share it with `Arc`.
pub struct Host<M: PhysMem, A: FrameAllocator, I> {
    unit: spin::Mutex<Unit<M, A, I>>,
    /// The invalidator's capabilities, read once.
    caps: InvalidationCaps,
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
        let caps = inv.caps();
        let next_domain = u32::from(first_domain.raw());
        let unit = Unit { mem, frames, contexts, inv, tables, next_domain, invalidations: 0 };
        Self { unit: spin::Mutex::new(unit), caps }
    }

    /// Invalidation batches performed on the physical unit so far.
    pub fn invalidations(&self) -> u64 {
        self.unit.lock().invalidations
    }

    /// Runs `f` on the physical invalidator (its counters, say), with the
    /// unit locked.
    pub fn with_invalidator<R>(&self, f: impl FnOnce(&mut I) -> R) -> R {
        f(&mut self.unit.lock().inv)
    }

    /// A new host domain with an empty table.
    fn new_domain(&self) -> Result<(DomainId, SlPageTable<M, A>), NativeError> {
        let mut u = self.unit.lock();
        let id = u16::try_from(u.next_domain).map_err(|_| NativeError::OutOfDomains)?;
        let mut table = SlPageTable::new(u.mem.clone(), u.frames.clone(), u.tables)
            .map_err(NativeError::Table)?;
        // A shadow rebuilds the last-level table of a guest buffer that is
        // mapped and unmapped again: keep released frames, zero, for it.
        table.keep_spare_frames(MAX_SPARE_FRAMES);
        // and keep emptied last-level tables linked: the unmap of a
        // buffer's last page then changes one leaf, and its next map
        // writes one (the limit bounds the frames an idle domain holds).
        table.keep_empty_tables(MAX_KEPT_TABLES);
        u.next_domain += 1;
        Ok((DomainId::new(id), table))
    }

    /// Points `sid`'s context entry at `table` of `domain`, or blocks it
    /// (`None`), and waits until the unit's caches dropped the old context
    /// and the old domain's translations (§6.5.3.3).
    fn set_context(
        &self,
        sid: SourceId,
        to: Option<(DomainId, &SlPageTable<M, A>)>,
    ) -> Result<(), NativeError> {
        let mut u = self.unit.lock();
        let change = match to {
            Some((domain, table)) => u.contexts.attach(sid, domain, table),
            None => u.contexts.detach(sid),
        }
        .map_err(NativeError::Table)?;
        match change.previous {
            Some(old) => u.invalidate(Invalidation::context_changed(sid, old)),
            // A unit in caching mode may have cached the absent entry.
            None if self.caps.caching_mode => {
                let fm = FunctionMask::None;
                let scope = ContextScope::Device {
                    domain: DomainId::new(0),
                    source: sid,
                    function_mask: fm,
                };
                u.invalidate([Invalidation::Context(scope)])
            }
            None => Ok(()),
        }
    }

    /// Performs `batch` on the physical unit and waits for its completion.
    fn invalidate(&self, batch: impl IntoIterator<Item = Invalidation>) -> Result<(), NativeError> {
        self.unit.lock().invalidate(batch)
    }
}

impl<M: PhysMem, A: FrameAllocator, I: Invalidator> Unit<M, A, I> {
    fn invalidate(
        &mut self,
        batch: impl IntoIterator<Item = Invalidation>,
    ) -> Result<(), NativeError> {
        self.invalidations += 1;
        self.inv.invalidate(batch).map_err(NativeError::Invalidation)
    }
}

/// An unmap whose invalidation is owed: the token of the translations
/// removed (it owns the detached table frames) and the guest pages to unpin
/// once the invalidation completed.
struct Pending {
    token: Unmapped,
    /// First guest page number and page count.
    pinned: (u64, u64),
}

/// A host domain of the native backend: a domain id and its second-level
/// table, with the unmaps whose invalidation is owed.
pub struct NativeDomain<M: PhysMem, A: FrameAllocator> {
    id: DomainId,
    table: SlPageTable<M, A>,
    pending: Vec<Pending>,
}

impl<M: PhysMem, A: FrameAllocator> NativeDomain<M, A> {
    /// The host domain id.
    pub fn id(&self) -> DomainId {
        self.id
    }

    /// The host table (for a test that checks the page sizes it holds).
    pub fn table(&self) -> &SlPageTable<M, A> {
        &self.table
    }
}

/// What a native backend has done.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NativeCounters {
    /// Guest pages pinned.
    pub pins: u64,
    /// Guest pages unpinned (each after the invalidation of its unmap).
    pub unpins: u64,
    /// Range maps written to host tables (one per run of contiguous host
    /// frames).
    pub table_maps: u64,
    /// Invalidation batches posted and waited for.
    pub invalidations: u64,
}

/// One guest's native VT-d backend: the shared [`Host`] and the guest's
/// [`PagePinner`].
///
/// [`Host`] is the unit every guest shares: its context tables, its
/// invalidator, the memory and frames its domain tables come from, and
/// the host domain ids (never reused). A host domain ([`NativeDomain`]) is
/// a domain id and a second-level table. A map pins the range's pages and
/// writes each run of contiguous host frames with one range map, so a
/// guest 2 MiB page over contiguous, aligned host memory is a 2 MiB host
/// page where the unit supports it (CAP.SLLPS). An unmap clears the
/// translations and keeps their token and pages; completing the domain
/// posts one batch of page-selective invalidations (one domain-selective
/// one when the batch would be long), waits for it, frees the detached
/// table frames and only then unpins. A unit in caching mode also gets an
/// invalidation after each map (§6.1).
pub struct Native<M: PhysMem, A: FrameAllocator, I, P> {
    host: Arc<Host<M, A, I>>,
    pinner: P,
    counters: NativeCounters,
}

impl<M, A, I, P> Native<M, A, I, P>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    P: PagePinner,
{
    /// A backend mapping into `host`'s domains, pinning through `pinner`.
    pub fn new(host: Arc<Host<M, A, I>>, pinner: P) -> Self {
        Self { host, pinner, counters: NativeCounters::default() }
    }

    /// The host unit.
    pub fn host(&self) -> &Arc<Host<M, A, I>> {
        &self.host
    }

    /// The pinner.
    pub fn pinner(&self) -> &P {
        &self.pinner
    }

    /// What this backend has done.
    pub fn counters(&self) -> NativeCounters {
        self.counters
    }

    /// Pins the `pages` pages from guest page `first` and maps them at
    /// `iova`, one range map per run of contiguous host frames. Returns the
    /// pages pinned and the bytes mapped, with the error that stopped it.
    fn map_pages(
        &mut self,
        table: &mut SlPageTable<M, A>,
        at: Placed,
    ) -> (u64, u64, Option<NativeError>) {
        let (first, pages) = (at.gpa.page_number(), at.len >> PAGE_SHIFT);
        let mut run: Option<(u64, PhysAddr, u64)> = None; // (first page index, frame, pages)
        let mut mapped = 0;
        for i in 0..pages {
            let frame = match self.pinner.pin(PhysAddr::new((first + i) << PAGE_SHIFT)) {
                Ok(f) => f,
                Err(e) => {
                    let err = run.and_then(|r| self.map_run(table, at, r, &mut mapped).err());
                    return (i, mapped, Some(err.unwrap_or(NativeError::Pin(e))));
                }
            };
            self.counters.pins += 1;
            run = match run {
                Some((s, f, n)) if f.as_u64() + (n << PAGE_SHIFT) == frame.as_u64() => {
                    Some((s, f, n + 1))
                }
                Some(done) => {
                    if let Err(e) = self.map_run(table, at, done, &mut mapped) {
                        return (i + 1, mapped, Some(e));
                    }
                    Some((i, frame, 1))
                }
                None => Some((i, frame, 1)),
            };
        }
        let err = run.and_then(|r| self.map_run(table, at, r, &mut mapped).err());
        (pages, mapped, err)
    }

    /// Maps one run of contiguous frames; adds what it mapped to `mapped`.
    fn map_run(
        &mut self,
        table: &mut SlPageTable<M, A>,
        at: Placed,
        (start, frame, pages): (u64, PhysAddr, u64),
        mapped: &mut u64,
    ) -> Result<(), NativeError> {
        self.counters.table_maps += 1;
        let iova = Iova::new(at.iova.as_u64() + (start << PAGE_SHIFT));
        let r = if pages == 1 {
            // The table's 4 KiB fast path.
            table.map(iova, frame, PageSize::Size4KiB, at.perm).map_err(|e| (0, e))
        } else {
            table
                .map_range(iova, frame, pages << PAGE_SHIFT, at.perm)
                .map_err(|p| (p.mapped, p.error))
        };
        *mapped += match r {
            Ok(()) => pages << PAGE_SHIFT,
            Err((done, _)) => done,
        };
        r.map_err(|(_, e)| NativeError::Table(e))
    }

    /// Invalidates the host IOTLB over the placed range `at` of `domain`
    /// (`leaf_only`: IH, no table structure changed) and waits for it.
    fn invalidate_placed(
        &mut self,
        domain: DomainId,
        at: Placed,
        leaf_only: bool,
    ) -> Result<(), NativeError> {
        let range = (at.iova..Iova::new(at.iova.as_u64() + at.len), leaf_only);
        self.counters.invalidations += 1;
        self.host.invalidate(iotlb_batch(self.host.caps, domain, core::iter::once(range)))
    }

    /// Detaches the empty last-level tables the host table keeps within
    /// `at` (see [`SlPageTable::keep_empty_tables`]), where 2 MiB pages of
    /// `at` may go, and invalidates them before their frames are freed.
    fn detach_kept_tables(
        &mut self,
        domain: &mut NativeDomain<M, A>,
        at: Placed,
    ) -> Result<(), NativeError> {
        let token =
            domain.table.detach_empty_tables(at.iova, at.len).map_err(NativeError::Table)?;
        if token.detached_frames() > 0 {
            // On error the token is dropped: its frames leak, never reused
            // while the unit may walk them.
            self.invalidate_placed(domain.id, at, false)?;
        }
        let _ = domain.table.release(token);
        Ok(())
    }

    fn unpin(&mut self, (first, pages): (u64, u64)) {
        for p in first..first + pages {
            self.pinner.unpin(PhysAddr::new(p << PAGE_SHIFT));
        }
        self.counters.unpins += pages;
    }
}

/// The page-selective invalidations covering `ranges` of `domain`, or one
/// domain-selective invalidation when they would be more than
/// [`MAX_PAGE_SELECTIVE`] or the unit has no PSI.
fn iotlb_batch<'a>(
    caps: InvalidationCaps,
    domain: DomainId,
    ranges: impl Iterator<Item = (Range<Iova>, bool)> + Clone + 'a,
) -> impl Iterator<Item = Invalidation> + 'a {
    let drain = Drain::empty();
    let count: usize =
        ranges.clone().map(|(r, _)| PageBlocks::count(&r, caps.max_mask_order)).sum();
    let selective = caps.page_selective && count <= MAX_PAGE_SELECTIVE;
    let pages = ranges
        .filter(move |_| selective)
        .flat_map(move |(r, leaf)| PageBlocks::new(domain, &r, caps.max_mask_order, leaf))
        .map(move |scope| Invalidation::Iotlb { scope, drain });
    let whole =
        (!selective).then_some(Invalidation::Iotlb { scope: IotlbScope::Domain(domain), drain });
    pages.chain(whole)
}

impl<M, A, I, P> HostIommu for Native<M, A, I, P>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    P: PagePinner,
{
    type Domain = NativeDomain<M, A>;
    type Error = NativeError;

    fn create_domain(&mut self) -> Result<Self::Domain, NativeError> {
        let (id, table) = self.host.new_domain()?;
        Ok(NativeDomain { id, table, pending: Vec::new() })
    }

    fn destroy_domain(&mut self, domain: Self::Domain) {
        // Nothing is pending (the vIOMMU completed every unmap) and no
        // context entry points at the table.
        let _ = domain.table.destroy();
    }

    fn attach(&mut self, domain: &mut Self::Domain, device: SourceId) -> Result<(), NativeError> {
        self.host.set_context(device, Some((domain.id, &domain.table)))
    }

    fn detach(&mut self, device: SourceId) -> Result<(), NativeError> {
        self.host.set_context(device, None)
    }

    fn map(&mut self, domain: &mut Self::Domain, at: Placed) -> Result<(), NativeError> {
        if at.len >= PageSize::Size2MiB.bytes() {
            self.detach_kept_tables(domain, at)?;
        }
        let (pinned, mapped, err) = self.map_pages(&mut domain.table, at);
        if let Some(e) = err {
            // Undo: what was mapped is unmapped and invalidated like any
            // unmap (a device may have used it already); what was pinned
            // and not mapped is unpinned at once.
            if mapped > 0 {
                let done = Placed { len: mapped, ..at };
                let _ = self.unmap(domain, done);
                self.complete(domain)?;
            }
            let first = at.gpa.page_number() + (mapped >> PAGE_SHIFT);
            self.unpin((first, pinned - (mapped >> PAGE_SHIFT)));
            return Err(e);
        }
        if self.host.caps.caching_mode {
            // The unit may have cached the entries as not present (§6.1).
            self.invalidate_placed(domain.id, at, true)?;
        }
        Ok(())
    }

    fn unmap(&mut self, domain: &mut Self::Domain, at: Placed) -> Result<(), NativeError> {
        let (token, err) = if at.len == PAGE_SIZE {
            match domain.table.unmap(at.iova, PageSize::Size4KiB) {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(NativeError::Table(e))),
            }
        } else {
            match domain.table.unmap_range(at.iova, at.len) {
                Ok(t) => (Some(t), None),
                Err(p) => (Some(p.done), Some(NativeError::Table(p.error))),
            }
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            let pinned = (at.gpa.page_number(), token.len() >> PAGE_SHIFT);
            domain.pending.push(Pending { token, pinned });
        }
        err.map_or(Ok(()), Err)
    }

    fn complete(&mut self, domain: &mut Self::Domain) -> Result<(), NativeError> {
        if domain.pending.is_empty() {
            return Ok(());
        }
        let ranges = domain.pending.iter().map(|p| {
            let start = p.token.iova();
            (start..Iova::new(start.as_u64() + p.token.len()), p.token.leaf_only())
        });
        self.counters.invalidations += 1;
        self.host.invalidate(iotlb_batch(self.host.caps, domain.id, ranges))?;
        for p in domain.pending.drain(..) {
            let _ = domain.table.release(p.token);
            self.unpin(p.pinned);
        }
        Ok(())
    }
}
