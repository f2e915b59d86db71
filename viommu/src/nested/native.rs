//! The native VT-d backend of a nested vIOMMU: a hypervisor that owns a
//! scalable-mode host unit with ECAP.NEST gives each assigned device a
//! host PASID table whose entries nest the guest's first stage over the
//! guest's second stage (§3.8, §9.6 PGTT = 011b).
//!
//! [`NestedHost`] is the unit every guest shares (its scalable-mode context
//! table, the devices' PASID tables, its invalidator, host domain ids),
//! behind one lock. [`NativeNested`] is one guest's backend: its second
//! stage, built once, mapping every page of guest RAM to the host frame
//! its [`PagePinner`] pinned (all guest RAM pinned until the backend is
//! dropped), and the host domain id it uses for each guest domain id (the
//! host IOTLB tags nested translations by domain and PASID, §6.2.3, so two
//! guest domains, whose first stages differ, get two host ids).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;

use invalidation::{Invalidation, Invalidator};
use teardown::PagePinner;
use vtd_regs::SourceId;
use vtd_regs::desc::{Pasid, PasidIotlbInv, PasidIotlbScope};
use vtd_regs::{DomainId, Drain, FrameAllocator, IotlbScope, Iova, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::{
    PasidAttachment, PasidTable, Perm, ScalableContextManager, SlPageTable, TableConfig,
};

use super::NestedIommu;
use crate::native::NativeError;

/// What the lock of a [`NestedHost`] protects.
struct Unit<M: PhysMem, A: FrameAllocator, I> {
    mem: M,
    frames: A,
    contexts: ScalableContextManager<M, A>,
    pasids: Vec<(SourceId, PasidTable<M, A>)>,
    inv: I,
    tables: TableConfig,
    next_domain: u32,
}

/// A scalable-mode host unit with nesting, shared by the nested backends
/// of every guest (share it with `Arc`).
pub struct NestedHost<M: PhysMem, A: FrameAllocator, I> {
    unit: spin::Mutex<Unit<M, A, I>>,
}

impl<M, A, I> NestedHost<M, A, I>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
{
    /// The host unit whose scalable-mode root table `contexts` manages
    /// (latched with SRTP in scalable mode, translation enabled; the
    /// unit has ECAP.SMTS, FLTS, SLTS and NEST), invalidated through `inv`
    /// (a queue of 256-bit descriptors), with second stages of `tables`
    /// built in `mem` from `frames`; host domain ids from `first_domain`.
    pub fn new(
        mem: M,
        frames: A,
        contexts: ScalableContextManager<M, A>,
        inv: I,
        tables: TableConfig,
        first_domain: DomainId,
    ) -> Self {
        let next_domain = u32::from(first_domain.raw());
        let pasids = Vec::new();
        let unit = Unit { mem, frames, contexts, pasids, inv, tables, next_domain };
        Self { unit: spin::Mutex::new(unit) }
    }

    /// Runs `f` on the physical invalidator, with the unit locked.
    pub fn with_invalidator<R>(&self, f: impl FnOnce(&mut I) -> R) -> R {
        f(&mut self.unit.lock().inv)
    }

    fn new_domain(&self) -> Result<DomainId, NativeError> {
        let mut u = self.unit.lock();
        let id = u16::try_from(u.next_domain).map_err(|_| NativeError::OutOfDomains)?;
        u.next_domain += 1;
        Ok(DomainId::new(id))
    }

    fn new_table(&self) -> Result<SlPageTable<M, A>, NativeError> {
        let u = self.unit.lock();
        SlPageTable::new(u.mem.clone(), u.frames.clone(), u.tables).map_err(NativeError::Table)
    }

    /// Sets `device`'s host PASID entry of `pasid` and waits until the
    /// unit dropped what it cached of the old one (§6.5.2.2, §6.5.2.4).
    /// A device without a PASID table gets one (its context entry,
    /// RID_PASID 0, PASID requests enabled) when `to` is not blocked.
    fn set(&self, device: SourceId, pasid: Pasid, to: PasidAttachment) -> Result<(), NativeError> {
        let mut u = self.unit.lock();
        let u = &mut *u;
        let at = match u.pasids.iter().position(|(d, _)| *d == device) {
            Some(at) => at,
            None if to == PasidAttachment::Blocked => return Ok(()),
            None => {
                let table =
                    PasidTable::new(u.mem.clone(), u.frames.clone()).map_err(NativeError::Table)?;
                let change = u
                    .contexts
                    .attach(device, &table, Pasid::default(), true)
                    .map_err(NativeError::Table)?;
                u.pasids.push((device, table));
                let owed = Invalidation::scalable_context_changed(change.sid);
                u.inv.invalidate(owed).map_err(NativeError::Invalidation)?;
                u.pasids.len() - 1
            }
        };
        let change = u.pasids[at].1.set(pasid, to).map_err(NativeError::Table)?;
        if let Some(old) = change.previous {
            let owed = Invalidation::pasid_changed(old.domain, pasid, old.tagged_by_pasid());
            u.inv.invalidate(owed).map_err(NativeError::Invalidation)?;
        }
        Ok(())
    }

    fn invalidate(&self, batch: impl IntoIterator<Item = Invalidation>) -> Result<(), NativeError> {
        self.unit.lock().inv.invalidate(batch).map_err(NativeError::Invalidation)
    }
}

/// One guest's nested backend on a [`NestedHost`]: its second stage
/// (all guest RAM, pinned once) and a host domain id per guest domain id
/// (see [`crate::nested`]).
pub struct NativeNested<M: PhysMem, A: FrameAllocator, I: Invalidator, Pin: PagePinner> {
    host: Arc<NestedHost<M, A, I>>,
    second: SlPageTable<M, A>,
    /// (guest domain id, host domain id).
    domains: Vec<(DomainId, DomainId)>,
    ram: Vec<Range<PhysAddr>>,
    pinner: Pin,
    pinned: u64,
}

impl<M, A, I, Pin> NativeNested<M, A, I, Pin>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    Pin: PagePinner,
{
    /// The backend of a guest whose RAM is `ram` (guest-physical ranges,
    /// page-aligned): pins every page through `pinner` and maps it in a new
    /// second stage, guest-physical to host-physical, runs of contiguous
    /// host frames as one range (large pages where the unit has them).
    /// Nothing else is ever mapped in it.
    pub fn new(
        host: Arc<NestedHost<M, A, I>>,
        pinner: Pin,
        ram: impl IntoIterator<Item = Range<PhysAddr>>,
    ) -> Result<Self, NativeError> {
        let second = host.new_table()?;
        let mut me = Self { host, second, domains: Vec::new(), ram: Vec::new(), pinner, pinned: 0 };
        for region in ram {
            me.ram.push(region.clone());
            me.map_region(region)?;
        }
        Ok(me)
    }

    /// Pins and maps every page of `region`, a run of contiguous host
    /// frames at a time.
    fn map_region(&mut self, region: Range<PhysAddr>) -> Result<(), NativeError> {
        let (start, end) = (region.start.as_u64(), region.end.as_u64());
        // (first guest page, its host address, bytes)
        let mut run: Option<(u64, PhysAddr, u64)> = None;
        let mut gpa = start;
        while gpa < end {
            let hpa = self.pinner.pin(PhysAddr::new(gpa)).map_err(NativeError::Pin)?;
            self.pinned += 1;
            run = match run {
                Some((g, h, len)) if h.as_u64() + len == hpa.as_u64() => {
                    Some((g, h, len + PAGE_SIZE))
                }
                Some(done) => {
                    self.map_run(done)?;
                    Some((gpa, hpa, PAGE_SIZE))
                }
                None => Some((gpa, hpa, PAGE_SIZE)),
            };
            gpa += PAGE_SIZE;
        }
        run.map_or(Ok(()), |r| self.map_run(r))
    }

    fn map_run(&mut self, (gpa, hpa, len): (u64, PhysAddr, u64)) -> Result<(), NativeError> {
        self.second
            .map_range(Iova::new(gpa), hpa, len, Perm::READ_WRITE)
            .map_err(|p| NativeError::Table(p.error))
    }

    /// The host domain id of the guest's `domain`, if it has one.
    fn host_domain(&self, domain: DomainId) -> Option<DomainId> {
        self.domains.iter().find(|(g, _)| *g == domain).map(|(_, h)| *h)
    }

    /// The second stage (guest-physical to host-physical, all guest RAM).
    pub fn second_stage(&self) -> &SlPageTable<M, A> {
        &self.second
    }

    /// The pinner.
    pub fn pinner(&self) -> &Pin {
        &self.pinner
    }
}

impl<M, A, I, Pin> NestedIommu for NativeNested<M, A, I, Pin>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    Pin: PagePinner,
{
    type Error = NativeError;

    fn set_nested(
        &mut self,
        device: SourceId,
        pasid: Pasid,
        domain: DomainId,
        first: PhysAddr,
        five_level: bool,
    ) -> Result<(), NativeError> {
        let host = match self.host_domain(domain) {
            Some(h) => h,
            None => {
                let h = self.host.new_domain()?;
                self.domains.push((domain, h));
                h
            }
        };
        let to = PasidAttachment::Nested {
            domain: host,
            first,
            five_level,
            second: self.second.root(),
            agaw: self.second.config().agaw(),
        };
        self.host.set(device, pasid, to)
    }

    fn block(&mut self, device: SourceId, pasid: Pasid) -> Result<(), NativeError> {
        self.host.set(device, pasid, PasidAttachment::Blocked)
    }

    fn invalidate(
        &mut self,
        domain: DomainId,
        pasid: Pasid,
        scope: PasidIotlbScope,
    ) -> Result<(), NativeError> {
        // A guest domain never programmed has nothing cached on the host.
        match self.host_domain(domain) {
            Some(domain) => self.host.invalidate([Invalidation::PasidIotlb(PasidIotlbInv {
                domain,
                pasid,
                scope,
            })]),
            None => Ok(()),
        }
    }

    fn invalidate_all(&mut self) -> Result<(), NativeError> {
        let drain = Drain::empty();
        let all = self
            .domains
            .iter()
            .map(|&(_, h)| Invalidation::Iotlb { scope: IotlbScope::Domain(h), drain });
        self.host.invalidate(all)
    }

    fn pinned_pages(&self) -> u64 {
        self.pinned
    }
}

/// A guest that went away (its devices blocked by the vIOMMU first): its
/// host domains are invalidated, then its RAM unpinned.
impl<M: PhysMem, A: FrameAllocator, I: Invalidator, Pin: PagePinner> Drop
    for NativeNested<M, A, I, Pin>
{
    fn drop(&mut self) {
        let drain = Drain::empty();
        let all = self
            .domains
            .iter()
            .map(|&(_, h)| Invalidation::Iotlb { scope: IotlbScope::Domain(h), drain });
        if self.host.unit.lock().inv.invalidate(all).is_err() {
            // The host may still translate: keep the pages pinned.
            return;
        }
        for region in &self.ram {
            let mut gpa = region.start.as_u64();
            while gpa < region.end.as_u64() {
                self.pinner.unpin(PhysAddr::new(gpa));
                gpa += PAGE_SIZE;
            }
        }
    }
}
