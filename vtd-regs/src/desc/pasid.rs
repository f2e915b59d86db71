//! Process address space identifiers, as the PASID-based descriptors name
//! them (section 3.4.5, 6.5.2.4).

use core::fmt;

/// A 20-bit process address space identifier (PASID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pasid(u32);

impl Pasid {
    /// Number of bits of a PASID.
    pub const BITS: u32 = 20;
    /// The largest PASID.
    pub const MAX: Pasid = Pasid((1 << Self::BITS) - 1);

    /// The PASID `raw`, or `None` if it does not fit 20 bits.
    #[inline]
    pub const fn new(raw: u32) -> Option<Self> {
        if raw > Self::MAX.0 { None } else { Some(Self(raw)) }
    }

    /// The low 20 bits of `raw` (a descriptor field).
    #[inline]
    pub(crate) const fn from_field(raw: u64) -> Self {
        Self((raw as u32) & Self::MAX.0)
    }

    /// The raw value.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Pasid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pasid({:#x})", self.0)
    }
}
