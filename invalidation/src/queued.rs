//! The queued-invalidation ring (VT-d §6.5.2): descriptors written into a
//! circular queue in memory, handed to the unit by one write of the tail
//! register (IQT) per batch, each batch closed by an invalidation wait
//! descriptor whose status write (§6.5.2.8) tells software it completed.
//!
//! Completion is tracked with one status dword: every wait descriptor writes
//! its batch's sequence number there, and the unit processes the queue in
//! order, so the dword holds the latest completed sequence. Polling it is a
//! memory read, not an MMIO access, which matters when MMIO is a VM exit.

use vtd_regs::desc::{
    ContextCacheInv, Decoding, Descriptor, IecInv, IecScope, IotlbInv, PasidCacheInv,
    PasidCacheScope, PasidIotlbScope, WaitDesc,
};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{DescriptorWidth, Fsts, Iqa, Iqh, QueueSize};
use vtd_regs::unit::QueueError;
use vtd_regs::{
    ContextScope, Drain, FrameAllocator, IotlbScope, Mmio, PAGE_SHIFT, PhysAddr, PhysMem,
    PollBudget, RemappingUnit,
};

use crate::counters::InvalidatorCounters;
use crate::invalidator::{InvalidationCaps, Invalidator};
use crate::{Error, Invalidation, Result, Ticket};

/// A queue error the unit reported (FSTS.IQE, ITE or ICE, §6.5.2.10),
/// with the descriptor at the queue head when it stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueFault {
    /// What the unit reported.
    pub error: QueueError,
    /// The slot index of the descriptor at the head.
    pub index: usize,
    /// That descriptor, as read back from the queue (`None` if unreadable).
    pub descriptor: Option<Descriptor>,
}

/// A constructor that took over a unit handle failed: why, and the unit,
/// given back (every constructor of this crate that consumes a
/// [`RemappingUnit`] returns it on failure), so the caller can fall back to
/// register-based invalidation or report the unit.
pub struct Rejected<M: Mmio> {
    /// What failed.
    pub error: Error,
    /// The unit, as the constructor left it.
    pub unit: RemappingUnit<M>,
}

impl<M: Mmio> core::fmt::Debug for Rejected<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rejected").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<M: Mmio> core::fmt::Display for Rejected<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.error, f)
    }
}

impl<M: Mmio> core::error::Error for Rejected<M> {}

/// The queued invalidator: owns the queue memory and the unit.
pub struct QueuedInvalidator<M: Mmio, P: PhysMem> {
    unit: RemappingUnit<M>,
    mem: P,
    iqa: Iqa,
    status: PhysAddr,
    /// Next slot to write.
    tail: usize,
    /// Slot the unit fetches next, as last read from IQH.
    head: usize,
    /// Sequence number of the next batch.
    next: u32,
    budget: PollBudget,
    caps: InvalidationCaps,
    counters: InvalidatorCounters,
}

impl<M: Mmio, P: PhysMem> QueuedInvalidator<M, P> {
    /// Allocates a queue of 2^`size` pages and a status page from `frames`,
    /// zeroes them, programs IQA and enables queued invalidation
    /// (§10.4.23, through [`RemappingUnit::enable_queued_invalidation`]).
    ///
    /// On failure the frames are given back and so is the unit
    /// ([`Rejected`]), so the caller can fall back to register-based
    /// invalidation.
    pub fn new<A: FrameAllocator>(
        mut unit: RemappingUnit<M>,
        mem: P,
        frames: &A,
        size: QueueSize,
    ) -> core::result::Result<Self, Rejected<M>> {
        let Some(base) = frames.allocate(size.order()) else {
            return Err(Rejected { error: Error::OutOfFrames, unit });
        };
        let Some(status) = frames.allocate(0) else {
            frames.deallocate(base, size.order());
            return Err(Rejected { error: Error::OutOfFrames, unit });
        };
        let give_back = |error: Error, unit| {
            frames.deallocate(status, 0);
            frames.deallocate(base, size.order());
            Err(Rejected { error, unit })
        };
        let zeroed = (0..1u64 << size.order())
            .try_for_each(|p| mem.zero_frame(PhysAddr::new(base.as_u64() + (p << PAGE_SHIFT))))
            .and_then(|()| mem.zero_frame(status));
        if let Err(e) = zeroed {
            return give_back(Error::Mem(e), unit);
        }
        // 256-bit descriptors on a scalable-mode unit (ECAP.SMTS, as Linux
        // does), so the PASID-based types can be queued (§6.5.2).
        let width =
            if unit.ecap().smts() { DescriptorWidth::Bits256 } else { DescriptorWidth::Bits128 };
        let iqa = Iqa::new(base, size, width);
        if let Err(e) = unit.enable_queued_invalidation(iqa) {
            return give_back(Error::Unit(e), unit);
        }
        let caps = InvalidationCaps::from_cap(unit.cap());
        let budget = unit.budget();
        Ok(QueuedInvalidator {
            unit,
            mem,
            iqa,
            status,
            tail: 0,
            head: 0,
            next: 1,
            budget,
            caps,
            counters: InvalidatorCounters::default(),
        })
    }

    /// Turns DMA remapping on, with a queue of 2^`size` pages, in the order
    /// Linux's `init_dmars` uses: starts queued invalidation
    /// ([`new`](Self::new)), latches the legacy-mode root table at `root`
    /// (SRTP, §10.4.5), invalidates the context cache and the IOTLB
    /// globally, so that nothing the unit cached under an earlier root
    /// table (the firmware's, a previous kernel's) survives (§6.5), and only
    /// then enables translation (§10.4.4).
    ///
    /// On failure the queue is shut down, its frames given back and the
    /// unit returned ([`Rejected`]). A unit that would not stop using its
    /// queue comes back with queued invalidation still on, and the queue's
    /// frames are kept (never freed while the unit may read them).
    pub fn enable_remapping<A: FrameAllocator>(
        unit: RemappingUnit<M>,
        root: PhysAddr,
        mem: P,
        frames: &A,
        size: QueueSize,
    ) -> core::result::Result<Self, Rejected<M>> {
        let mut inv = Self::new(unit, mem, frames, size)?;
        let done = inv
            .unit
            .set_root_table(root, TranslationTableMode::Legacy)
            .map_err(Error::Unit)
            .and_then(|()| {
                inv.invalidate([
                    Invalidation::Context(ContextScope::Global),
                    Invalidation::Iotlb { scope: IotlbScope::Global, drain: Drain::empty() },
                ])
            })
            .and_then(|()| inv.unit.enable_translation().map_err(Error::Unit));
        match done {
            Ok(()) => Ok(inv),
            Err(error) => match inv.shutdown(frames) {
                Ok(unit) => Err(Rejected { error, unit }),
                // A unit that does not stop keeps its frames (taking the
                // unit out of the invalidator frees nothing).
                Err((_, inv)) => Err(Rejected { error, unit: inv.unit }),
            },
        }
    }

    /// The unit, for commands other than invalidation.
    pub fn unit(&mut self) -> &mut RemappingUnit<M> {
        &mut self.unit
    }

    /// The memory the queue lives in.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// What the invalidator has done.
    pub fn counters(&self) -> &InvalidatorCounters {
        &self.counters
    }

    /// The queue's size in descriptors.
    pub fn entries(&self) -> usize {
        self.iqa.entries()
    }

    /// Disables queued invalidation (after the unit fetched everything),
    /// gives the queue and status frames back and returns the unit. If the
    /// unit does not stop, the invalidator comes back with the error: its
    /// memory may still be read by the unit and must not be freed.
    #[allow(clippy::result_large_err, reason = "the caller needs the invalidator back to retry")]
    pub fn shutdown<A: FrameAllocator>(
        mut self,
        frames: &A,
    ) -> core::result::Result<RemappingUnit<M>, (Error, Self)> {
        if let Err(e) = self.unit.disable_queued_invalidation() {
            return Err((Error::Unit(e), self));
        }
        frames.deallocate(self.status, 0);
        frames.deallocate(self.iqa.base(), self.iqa.size().order());
        Ok(self.unit)
    }

    fn slot_addr(&self, index: usize) -> PhysAddr {
        PhysAddr::new(self.iqa.base().as_u64() + ((index as u64) << self.iqa.width().shift()))
    }

    /// Free slots, keeping one empty so a full queue is distinguishable from
    /// an empty one (IQH == IQT means empty, §6.5.2).
    fn free(&self) -> usize {
        self.wrap(self.head + self.entries() - self.tail - 1)
    }

    /// `index` as a slot index: modulo the queue's entries, a power of two
    /// (QS gives 2^(QS+8) 128-bit or 2^(QS+7) 256-bit slots, §10.4.23),
    /// with a mask rather than a division on every descriptor.
    fn wrap(&self, index: usize) -> usize {
        index & (self.entries() - 1)
    }

    /// The descriptor for a request, checked against the unit's
    /// capabilities.
    fn descriptor(&self, req: Invalidation) -> Result<Descriptor> {
        match req {
            Invalidation::Context(scope) => Ok(Descriptor::ContextCache(ContextCacheInv { scope })),
            Invalidation::Iotlb { scope, drain } => {
                if let IotlbScope::Pages { order, .. } = scope
                    && (!self.caps.page_selective || order > self.caps.max_mask_order)
                {
                    return Err(Error::Unsupported(req));
                }
                Ok(Descriptor::Iotlb(IotlbInv { scope, drain: drain & self.caps.drain }))
            }
            Invalidation::InterruptEntries(scope) => Ok(Descriptor::Iec(IecInv { scope })),
            _ if self.iqa.width() == DescriptorWidth::Bits128 => Err(Error::Unsupported(req)),
            Invalidation::PasidCache(scope) => Ok(Descriptor::PasidCache(PasidCacheInv { scope })),
            Invalidation::PasidIotlb(d) => {
                if let PasidIotlbScope::Pages { order, .. } = d.scope
                    && order > self.caps.max_mask_order
                {
                    return Err(Error::Unsupported(req));
                }
                Ok(Descriptor::PasidIotlb(d))
            }
            Invalidation::PasidDevTlb(d) => Ok(Descriptor::PasidDevTlb(d)),
        }
    }

    /// Writes one descriptor at the tail, first making room if the queue is
    /// full (publishing what is written so far and waiting for the head).
    fn push(&mut self, desc: Descriptor, published: &mut usize) -> Result<()> {
        if self.free() == 0 {
            // The cached head is stale: the unit has usually moved on.
            self.head = self.unit.queue_head().map_err(Error::Unit)?;
        }
        if self.free() == 0 {
            if *published != self.tail {
                self.publish()?;
                *published = self.tail;
            }
            self.wait_for_room()?;
        }
        self.write_slot(self.slot_addr(self.tail), desc)?;
        self.tail = self.wrap(self.tail + 1);
        self.counters.count_descriptor(desc.ty());
        Ok(())
    }

    /// Writes `desc` into the queue slot at `addr`, one 64-bit store per
    /// quadword. (Handing the slot to `write_u64s` as an array had the CPU
    /// reload two 8-byte stores as one 16-byte vector, which cannot
    /// forward: half of a push's time.)
    fn write_slot(&self, addr: PhysAddr, desc: Descriptor) -> Result<()> {
        let width = self.iqa.width();
        let qw = desc.slot_quadwords(width).map_err(Error::Descriptor)?;
        let words = qw.iter().take(width.quadwords());
        for (offset, &q) in (0..).step_by(8).zip(words) {
            self.mem.write_u64(PhysAddr::new(addr.as_u64() + offset), q).map_err(Error::Mem)?;
        }
        Ok(())
    }

    /// The descriptor in the queue slot at `addr`, read as 64-bit words and
    /// decoded exactly ([`Decoding::Strict`]); `None` if unreadable or
    /// invalid.
    fn read_slot(&self, addr: PhysAddr) -> Option<Descriptor> {
        let width = self.iqa.width();
        let mut qw = [0u64; 4];
        self.mem.read_u64s(addr, qw.get_mut(..width.quadwords())?).ok()?;
        Descriptor::decode_slot(width, qw, Decoding::Strict).ok()
    }

    /// One IQT write: hands everything written so far to the unit.
    fn publish(&mut self) -> Result<()> {
        self.mem.flush_for_device(self.iqa.base(), self.iqa.size().bytes());
        self.unit.write_queue_tail(self.tail).map_err(Error::Unit)?;
        self.counters.tail_writes += 1;
        Ok(())
    }

    fn wait_for_room(&mut self) -> Result<()> {
        for _ in 0..self.budget.reads() {
            self.check_errors()?;
            self.head = self.unit.queue_head().map_err(Error::Unit)?;
            if self.free() > 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(Error::Timeout)
    }

    /// Reads FSTS; on a queue error, recovers the queue and reports it.
    ///
    /// Recovery (§6.5.2.10): the unit stopped with IQH at the offending
    /// descriptor. It is replaced by a *global* invalidation of the same
    /// cache (a superset of whatever it meant to invalidate, so the wait
    /// descriptor behind it still means "covered"), then the error is
    /// cleared and the unit resumes from IQH.
    fn check_errors(&mut self) -> Result<()> {
        let fsts: Fsts = self.unit.mmio().read_reg();
        if !fsts.queue_error() {
            return Ok(());
        }
        self.counters.queue_errors += 1;
        let head: Iqh = self.unit.mmio().read_reg();
        let width = self.iqa.width();
        let index = self.wrap(head.index(width));
        let addr = self.slot_addr(index);
        let descriptor = self.read_slot(addr);
        // The fix must be in memory before IQE is cleared: the unit
        // re-fetches the head as soon as it may.
        if fsts.iqe() {
            let replacement = match descriptor {
                Some(Descriptor::ContextCache(_)) => {
                    Descriptor::ContextCache(ContextCacheInv { scope: ContextScope::Global })
                }
                Some(Descriptor::Wait(_)) => Descriptor::Wait(WaitDesc::default()),
                Some(Descriptor::PasidCache(_)) => {
                    Descriptor::PasidCache(PasidCacheInv { scope: PasidCacheScope::Global })
                }
                Some(Descriptor::Iec(_)) => Descriptor::Iec(IecInv { scope: IecScope::Global }),
                _ => Descriptor::Iotlb(IotlbInv {
                    scope: IotlbScope::Global,
                    drain: self.caps.drain,
                }),
            };
            self.write_slot(addr, replacement)?;
            self.mem.flush_for_device(addr, width.bytes());
        }
        match self.unit.take_queue_error() {
            Some(error) => Err(Error::Queue(QueueFault { error, index, descriptor })),
            None => Ok(()),
        }
    }

    fn completed(&self) -> Result<Ticket> {
        self.mem.read_u32(self.status).map(Ticket).map_err(Error::Mem)
    }
}

impl<M: Mmio, P: PhysMem> Invalidator for QueuedInvalidator<M, P> {
    fn caps(&self) -> InvalidationCaps {
        self.caps
    }

    fn post<I>(&mut self, batch: I) -> Result<Ticket>
    where
        I: IntoIterator<Item = Invalidation>,
    {
        let mut published = self.tail;
        for req in batch {
            let desc = self.descriptor(req)?;
            self.push(desc, &mut published)?;
        }
        let ticket = Ticket(self.next);
        let wait = WaitDesc {
            status_write: None,
            interrupt: false,
            fence: false,
            page_request_drain: false,
        }
        .with_status_write(self.status, ticket.0)
        .map_err(Error::Descriptor)?;
        self.push(Descriptor::Wait(wait), &mut published)?;
        self.publish()?;
        self.next = self.next.wrapping_add(1);
        self.counters.batches += 1;
        Ok(ticket)
    }

    /// A memory read of the status dword only: queue errors are found by
    /// [`wait`](Invalidator::wait) and by a post that needs room.
    fn is_complete(&mut self, ticket: Ticket) -> Result<bool> {
        Ok(ticket.is_covered_by(self.completed()?))
    }

    fn wait(&mut self, ticket: Ticket) -> Result<()> {
        self.counters.waits += 1;
        for _ in 0..self.budget.reads() {
            self.counters.wait_polls += 1;
            if ticket.is_covered_by(self.completed()?) {
                return Ok(());
            }
            self.check_errors()?;
            core::hint::spin_loop();
        }
        Err(Error::Timeout)
    }
}
