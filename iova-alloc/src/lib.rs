//! IOVA space allocators for IOMMU drivers: a size-aligned, top-down range allocator and a magazine cache in front of it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
