//! The IOMMU mapping layer: map/unmap with single-use, shared, persistent and optimistic-teardown reuse policies.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
