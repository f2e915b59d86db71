//! The DMAR ACPI table (VT-d chapter 8, "BIOS Considerations"): how the
//! platform firmware tells the OS where its remapping units are and which
//! devices each one translates for.
//!
//! The parser is zero-copy and allocation-free: [`Dmar::parse`] checks the
//! header and checksum of a byte slice and borrows it; everything else is
//! read lazily through borrowing iterators, each item a `Result`, so a
//! malformed table is reported as a [`DmarError`] (never a panic, never a
//! read out of bounds) at the structure or device scope where it goes wrong.
//! Every iterator ends: each step consumes at least one header's worth of
//! bytes, and after an error in the framing (a length that cannot be
//! trusted) the iterator stops.
//!
//! ```
//! use vtd_regs::dmar::{Dmar, DmarError, RemappingStructure};
//!
//! fn units(bytes: &[u8]) -> Result<(), DmarError> {
//!     let dmar = Dmar::parse(bytes)?;
//!     for structure in dmar.structures() {
//!         match structure? {
//!             RemappingStructure::Drhd(unit) => {
//!                 let _registers = unit.register_base(); // drive it with `RemappingUnit`
//!                 for scope in unit.device_scopes() {
//!                     // A device on the start bus resolves without config-space
//!                     // reads; behind bridges, `resolve` asks for each bridge's
//!                     // secondary bus number.
//!                     let _requester = scope?.resolve(|_bridge| None);
//!                 }
//!             }
//!             RemappingStructure::Rmrr(region) => {
//!                 let _identity_map = (region.base(), region.limit());
//!             }
//!             _ => {}
//!         }
//!     }
//!     Ok(())
//! }
//! # assert_eq!(units(b"APIC"), Err(DmarError::TruncatedHeader { available: 4 }));
//! ```

mod andd;
mod atsr;
mod device_scope;
mod drhd;
mod error;
mod rhsa;
mod rmrr;
mod satc;
mod structure;
mod table;
#[cfg(test)]
mod tests;
mod writer;

pub use andd::Andd;
pub use atsr::{Atsr, AtsrFlags};
pub use device_scope::{DeviceScope, DeviceScopeKind, DeviceScopes};
pub use drhd::{Drhd, DrhdFlags};
pub use error::DmarError;
pub use rhsa::Rhsa;
pub use rmrr::Rmrr;
pub use satc::{Satc, SatcFlags};
pub use structure::{RemappingStructure, StructureKind, Structures};
pub use table::{Dmar, DmarFlags};
pub use writer::DmarWriter;
