//! Intel VT-d, typed: the DMA-remapping registers, invalidation descriptors,
//! fault records and reasons, the DMAR ACPI table, the interrupt-remapping
//! formats ([`irq`]), and [`RemappingUnit`], a
//! driver handle that performs the unit's command protocols over any
//! [`Mmio`] ([`VolatileMmio`] for real hardware).
//!
//! This is the bottom crate of viommu. It also defines the plug-in points
//! the other crates build on: [`Mmio`] (register access), [`PhysMem`] and
//! [`FrameAllocator`] (memory for tables and queues), and the typed
//! addresses and ids ([`PhysAddr`], [`Iova`], [`SourceId`], [`DomainId`]).
//!
//! References are to the Intel Virtualization Technology for Directed I/O
//! Architecture Specification, revision 3.x.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod addr;
pub mod desc;
pub mod dmar;
pub mod fault;
pub mod ids;
pub mod irq;
pub mod mem;
pub mod mmio;
pub mod regs;
pub mod scope;
pub mod unit;
pub mod volatile;

pub use addr::{Iova, PAGE_SHIFT, PAGE_SIZE, PageSize, PhysAddr};
pub use desc::{DescError, Descriptor, RawDescriptor};
pub use fault::FaultReason;
pub use ids::{DomainId, SourceId};
pub use mem::{AtomicPhysMem, FrameAllocator, MemError, PhysMem};
pub use mmio::{
    Access, Mmio, ReadOnly, ReadWrite, Readable, RegWidth, Register, Writable, WriteOnly,
};
pub use scope::{ContextScope, Drain, FunctionMask, Granularity, IotlbScope};
pub use unit::{PollBudget, RemappingUnit, UnitError};
pub use volatile::VolatileMmio;
