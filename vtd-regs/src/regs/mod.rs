//! The DMA-remapping registers (VT-d specification rev. 3.x, chapter 10), one
//! module per register or per group of registers that share a layout.
//!
//! Each register value is a small typed value (a `#[repr(transparent)]`
//! newtype with `const fn` field accessors, or a `bitflags` type for registers
//! made of single bits) that decodes and encodes the raw value, keeping
//! reserved bits as read. Fixed-offset registers implement
//! [`Register`](crate::Register) so they can be read and written with
//! [`Mmio::read_reg`](crate::Mmio::read_reg) and
//! [`Mmio::write_reg`](crate::Mmio::write_reg). The IOTLB registers (at
//! ECAP.IRO) and the fault recording registers (at CAP.FRO) compute their
//! offsets from the capability values: [`Iva::offset`], [`IotlbInv::offset`],
//! [`FaultRecords`].

pub mod aflog;
pub(crate) mod bits;
pub mod cap;
pub mod ccmd;
pub mod ecap;
pub mod event;
pub mod frcd;
pub mod fsts;
pub mod global;
pub mod iotlb;
pub mod iq;
pub mod irta;
pub mod offset;
pub mod pmen;
pub mod rtaddr;
pub mod ver;

pub use aflog::Aflog;
pub use cap::{AddressWidth, Cap, DomainBits, FaultRecordingOffset, Sagaw, SecondLevelPageSizes};
pub use ccmd::Ccmd;
pub use ecap::{Ecap, IotlbRegisterOffset};
pub use event::{EventControl, EventMessage, EventRegs};
pub use frcd::{AddressType, FaultRecord, FaultRecords, FaultType, Frcd};
pub use fsts::Fsts;
pub use global::{Gcmd, GlobalBits, Gsts};
pub use iotlb::{IotlbInv, Iva};
pub use iq::{DescriptorWidth, Ics, Iqa, Iqercd, Iqh, Iqt, QueueErrorInfo, QueueSize};
pub use irta::Irta;
pub use pmen::{Phmbase, Phmlimit, Plmbase, Plmlimit, Pmen};
pub use rtaddr::{Rtaddr, TranslationTableMode};
pub use ver::Ver;
