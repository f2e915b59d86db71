//! The mapping-reuse policies of the vIOMMU paper (Amit et al., ATC 2011,
//! §5) and where they come from.

use core::time::Duration;

use invalidation::{Clock, FlushConfig};
use vtd_regs::{DomainId, Iova};

use crate::{Error, Result};

/// What happens to a mapping when its buffer is unmapped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reuse {
    /// A new IOVA and mapping per map, torn down on unmap: the strongest
    /// protection and the most work.
    SingleUse,
    /// A buffer whose pages are already mapped with the same access is
    /// given the same IOVA, reference-counted; torn down when the last user
    /// unmaps (Willmann et al., USENIX ATC 2008).
    Shared,
    /// Map each buffer once and never tear it down; up to `quota` mappings
    /// are kept (beyond it, mappings are single-use) (Yassour et al. 2010's
    /// on-demand mapping).
    Persistent {
        /// Most mappings kept forever; `None` keeps every one.
        quota: Option<usize>,
    },
    /// Keep unmapped mappings as stale and reuse one when the same buffer
    /// is mapped again; tear the stale ones down, in one batch, when
    /// `quota` of them exist or the oldest is `time_limit` old. Protection
    /// is weakened no more than by deferred invalidation, and every stale
    /// mapping is reclaimed.
    Optimistic {
        /// Stale mappings that trigger a reclaim.
        quota: usize,
        /// Oldest a stale mapping may get before a reclaim (checked on
        /// every call and by [`Mapper::poll`](crate::Mapper::poll)).
        time_limit: Duration,
    },
}

/// What happens to a mapping at its last unmap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fate {
    /// Removed from the table now.
    TearDown,
    /// Kept mapped and idle (persistent).
    Keep,
    /// Kept as stale until `quota` stale mappings or the time limit.
    Stale {
        /// Stale mappings that trigger a reclaim.
        quota: usize,
    },
}

impl Reuse {
    /// The fate of a mapping at its last unmap under this policy: `keep`,
    /// it is one the persistent policy keeps; `single`, it is never
    /// reused (placed and scatter-gather mappings).
    pub(crate) const fn on_last_unmap(self, keep: bool, single: bool) -> Fate {
        match self {
            _ if single => Fate::TearDown,
            Reuse::SingleUse | Reuse::Shared => Fate::TearDown,
            Reuse::Persistent { .. } if keep => Fate::Keep,
            Reuse::Persistent { .. } => Fate::TearDown,
            Reuse::Optimistic { quota, .. } => Fate::Stale { quota },
        }
    }
}

/// The settings of a [`Mapper`](crate::Mapper).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MapperConfig {
    /// The reuse policy.
    pub reuse: Reuse,
    /// When the invalidations owed by teardowns are performed.
    pub flush: FlushConfig,
    /// The domain whose table the mapper manages.
    pub domain: DomainId,
    /// IOVAs are allocated below this address (a 32-bit DMA mask is
    /// `Iova::new(1 << 32)`).
    pub dma_limit: Iova,
}

impl MapperConfig {
    /// Whether a mapper timed by a clock `C`, with room for `pending`
    /// teardowns awaiting invalidation, can honour this configuration; what
    /// [`Mapper::new`](crate::Mapper::new) checks, for a caller that wants
    /// to know before it starts the hardware.
    ///
    /// # Errors
    /// [`Error::TimeLimitWithoutClock`] for an optimistic time limit with a
    /// clock that cannot tell time, and the flush configuration's errors
    /// ([`FlushConfig::validate`]) as [`Error::Invalidation`].
    pub fn validate<C: Clock>(&self, pending: usize) -> Result<()> {
        if matches!(self.reuse, Reuse::Optimistic { .. }) && !C::TELLS_TIME {
            return Err(Error::TimeLimitWithoutClock);
        }
        self.flush.validate::<C>(pending).map_err(Error::Invalidation)
    }
}
