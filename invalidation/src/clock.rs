//! Time for deadlines, re-exported from [`iommu_platform::clock`], where the
//! `Clock` plug-in point lives with the other platform traits.

pub use iommu_platform::clock::*;
