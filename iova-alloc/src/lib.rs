//! IOVA space allocators for IOMMU drivers: a size-aligned, top-down range
//! allocator ([`IovaTree`]) and a magazine cache in front of it
//! ([`IovaCache`], used through per-CPU [`CpuHandle`]s).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod error;
mod range;
mod store;
mod tree;

pub use error::{AllocError, Result};
pub use range::{IovaRange, Window};
pub use store::Store;
pub use tree::{IovaTree, Node};
