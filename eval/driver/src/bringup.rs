//! Bringing the remapping unit up the way a driver does (§10.4: root table
//! through SRTP, translation on through TE, queued invalidation through
//! IQA/QIE) and the mapping layer a NIC driver calls.

use invalidation::QueuedInvalidator;
use iommu_platform::{RegionFrames, TscClock};
use iova_alloc::{IovaTree, Node, Window};
use teardown::{Mapper, MapperConfig, NoPinning};
use vtd_regs::regs::QueueSize;
use vtd_regs::unit::PollBudget;
use vtd_regs::{Mmio, PhysAddr, PhysMem, RemappingUnit};
use vtd_tables::{ContextManager, SlPageTable, TableConfig};

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

/// A brought-up unit: the context tables (kept alive) and the mapper.
pub struct Driver<'f, R: Mmio, M: PhysMem + Copy> {
    /// The root and context tables, with the NIC attached to [`DOMAIN`].
    pub contexts: ContextManager<M, &'f Frames>,
    /// The mapping layer.
    pub mapper: DriverMapper<'f, R, M>,
}

impl<'f, R: Mmio, M: PhysMem + Copy> Driver<'f, R, M> {
    /// Brings the unit behind `regs` up: a 39-bit table for [`DOMAIN`] with
    /// [`NIC`] attached, translation on, a one-page invalidation queue, a
    /// global context-cache flush; then the mapper configured by `config`.
    /// `budget` bounds every status wait (a sidecore may answer late).
    pub fn bring_up(
        regs: R,
        mem: M,
        frames: &'f Frames,
        budget: PollBudget,
        config: MapperConfig,
        clock: TscClock,
    ) -> Result<Self, Error> {
        let unit = RemappingUnit::with_budget(regs, budget).map_err(Error::Unit)?;
        let tables = TableConfig::from_cap(unit.cap(), IOVA_BITS).map_err(Error::Table)?;
        let table = SlPageTable::new(mem, frames, tables).map_err(Error::Table)?;
        let mut contexts = ContextManager::new(mem, frames).map_err(Error::Table)?;
        // The unit is off: nothing cached, nothing to invalidate yet.
        let _attached = contexts.attach(NIC, DOMAIN, &table).map_err(Error::Table)?;
        let size = QueueSize::from_order(0).ok_or(Error::QueueSetup)?;
        let inv =
            QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, size)
                .map_err(|rejected| Error::Invalidation(rejected.error))?;
        let window = Window::from_pages(1, (1 << (IOVA_BITS - 12)) - 1)
            .map_err(|e| Error::Map(teardown::Error::Iova(e)))?;
        let space = Space::new_fixed(window);
        let mapper = Mapper::new((mem, frames, clock), table, space, inv, NoPinning, config)
            .map_err(Error::Map)?;
        Ok(Driver { contexts, mapper })
    }
}
