//! What an invalidation covers: the scopes (granularities) shared by the
//! register-based invalidation interface (CCMD, IOTLB_REG; §10.4.7 and
//! §10.4.8) and the queued invalidation descriptors (§6.5.2). Both
//! encode the same three granularities, global, domain-selective and
//! device/page-selective, as 1, 2 and 3.

use core::fmt;

use crate::addr::{Iova, PAGE_SHIFT};
use crate::ids::{DomainId, SourceId};

/// An invalidation granularity as encoded in CCMD.CIRG/CAIG, IOTLB_REG.IIRG/
/// IAIG and the G field of context-cache and IOTLB descriptors.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Granularity {
    /// 01b: everything.
    Global,
    /// 10b: one domain.
    Domain,
    /// 11b: one device (context cache) or a range of pages (IOTLB).
    Selective,
}

impl Granularity {
    /// The 2-bit encoding.
    pub const fn field(self) -> u8 {
        match self {
            Granularity::Global => 1,
            Granularity::Domain => 2,
            Granularity::Selective => 3,
        }
    }
    /// Decodes the 2-bit field; 0 is reserved and gives `None`.
    pub const fn from_field(g: u8) -> Option<Self> {
        match g & 3 {
            1 => Some(Granularity::Global),
            2 => Some(Granularity::Domain),
            3 => Some(Granularity::Selective),
            _ => None,
        }
    }
}

/// The function mask of a device-selective context-cache invalidation
/// (CCMD.FM, §10.4.7): how many low bits of the function number are
/// ignored when matching the source id, so all functions of a device can be
/// invalidated at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum FunctionMask {
    /// 00b: match the source id exactly.
    #[default]
    None,
    /// 01b: ignore function bit 2.
    Bit2,
    /// 10b: ignore function bits 2:1.
    Bits2To1,
    /// 11b: ignore function bits 2:0 (every function of the device).
    Bits2To0,
}

impl FunctionMask {
    /// The 2-bit encoding.
    pub const fn field(self) -> u8 {
        match self {
            FunctionMask::None => 0,
            FunctionMask::Bit2 => 1,
            FunctionMask::Bits2To1 => 2,
            FunctionMask::Bits2To0 => 3,
        }
    }
    /// Decodes the 2-bit field (every value is defined).
    pub const fn from_field(fm: u8) -> Self {
        match fm & 3 {
            0 => FunctionMask::None,
            1 => FunctionMask::Bit2,
            2 => FunctionMask::Bits2To1,
            _ => FunctionMask::Bits2To0,
        }
    }
    /// Whether `sid` is covered by an invalidation naming `target` with this mask.
    pub const fn matches(self, target: SourceId, sid: SourceId) -> bool {
        let ignore = (1u16 << self.field()) - 1;
        // FM masks the most significant function bits first: 1 = bit 2,
        // 2 = bits 2:1, 3 = bits 2:0.
        let ignore = (ignore << (3 - self.field())) & 7;
        target.raw() & !ignore == sid.raw() & !ignore
    }
}

/// What a context-cache invalidation covers (§6.5.1 and §10.4.7).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ContextScope {
    /// Every cached context entry.
    Global,
    /// Every cached context entry of one domain.
    Domain(DomainId),
    /// The context entries of one device (of the functions the mask leaves).
    Device {
        /// The domain the device's context entry was programmed with.
        domain: DomainId,
        /// The device.
        source: SourceId,
        /// Which function bits to ignore.
        function_mask: FunctionMask,
    },
}

impl ContextScope {
    /// The granularity this scope is encoded with.
    pub const fn granularity(self) -> Granularity {
        match self {
            ContextScope::Global => Granularity::Global,
            ContextScope::Domain(_) => Granularity::Domain,
            ContextScope::Device { .. } => Granularity::Selective,
        }
    }
}

/// The address-mask order of a page-selective IOTLB invalidation (IVA.AM,
/// descriptor AM; §6.5.2.3): it covers 2^order pages starting at an
/// address aligned to that size. CAP.MAMV caps the order a unit accepts.
pub type AddressMaskOrder = u8;

/// What an IOTLB invalidation covers (§6.5.1 and §10.4.8).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum IotlbScope {
    /// Every cached translation of every domain.
    Global,
    /// Every cached translation of one domain.
    Domain(DomainId),
    /// 2^`order` pages of one domain starting at `addr`, built with
    /// [`IotlbScope::pages`].
    Pages {
        /// The domain.
        domain: DomainId,
        /// First IOVA covered, aligned to 2^(12 + order) bytes.
        addr: Iova,
        /// Address mask: 2^order pages are covered.
        order: AddressMaskOrder,
        /// Invalidation hint (IH): only leaf entries changed, cached
        /// non-leaf (paging-structure) entries may be kept.
        leaf_only: bool,
    },
}

/// A page-selective scope that is not naturally aligned or too large.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MisalignedScope {
    /// The address that was given.
    pub addr: Iova,
    /// The order that was given.
    pub order: AddressMaskOrder,
}

impl fmt::Display for MisalignedScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IOVA {:#x} is not aligned to 2^{} pages", self.addr.as_u64(), self.order)
    }
}

impl core::error::Error for MisalignedScope {}

impl IotlbScope {
    /// The page-selective scope of 2^`order` pages at `addr`, which must be
    /// aligned to that size; orders beyond 51 are rejected (2^52 pages would be the
    /// whole 64-bit space, whose size overflows a `u64`).
    pub const fn pages(
        domain: DomainId,
        addr: Iova,
        order: AddressMaskOrder,
        leaf_only: bool,
    ) -> Result<Self, MisalignedScope> {
        if order > 51 || !addr.is_aligned(1u64 << (PAGE_SHIFT + order as u32)) {
            return Err(MisalignedScope { addr, order });
        }
        Ok(IotlbScope::Pages { domain, addr, order, leaf_only })
    }

    /// The granularity this scope is encoded with.
    pub const fn granularity(self) -> Granularity {
        match self {
            IotlbScope::Global => Granularity::Global,
            IotlbScope::Domain(_) => Granularity::Domain,
            IotlbScope::Pages { .. } => Granularity::Selective,
        }
    }

    /// The domain named, if any.
    pub const fn domain(self) -> Option<DomainId> {
        match self {
            IotlbScope::Global => None,
            IotlbScope::Domain(d) | IotlbScope::Pages { domain: d, .. } => Some(d),
        }
    }

    /// Whether a cached translation of `iova` in `domain` falls in this scope.
    pub const fn covers(self, domain: DomainId, iova: Iova) -> bool {
        match self {
            IotlbScope::Global => true,
            IotlbScope::Domain(d) => d.raw() == domain.raw(),
            IotlbScope::Pages { domain: d, addr, order, .. } => {
                let shift = PAGE_SHIFT + order as u32;
                d.raw() == domain.raw() && iova.as_u64() >> shift == addr.as_u64() >> shift
            }
        }
    }
}

bitflags::bitflags! {
    /// Drain requests of an IOTLB invalidation (DR, DW; §6.5.2.3),
    /// allowed where CAP.DRD / CAP.DWD say so.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct Drain: u8 {
        /// Drain reads in flight before completing.
        const READS = 1 << 0;
        /// Drain writes in flight before completing.
        const WRITES = 1 << 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_encodings() {
        for g in [Granularity::Global, Granularity::Domain, Granularity::Selective] {
            assert_eq!(Granularity::from_field(g.field()), Some(g));
        }
        assert_eq!(Granularity::from_field(0), None);
    }

    #[test]
    fn function_mask_matching() {
        let dev = SourceId::new(3, 4, 0).unwrap();
        let f1 = SourceId::new(3, 4, 1).unwrap();
        let f4 = SourceId::new(3, 4, 4).unwrap();
        let other = SourceId::new(3, 5, 0).unwrap();
        assert!(FunctionMask::None.matches(dev, dev));
        assert!(!FunctionMask::None.matches(dev, f1));
        assert!(FunctionMask::Bit2.matches(dev, f4));
        assert!(!FunctionMask::Bit2.matches(dev, f1));
        assert!(FunctionMask::Bits2To1.matches(dev, SourceId::new(3, 4, 6).unwrap()));
        assert!(!FunctionMask::Bits2To1.matches(dev, f1));
        assert!(FunctionMask::Bits2To0.matches(dev, f1));
        assert!(!FunctionMask::Bits2To0.matches(dev, other));
    }

    #[test]
    fn page_scope_alignment_and_cover() {
        let d = DomainId::new(7);
        assert!(IotlbScope::pages(d, Iova::new(0x3000), 1, false).is_err());
        let s = IotlbScope::pages(d, Iova::new(0x4000), 2, false).unwrap();
        assert!(s.covers(d, Iova::new(0x4000)));
        assert!(s.covers(d, Iova::new(0x7fff)));
        assert!(!s.covers(d, Iova::new(0x8000)));
        assert!(!s.covers(DomainId::new(8), Iova::new(0x4000)));
        assert!(IotlbScope::Global.covers(DomainId::new(1), Iova::new(0)));
        assert!(IotlbScope::pages(d, Iova::new(0), 53, false).is_err());
    }
}
