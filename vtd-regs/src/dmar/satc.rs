//! SoC Integrated Address Translation Cache reporting (SATC, §8.8): the
//! SoC-integrated devices that have an address translation cache (ATC).

use super::device_scope::{DeviceScopes, ScopeArea};
use super::error::DmarError;
use super::structure::RawFlagsSegment;

bitflags::bitflags! {
    /// The Flags field of a SATC (§8.8).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct SatcFlags: u8 {
        /// ATC_REQUIRED: the devices need their ATC enabled (and so ATS)
        /// to work correctly, for functional reasons rather than speed.
        const ATC_REQUIRED = 1 << 0;
    }
}

/// A report of SoC-integrated devices with an address translation cache.
#[derive(Clone, Copy, Debug)]
pub struct Satc<'a> {
    raw: &'a RawFlagsSegment,
    scopes: ScopeArea<'a>,
}

impl<'a> Satc<'a> {
    pub(super) fn decode(bytes: &'a [u8], offset: usize) -> Result<Self, DmarError> {
        let (raw, scopes) = RawFlagsSegment::decode(bytes, offset)?;
        Ok(Self { raw, scopes })
    }

    /// The flags; bits this crate does not name are kept.
    pub fn flags(&self) -> SatcFlags {
        SatcFlags::from_bits_retain(self.raw.flags)
    }

    /// Whether the devices require their ATC to be enabled.
    pub fn atc_required(&self) -> bool {
        self.flags().contains(SatcFlags::ATC_REQUIRED)
    }

    /// The PCI segment of the devices.
    pub fn segment(&self) -> u16 {
        self.raw.segment.get()
    }

    /// The devices with an ATC (PCI endpoint scopes).
    pub fn device_scopes(&self) -> DeviceScopes<'a> {
        self.scopes.scopes()
    }
}
