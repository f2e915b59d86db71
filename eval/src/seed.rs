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
        // The seed had no nested vIOMMU.
        Frontend::Nested | Frontend::ModelledNested => None,
    }
}

/// Secure, relaxed and optimistic of a row of the seed's tables (the seed
/// has no asynchronous-invalidation column).
const fn column(row: [u32; 3], policy: Policy) -> Option<u32> {
    match policy {
        Policy::NoIommu => Some(100),
        Policy::Secure => Some(row[0]),
        Policy::Relaxed => Some(row[1]),
        Policy::Optimistic => Some(row[2]),
        Policy::Async => None,
    }
}

/// Netperf TCP throughput, percent of 9.3 Gbps (the no-IOMMU line rate).
#[must_use]
pub const fn netperf(frontend: Frontend, policy: Policy) -> Option<u32> {
    let row = match frontend {
        Frontend::BareMetal => [43, 91, 100],
        Frontend::Trap | Frontend::ModelledTrap => [10, 11, 82],
        Frontend::Sidecore | Frontend::SidecoreNoVm => [30, 49, 100],
        Frontend::Nested | Frontend::ModelledNested => return None,
    };
    column(row, policy)
}

/// Apache's requests per second without IOMMU on bare metal, the seed's
/// baseline for its Apache table (ApacheBench, 25 concurrent requests).
pub const APACHE_BASELINE: u32 = 6828;

/// Apache's best in a guest (no IOMMU), percent of [`APACHE_BASELINE`]:
/// the seed's "maximum attainable throughput in guest — 67%".
pub const APACHE_GUEST_MAX: u32 = 67;

/// Apache throughput, percent of [`APACHE_BASELINE`] (bare metal without
/// IOMMU), as the seed prints it.
#[must_use]
pub const fn apache(frontend: Frontend, policy: Policy) -> Option<u32> {
    let row = match frontend {
        Frontend::BareMetal => [84, 92, 94],
        Frontend::Trap | Frontend::ModelledTrap => [38, 39, 56],
        Frontend::Sidecore | Frontend::SidecoreNoVm => [61, 63, 66],
        Frontend::Nested | Frontend::ModelledNested => return None,
    };
    match (frontend, policy) {
        (Frontend::BareMetal, _) | (_, Policy::Secure | Policy::Relaxed | Policy::Optimistic) => {
            column(row, policy)
        }
        (_, Policy::NoIommu) => Some(APACHE_GUEST_MAX),
        (_, Policy::Async) => None,
    }
}

/// [`apache`] relative to the same front end without IOMMU, percent: what
/// this evaluation's table (d) measures (a guest's figure divided by
/// [`APACHE_GUEST_MAX`]).
#[must_use]
pub fn apache_relative(frontend: Frontend, policy: Policy) -> Option<f64> {
    let own = f64::from(apache(frontend, Policy::NoIommu)?);
    apache(frontend, policy).map(|p| f64::from(p) * 100.0 / own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_is_relative_to_bare_metal_and_to_the_guests_own_best() {
        assert_eq!(apache(Frontend::Trap, Policy::Optimistic), Some(56));
        assert_eq!(apache(Frontend::Sidecore, Policy::NoIommu), Some(67));
        assert_eq!(apache_relative(Frontend::BareMetal, Policy::Relaxed), Some(92.0));
        let side = apache_relative(Frontend::Sidecore, Policy::Optimistic).expect("seed");
        assert!((side - 98.5).abs() < 0.1, "{side}");
        assert_eq!(apache(Frontend::Trap, Policy::Async), None);
        assert_eq!(netperf(Frontend::BareMetal, Policy::Async), None);
        assert_eq!(apache(Frontend::Nested, Policy::NoIommu), None, "the seed had no nested row");
    }
}
