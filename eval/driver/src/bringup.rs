//! Bringing the remapping unit up the way a driver does (§10.4: root table
//! through SRTP, translation on through TE, queued invalidation through
//! IQA/QIE) and the mapping layer a NIC driver calls.

use invalidation::QueuedInvalidator;
use iova_alloc::{IovaTree, Node, Window};
use teardown::{Mapper, MapperConfig, NoPinning};
use vtd_emu::SimFrameAllocator;
use vtd_regs::regs::QueueSize;
use vtd_regs::unit::PollBudget;
use vtd_regs::{Mmio, PhysMem, RemappingUnit};
use vtd_tables::{ContextManager, SlPageTable, TableConfig};

use crate::Error;
use crate::layout::{DOMAIN, IOVA_BITS, NIC};
use crate::tsc::TscClock;

/// IOVA ranges the allocator can track.
pub const IOVA_NODES: usize = 1024;
/// Mappings the mapper can hold (live, idle and stale).
pub const MAPS: usize = 1024;
/// Teardowns that may await invalidation.
pub const PENDING: usize = 256;

/// The IOVA space: a range allocator over a fixed node array (no heap).
pub type Space = IovaTree<heapless::Vec<Node, IOVA_NODES>>;

/// Frames for tables and the queue, carved from a region of `M`.
pub type Frames<M> = SimFrameAllocator<M>;

/// The mapping layer over unit registers `R` and memory `M`.
pub type DriverMapper<'f, R, M> =
    Mapper<M, &'f Frames<M>, Space, QueuedInvalidator<R, M>, TscClock, NoPinning, MAPS, PENDING>;

/// A brought-up unit: the context tables (kept alive) and the mapper.
pub struct Driver<'f, R: Mmio, M: PhysMem> {
    /// The root and context tables, with the NIC attached to [`DOMAIN`].
    pub contexts: ContextManager<M, &'f Frames<M>>,
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
        frames: &'f Frames<M>,
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
                .map_err(Error::Invalidation)?;
        let window = Window::from_pages(1, (1 << (IOVA_BITS - 12)) - 1)
            .map_err(|e| Error::Map(teardown::Error::Iova(e)))?;
        let space = Space::new_fixed(window);
        let mapper = Mapper::new(table, space, inv, NoPinning, clock, config);
        Ok(Driver { contexts, mapper })
    }
}
