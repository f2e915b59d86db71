//! The `PhysMem` and `FrameAllocator` plug-in points, re-exported from
//! [`iommu_platform::mem`], where they live with the other platform traits.

pub use iommu_platform::mem::*;
