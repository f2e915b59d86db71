//! Typed addresses, re-exported from [`iommu_platform::addr`], where they
//! live with the other platform types.

pub use iommu_platform::addr::*;
