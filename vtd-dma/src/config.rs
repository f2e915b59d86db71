//! What a driver chooses: the direction of each buffer, and the policies of
//! the domain (reuse, invalidation, address limits).

use core::time::Duration;

use invalidation::FlushConfig;
use teardown::Reuse;
use vtd_regs::regs::QueueSize;
use vtd_regs::{DomainId, Iova, PollBudget};
use vtd_tables::Perm;

/// Which way the device moves a buffer's data (Linux's `dma_data_direction`),
/// and so what the translation allows (VT-d §9.8: R and W of the leaf).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Direction {
    /// The device reads the buffer (a transmit buffer): read-only.
    ToDevice,
    /// The device writes the buffer (a receive buffer): write-only.
    FromDevice,
    /// Both: read and write.
    Bidirectional,
}

impl Direction {
    /// The permission of the translation.
    pub const fn perm(self) -> Perm {
        match self {
            Direction::ToDevice => Perm::READ,
            Direction::FromDevice => Perm::WRITE,
            Direction::Bidirectional => Perm::READ_WRITE,
        }
    }
}

/// Linux's deferred-flush batch (`IOVA_FQ_SIZE`) and deadline
/// (`IOVA_FQ_TIMEOUT`).
const LAZY_BATCH: usize = 256;
const LAZY_DEADLINE: Duration = Duration::from_millis(10);
/// An invalidation queue of one page (256 descriptors), as Linux's.
const ONE_PAGE: QueueSize = match QueueSize::from_order(0) {
    Some(q) => q,
    None => panic!("order 0 is a queue size"),
};

/// The policies of a [`DmaDomain`](crate::DmaDomain).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DmaConfig {
    /// The domain id of the domain (VT-d §3.4.3); 1 by default (0 is what a
    /// unit in caching mode caches not-present entries under).
    pub domain: DomainId,
    /// What happens to a mapping at unmap.
    pub reuse: Reuse,
    /// When the invalidation owed by an unmap is performed.
    pub flush: FlushConfig,
    /// IOVAs are handed out below this address (a device's DMA mask:
    /// `Iova::new(0xFFFF_FFFF)` for a 32-bit device).
    pub dma_limit: Iova,
    /// Bits of IOVA the domain's table translates; `None`: the unit's
    /// MGAW, at most 48 (a 4-level table).
    pub address_width: Option<u8>,
    /// Size of the invalidation queue (on units that have one).
    pub queue_size: QueueSize,
    /// How long a register command may take (a unit that does not answer
    /// gives a typed timeout, never a hang).
    pub poll_budget: PollBudget,
}

impl DmaConfig {
    /// Single-use mappings, invalidated before `unmap` returns: no stale
    /// window at all (Linux's `iommu.strict=1`).
    pub const fn strict() -> Self {
        Self::with(Reuse::SingleUse, FlushConfig::strict())
    }

    /// Single-use mappings, invalidations deferred and batched, 256 unmaps
    /// or 10 ms (Linux's default lazy mode).
    pub const fn lazy() -> Self {
        Self::with(Reuse::SingleUse, FlushConfig::deferred(LAZY_BATCH, LAZY_DEADLINE))
    }

    /// Optimistic teardown over deferred invalidation (the vIOMMU paper's
    /// fastest protecting policy): an unmapped buffer's mapping stays,
    /// stale, for its next map; stale mappings are torn down in one batch
    /// at 256 of them or 10 ms, deferred like `lazy`.
    pub const fn optimistic() -> Self {
        Self::with(
            Reuse::Optimistic { quota: LAZY_BATCH, time_limit: LAZY_DEADLINE },
            FlushConfig::deferred(LAZY_BATCH, LAZY_DEADLINE),
        )
    }

    const fn with(reuse: Reuse, flush: FlushConfig) -> Self {
        DmaConfig {
            domain: DomainId::new(1),
            reuse,
            flush,
            dma_limit: Iova::new(u64::MAX),
            address_width: None,
            queue_size: ONE_PAGE,
            poll_budget: PollBudget::DEFAULT,
        }
    }
}

impl Default for DmaConfig {
    /// [`lazy`](Self::lazy), as Linux.
    fn default() -> Self {
        Self::lazy()
    }
}
