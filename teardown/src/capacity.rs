//! How many mappings a mapper holds and how many teardowns may await their
//! invalidation: fixed in the type ([`Fixed`], the default, no heap) or, with
//! the `alloc` feature, chosen at run time ([`Runtime`]).

use iommu_platform::{Inline, Storage};
use iova_alloc::{Node, Store};

/// The capacities of a [`Mapper`](crate::Mapper): its registry of
/// mappings, its queue of teardowns awaiting invalidation, and the node
/// store of an IOVA tree sized to match (for whoever builds one beside it).
pub trait Capacity {
    /// Storage of the registry: one slot per mapping.
    type Maps: Storage;
    /// Storage of the flush queue: one slot per teardown in flight.
    type Pending: Storage;
    /// A node store for an [`IovaTree`](iova_alloc::IovaTree) of as many
    /// ranges as the mapper holds mappings.
    type Nodes: Store<Node>;

    /// The registry's storage.
    fn maps(&self) -> Self::Maps;
    /// The flush queue's storage.
    fn pending(&self) -> Self::Pending;
    /// An empty node store.
    fn nodes(&self) -> Self::Nodes;
}

/// Capacities fixed in the type, all storage inline: up to `MAPS` mappings
/// (live, idle and stale) and `PENDING` teardowns awaiting invalidation.
/// Any values from 1 up (`MAPS` below 2^31) will do; others do not build,
/// with a message that names the parameter:
///
/// ```compile_fail,E0080
/// use teardown::{Capacity, Fixed};
///
/// let no_room = Fixed::<0, 256>.maps(); // MAPS must be at least 1
/// ```
///
/// The check runs when the mapper is instantiated (`cargo build`, `cargo
/// test`), not under `cargo check`, like every check of a const generic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fixed<const MAPS: usize = 1024, const PENDING: usize = 256>;

impl<const MAPS: usize, const PENDING: usize> Capacity for Fixed<MAPS, PENDING> {
    type Maps = Inline<MAPS>;
    type Pending = Inline<PENDING>;
    type Nodes = heapless::Vec<Node, MAPS>;

    #[inline]
    fn maps(&self) -> Inline<MAPS> {
        const {
            assert!(
                MAPS >= 1 && MAPS < 1 << 31,
                "teardown::Fixed<MAPS, PENDING>: MAPS (mappings the mapper holds) must be at least 1 and below 2^31"
            )
        };
        Inline
    }

    #[inline]
    fn pending(&self) -> Inline<PENDING> {
        const {
            assert!(
                PENDING >= 1,
                "teardown::Fixed<MAPS, PENDING>: PENDING (teardowns awaiting invalidation) must be at least 1"
            )
        };
        Inline
    }

    fn nodes(&self) -> Self::Nodes {
        heapless::Vec::new()
    }
}

/// Capacities chosen at run time, storage on the heap; the IOVA tree's
/// node store grows as needed.
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runtime {
    /// Mappings the mapper holds (live, idle and stale).
    pub maps: usize,
    /// Teardowns that may await invalidation.
    pub pending: usize,
}

#[cfg(feature = "alloc")]
impl Default for Runtime {
    /// The same capacities as [`Fixed`]'s defaults.
    fn default() -> Self {
        Runtime { maps: 1024, pending: 256 }
    }
}

#[cfg(feature = "alloc")]
impl Capacity for Runtime {
    type Maps = iommu_platform::Boxed;
    type Pending = iommu_platform::Boxed;
    type Nodes = alloc::vec::Vec<Node>;

    fn maps(&self) -> iommu_platform::Boxed {
        iommu_platform::Boxed(self.maps)
    }
    fn pending(&self) -> iommu_platform::Boxed {
        iommu_platform::Boxed(self.pending)
    }
    fn nodes(&self) -> Self::Nodes {
        alloc::vec::Vec::new()
    }
}
