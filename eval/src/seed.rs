//! The seed's figures (DESIGN.md; Amit et al., ATC 2011, on a Xeon X5570,
//! 10 GbE, KVM, one core), printed next to what this host measures.

use crate::frontend::Frontend;
use viommu_eval_driver::Policy;

/// Map and unmap of one page with strict invalidation, cycles.
#[must_use]
pub const fn map_unmap(frontend: Frontend) -> Option<(u64, u64)> {
    match frontend {
        Frontend::BareMetal => Some((2316, 4593)),
        Frontend::Trap | Frontend::ModelledTrap => Some((30645, 4324)),
        Frontend::Sidecore | Frontend::SidecoreNoVm => Some((7321, 1904)),
    }
}

/// Netperf TCP throughput, percent of 9.3 Gbps (the no-IOMMU line rate).
#[must_use]
pub const fn netperf(frontend: Frontend, policy: Policy) -> Option<u32> {
    let row = match frontend {
        Frontend::BareMetal => [43, 91, 100],
        Frontend::Trap | Frontend::ModelledTrap => [10, 11, 82],
        Frontend::Sidecore | Frontend::SidecoreNoVm => [30, 49, 100],
    };
    match policy {
        Policy::NoIommu => Some(100),
        Policy::Secure => Some(row[0]),
        Policy::Relaxed => Some(row[1]),
        Policy::Optimistic => Some(row[2]),
    }
}
