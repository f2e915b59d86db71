//! Identifiers the remapping hardware works with: the requester (source id) of
//! a DMA request and the domain it belongs to.

use core::fmt;

/// The PCI requester id of a DMA request, bus:device.function (§3.4.1):
/// bits 15:8 bus, 7:3 device, 2:0 function. It selects the root entry (bus) and
/// the context entry (devfn).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct SourceId(u16);

impl SourceId {
    /// Wraps a raw 16-bit requester id.
    #[inline]
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }

    /// The id of `bus:device.function`, or `None` if device > 31 or function > 7.
    #[inline]
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Self(((bus as u16) << 8) | ((device as u16) << 3) | function as u16))
    }

    /// The raw 16-bit requester id.
    #[inline]
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// The bus number: the index into the root table.
    #[inline]
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// device << 3 | function: the index into the bus's context table.
    #[inline]
    pub const fn devfn(self) -> u8 {
        self.0 as u8
    }

    /// The device number (0..=31).
    #[inline]
    pub const fn device(self) -> u8 {
        (self.0 as u8) >> 3
    }

    /// The function number (0..=7).
    #[inline]
    pub const fn function(self) -> u8 {
        (self.0 as u8) & 7
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus(), self.device(), self.function())
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A domain identifier (DID), as programmed in context entries and named by
/// domain-selective invalidations (§3.4.3, §9.3). How many bits are
/// valid is given by CAP.ND.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct DomainId(u16);

impl DomainId {
    /// Wraps a raw domain id.
    #[inline]
    pub const fn new(raw: u16) -> Self {
        Self(raw)
    }

    /// The raw domain id.
    #[inline]
    pub const fn raw(self) -> u16 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_id_fields() {
        // QEMU's edu at 00:01.0 issues requests with source id 0x0008.
        let edu = SourceId::new(0, 1, 0).unwrap();
        assert_eq!(edu.raw(), 0x0008);
        assert_eq!((edu.bus(), edu.devfn(), edu.device(), edu.function()), (0, 8, 1, 0));
        let s = SourceId::from_raw(0xab_fd);
        assert_eq!((s.bus(), s.device(), s.function()), (0xab, 31, 5));
        assert_eq!(SourceId::new(0, 32, 0), None);
        assert_eq!(SourceId::new(0, 0, 8), None);
    }
}
