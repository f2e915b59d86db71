//! Root Port ATS Capability Reporting (ATSR, §8.5): the root ports of a
//! segment below which devices may use PCIe Address Translation Services.

use super::device_scope::{DeviceScopes, ScopeArea};
use super::error::DmarError;
use super::structure::RawFlagsSegment;

bitflags::bitflags! {
    /// The Flags field of an ATSR (§8.5).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct AtsrFlags: u8 {
        /// ALL_PORTS: every root port of the segment supports ATS; the
        /// device scopes are then empty.
        const ALL_PORTS = 1 << 0;
    }
}

/// A root port ATS capability report.
#[derive(Clone, Copy, Debug)]
pub struct Atsr<'a> {
    raw: &'a RawFlagsSegment,
    scopes: ScopeArea<'a>,
}

impl<'a> Atsr<'a> {
    pub(super) fn decode(bytes: &'a [u8], offset: usize) -> Result<Self, DmarError> {
        let (raw, scopes) = RawFlagsSegment::decode(bytes, offset)?;
        Ok(Self { raw, scopes })
    }

    /// The flags; bits this crate does not name are kept.
    pub fn flags(&self) -> AtsrFlags {
        AtsrFlags::from_bits_retain(self.raw.flags)
    }

    /// Whether every root port of the segment supports ATS.
    pub fn all_ports(&self) -> bool {
        self.flags().contains(AtsrFlags::ALL_PORTS)
    }

    /// The PCI segment of the root ports.
    pub fn segment(&self) -> u16 {
        self.raw.segment.get()
    }

    /// The root ports (PCI sub-hierarchy scopes) that support ATS.
    pub fn device_scopes(&self) -> DeviceScopes<'a> {
        self.scopes.scopes()
    }
}
