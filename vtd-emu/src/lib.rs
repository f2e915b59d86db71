//! A software Intel VT-d remapping unit: register semantics, queued
//! invalidation, cached translation and fault recording; the core of a
//! vIOMMU.
//!
//! References are to the Intel Virtualization Technology for Directed I/O
//! Architecture Specification, revision 3.x.
#![cfg_attr(not(test), no_std)]
// `deny`, not `forbid`: the one `unsafe impl` of `FrameAllocator` (an
// unsafe-to-implement trait) is allowed locally and documented.
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod cache;
pub mod config;
pub mod context_cache;
pub mod counters;
mod emulator;
mod events;
pub mod fault_log;
pub mod iotlb;
pub mod mem;
mod qi;
mod regs;
mod translate;

pub use cache::CacheStats;
pub use config::{ConfigError, EmuConfig};
pub use context_cache::ContextCache;
pub use counters::{Counters, RegisterName};
pub use emulator::{DevTlbResponse, Emulator, MAX_ATS_DEVICES};
pub use fault_log::{Fault, FaultLog, Logged};
pub use iotlb::Iotlb;
pub use mem::{SimFrameAllocator, SimMemory, StaticMemory};
pub use vtd_tables::Access;
