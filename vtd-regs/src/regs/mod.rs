//! The DMA-remapping registers (VT-d specification rev. 3.x, chapter 10), one
//! module per register or per group of registers that share a layout.
//!
//! Each register value is a small typed value (a `#[repr(transparent)]`
//! newtype with `const fn` field accessors, or a `bitflags` type for registers
//! made of single bits) that decodes and encodes the raw value, keeping
//! reserved bits as read. Fixed-offset registers implement
//! [`Register`](crate::Register) so they can be read and written with
//! [`Mmio::read_reg`](crate::Mmio::read_reg) and
//! [`Mmio::write_reg`](crate::Mmio::write_reg).

pub(crate) mod bits;
pub mod cap;
pub mod ecap;
pub mod offset;
pub mod ver;

pub use cap::{AddressWidth, Cap, DomainBits, FaultRecordingOffset, Sagaw, SecondLevelPageSizes};
pub use ecap::{Ecap, IotlbRegisterOffset};
pub use ver::Ver;
