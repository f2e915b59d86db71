//! Bringing the remapping unit up the way a driver does (§10.4: root table
//! through SRTP, translation on through TE, queued invalidation through
//! IQA/QIE) and the mapping layer a NIC driver calls.
//!
//! As Linux does, the driver uses scalable mode where the unit offers it
//! with first-stage translation (ECAP.SMTS and FLTS, §3.6): the NIC's
//! RID_PASID entry is first-stage (PGTT 001b, §9.6) over the driver's own
//! first-stage table, which the mapper fills and invalidates by PASID
//! (§6.5.2.4). Elsewhere it uses legacy mode (§3.4.3): a context entry
//! over a second-stage table. The mapper and everything above it is the
//! same either way.

use invalidation::{Invalidation, Invalidator, QueuedInvalidator};
use iommu_platform::{RegionFrames, TscClock};
use iova_alloc::{IovaTree, Node, Window};
use teardown::{Mapper, MapperConfig, NoPinning};
use vtd_regs::desc::Pasid;
use vtd_regs::regs::QueueSize;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::unit::PollBudget;
use vtd_regs::{Mmio, PhysAddr, PhysMem, RemappingUnit};
use vtd_tables::{
    ContextManager, PasidAttachment, PasidTable, Perm, ScalableContextManager, SlPageTable, Stage,
    TableConfig,
};

use crate::Error;
use crate::layout::{DOMAIN, FRAMES_END, FRAMES_START, IOVA_BITS, NIC};

/// IOVA ranges the allocator can track.
pub const IOVA_NODES: usize = 1024;

/// The IOVA space: a range allocator over a fixed node array (no heap).
pub type Space = IovaTree<heapless::Vec<Node, IOVA_NODES>>;

/// Frames in the layout's frame pool.
const POOL_FRAMES: u64 = (FRAMES_END - FRAMES_START) >> 12;

/// Frames of the layout's frame pool, one bit each (a kernel's allocator,
/// not the simulator's: nothing in the pool holds bookkeeping).
pub type Frames = RegionFrames<{ POOL_FRAMES.div_ceil(64) as usize }>;

/// The frame pool `[FRAMES_START, FRAMES_END)` of the layout, all free.
pub const fn frames() -> Frames {
    match Frames::new(PhysAddr::new(FRAMES_START), PhysAddr::new(FRAMES_END)) {
        Ok(frames) => frames,
        Err(_) => panic!("the frame pool is not empty and its bitmap is sized for it"),
    }
}

// The pool is good at compile time, so `frames` never panics.
const _: () = assert!(POOL_FRAMES > 0);

/// What the driver runs on: memory `M`, the frame pool, the TSC.
pub type DriverPlatform<'f, M> = (M, &'f Frames, TscClock);

/// The mapping layer over unit registers `R` and memory `M` (the default
/// capacities: 1024 mappings, 256 teardowns awaiting invalidation).
pub type DriverMapper<'f, R, M> = Mapper<DriverPlatform<'f, M>, Space, QueuedInvalidator<R, M>>;

/// The root and context tables of a brought-up unit, with the NIC
/// attached to [`DOMAIN`].
pub enum Contexts<'f, M: PhysMem> {
    /// Legacy mode: the NIC's context entry points at the second-stage
    /// table (§9.3).
    Legacy(ContextManager<M, &'f Frames>),
    /// Scalable mode: the NIC's context entry points at its PASID table,
    /// whose RID_PASID entry points at the first-stage table (§9.4, §9.6).
    Scalable(ScalableContextManager<M, &'f Frames>, PasidTable<M, &'f Frames>),
}

/// The permission of a buffer the device writes (a received frame): write
/// only on a second-stage table; read and write on a first-stage table,
/// whose pages are always readable (its entries have no read bit, §9.9),
/// as Linux maps a device's writes there. Without a mapper, write only.
pub fn device_write<R: Mmio, M: PhysMem + Copy>(mapper: Option<&DriverMapper<'_, R, M>>) -> Perm {
    match mapper.map(|m| m.table().config().stage()) {
        Some(Stage::First { .. }) => Perm::READ_WRITE,
        Some(Stage::Second) | None => Perm::WRITE,
    }
}

/// What [`Driver::bring_up`] builds in scalable mode: the context and
/// PASID tables and the invalidator.
type ScalableUnit<'f, R, M> =
    (ScalableContextManager<M, &'f Frames>, PasidTable<M, &'f Frames>, QueuedInvalidator<R, M>);

/// A brought-up unit: the context tables (kept alive) and the mapper.
pub struct Driver<'f, R: Mmio, M: PhysMem + Copy> {
    /// The root and context (and PASID) tables.
    pub contexts: Contexts<'f, M>,
    /// The mapping layer.
    pub mapper: DriverMapper<'f, R, M>,
}

impl<'f, R: Mmio, M: PhysMem + Copy> Driver<'f, R, M> {
    /// Brings the unit behind `regs` up: a 39-bit table for [`DOMAIN`] with
    /// [`NIC`] attached (first-stage in scalable mode where the unit offers
    /// it, else second-stage in legacy mode: see the [module](self) docs),
    /// translation on, a one-page invalidation queue, the context caches
    /// flushed; then the mapper configured by `config`. `budget` bounds
    /// every status wait (a sidecore may answer late).
    pub fn bring_up(
        regs: R,
        mem: M,
        frames: &'f Frames,
        budget: PollBudget,
        config: MapperConfig,
        clock: TscClock,
    ) -> Result<Self, Error> {
        let unit = RemappingUnit::with_budget(regs, budget).map_err(Error::Unit)?;
        let (cap, ecap) = (unit.cap(), unit.ecap());
        let size = QueueSize::from_order(0).ok_or(Error::QueueSetup)?;
        let (contexts, table, inv) = if ecap.smts() && ecap.flts() {
            let tables = TableConfig::first_stage(false, cap.fl1gp(), IOVA_BITS, true)
                .map_err(Error::Table)?;
            let table = SlPageTable::new(mem, frames, tables).map_err(Error::Table)?;
            let (contexts, pasids, inv) = Self::scalable(unit, mem, frames, size, &table)?;
            (Contexts::Scalable(contexts, pasids), table, inv)
        } else {
            let tables = TableConfig::from_cap(cap, IOVA_BITS).map_err(Error::Table)?;
            let table = SlPageTable::new(mem, frames, tables).map_err(Error::Table)?;
            let mut contexts = ContextManager::new(mem, frames).map_err(Error::Table)?;
            // The unit is off: nothing cached, nothing to invalidate yet.
            let _attached = contexts.attach(NIC, DOMAIN, &table).map_err(Error::Table)?;
            let inv =
                QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, size)
                    .map_err(|rejected| Error::Invalidation(rejected.error))?;
            (Contexts::Legacy(contexts), table, inv)
        };
        let window = Window::from_pages(1, (1 << (IOVA_BITS - 12)) - 1)
            .map_err(|e| Error::Map(teardown::Error::Iova(e)))?;
        let space = Space::new_fixed(window);
        let mapper = Mapper::new((mem, frames, clock), table, space, inv, NoPinning, config)
            .map_err(Error::Map)?;
        Ok(Driver { contexts, mapper })
    }

    /// Scalable mode over the first-stage `table`: the NIC's PASID table
    /// with RID_PASID (PASID 0) first-stage over it, the scalable-mode root
    /// table latched (SRTP with TTM 01b), the NIC's context entry
    /// invalidated (context and PASID caches, §6.5.2.1-2), translation on.
    fn scalable(
        unit: RemappingUnit<R>,
        mem: M,
        frames: &'f Frames,
        size: QueueSize,
        table: &SlPageTable<M, &'f Frames>,
    ) -> Result<ScalableUnit<'f, R, M>, Error> {
        let mut pasids = PasidTable::new(mem, frames).map_err(Error::Table)?;
        // The unit is off: nothing cached of the old entry.
        let _set = pasids
            .set(Pasid::default(), PasidAttachment::table(DOMAIN, table))
            .map_err(Error::Table)?;
        let mut contexts = ScalableContextManager::new(mem, frames).map_err(Error::Table)?;
        let change = contexts.attach(NIC, &pasids, Pasid::default(), true).map_err(Error::Table)?;
        let mut inv = QueuedInvalidator::new(unit, mem, frames, size)
            .map_err(|rejected| Error::Invalidation(rejected.error))?;
        inv.unit()
            .set_root_table(contexts.root_table(), TranslationTableMode::Scalable)
            .map_err(Error::Unit)?;
        inv.invalidate(Invalidation::scalable_context_changed(change.sid))
            .map_err(Error::Invalidation)?;
        inv.unit().enable_translation().map_err(Error::Unit)?;
        Ok((contexts, pasids, inv))
    }
}
