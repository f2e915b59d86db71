//! The PASID-cache invalidate descriptor, type 7 (section 6.5.2.2): drops
//! cached scalable-mode PASID-table entries. Valid only in a 256-bit queue.
//!
//! Quadword 0: type 3:0, G 5:4 (00b domain-selective, 01b PASID-selective,
//! 11b global; 10b reserved), DID 31:16, PASID 51:32; bits 8:6, 15:12 and
//! 63:52 reserved. Quadword 1 reserved.

use super::DescType;
use super::error::DescError;
use super::pasid::Pasid;
use super::raw::{RawDescriptor, check, with_type};
use crate::ids::DomainId;
use crate::regs::bits::{field, with_field};

/// Reserved bits of quadwords 0 and 1.
const RESERVED: [u64; 2] = [0xfff0_0000_0000_f1c0, u64::MAX];

/// What a PASID-cache invalidation covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PasidCacheScope {
    /// G = 00b: every PASID entry cached for the domain.
    Domain(DomainId),
    /// G = 01b: one PASID's entry in the domain.
    Pasid {
        /// The domain.
        domain: DomainId,
        /// The PASID.
        pasid: Pasid,
    },
    /// G = 11b: every cached PASID entry.
    Global,
}

/// Invalidates cached PASID-table entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PasidCacheInv {
    /// What to invalidate.
    pub scope: PasidCacheScope,
}

impl PasidCacheInv {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::PasidCache;

    /// The descriptor.
    pub const fn encode(self) -> RawDescriptor {
        let qw0 = with_type(Self::TYPE);
        let qw0 = match self.scope {
            PasidCacheScope::Domain(d) => with_field(qw0, 16, 31, d.raw() as u64),
            PasidCacheScope::Pasid { domain, pasid } => {
                let qw0 = with_field(qw0, 4, 5, 1);
                let qw0 = with_field(qw0, 16, 31, domain.raw() as u64);
                with_field(qw0, 32, 51, pasid.raw() as u64)
            }
            PasidCacheScope::Global => with_field(qw0, 4, 5, 3),
        };
        RawDescriptor::new(qw0, 0)
    }

    /// Decodes a PASID-cache invalidate descriptor. Fields the granularity
    /// does not use (PASID unless PASID-selective; DID for global) are
    /// ignored, as hardware ignores them.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        if let Err(e) = check(raw, Self::TYPE, RESERVED) {
            return Err(e);
        }
        let qw0 = raw.qw0();
        let domain = DomainId::new(field(qw0, 16, 31) as u16);
        let scope = match field(qw0, 4, 5) {
            0 => PasidCacheScope::Domain(domain),
            1 => PasidCacheScope::Pasid { domain, pasid: Pasid::from_field(field(qw0, 32, 51)) },
            3 => PasidCacheScope::Global,
            g => {
                return Err(DescError::InvalidGranularity { ty: Self::TYPE, granularity: g as u8 });
            }
        };
        Ok(Self { scope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // PASID-selective, domain 2, PASID 7: 7 | 1 << 4 | 2 << 16 | 7 << 32.
        // Cross-check with Linux: QI_PC_TYPE | QI_PC_GRAN(QI_PC_PASID_SEL)
        // (1 << 4) | QI_PC_DID(2) (2 << 16) | QI_PC_PASID(7) (7 << 32).
        let d = PasidCacheInv {
            scope: PasidCacheScope::Pasid {
                domain: DomainId::new(2),
                pasid: Pasid::new(7).unwrap(),
            },
        };
        assert_eq!(d.encode(), RawDescriptor::new(0x0000_0007_0002_0017, 0));
        assert_eq!(PasidCacheInv::decode(d.encode()), Ok(d));
        let dom = PasidCacheInv { scope: PasidCacheScope::Domain(DomainId::new(2)) };
        assert_eq!(dom.encode(), RawDescriptor::new(0x0002_0007, 0));
        let g = PasidCacheInv { scope: PasidCacheScope::Global };
        assert_eq!(g.encode(), RawDescriptor::new(0x37, 0));
        assert_eq!(
            PasidCacheInv::decode(RawDescriptor::new(0x27, 0)),
            Err(DescError::InvalidGranularity { ty: DescType::PasidCache, granularity: 2 })
        );
    }
}
