//! The context-cache invalidate descriptor, type 1 (section 6.5.2.1): the
//! queued form of a CCMD_REG invalidation (section 10.4.7), with the same
//! [`ContextScope`].
//!
//! Quadword 0: type 3:0, G 5:4, DID 31:16, SID 47:32, FM 49:48; bits 8:6,
//! 15:12 and 63:50 reserved. Quadword 1 reserved.

use super::DescType;
use super::error::DescError;
use super::raw::{RawDescriptor, check_domain_scoped, with_type};
use crate::ids::SourceId;
use crate::regs::bits::{field, with_field};
use crate::scope::{ContextScope, FunctionMask, Granularity};

/// Reserved bits of quadwords 0 and 1.
const RESERVED: [u64; 2] = [0xfffc_0000_0000_f1c0, u64::MAX];

/// Invalidates cached context entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct ContextCacheInv {
    /// What to invalidate.
    pub scope: ContextScope,
}

impl ContextCacheInv {
    /// This descriptor's type.
    pub const TYPE: DescType = DescType::ContextCache;

    /// The descriptor.
    pub const fn encode(self) -> RawDescriptor {
        let mut qw0 =
            with_field(with_type(Self::TYPE), 4, 5, self.scope.granularity().field() as u64);
        match self.scope {
            ContextScope::Global => {}
            ContextScope::Domain(d) => qw0 = with_field(qw0, 16, 31, d.raw() as u64),
            ContextScope::Device { domain, source, function_mask } => {
                qw0 = with_field(qw0, 16, 31, domain.raw() as u64);
                qw0 = with_field(qw0, 32, 47, source.raw() as u64);
                qw0 = with_field(qw0, 48, 49, function_mask.field() as u64);
            }
        }
        RawDescriptor::new(qw0, 0)
    }

    /// Decodes a context-cache invalidate descriptor. Fields the granularity
    /// does not use (DID for global; SID and FM unless device-selective) are
    /// ignored, as hardware ignores them.
    pub const fn decode(raw: RawDescriptor) -> Result<Self, DescError> {
        let (granularity, domain) = match check_domain_scoped(raw, Self::TYPE, RESERVED) {
            Ok(found) => found,
            Err(e) => return Err(e),
        };
        let qw0 = raw.qw0();
        let scope = match granularity {
            Granularity::Global => ContextScope::Global,
            Granularity::Domain => ContextScope::Domain(domain),
            Granularity::Selective => ContextScope::Device {
                domain,
                source: SourceId::from_raw(field(qw0, 32, 47) as u16),
                function_mask: FunctionMask::from_field(field(qw0, 48, 49) as u8),
            },
        };
        Ok(Self { scope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DomainId;

    #[test]
    fn device_selective_known_answer() {
        // Device-selective (G = 11b) for 00:01.0 (SID 0x0008) in domain 1,
        // FM = 0: type 1 | 3 << 4 | 1 << 16 | 0x8 << 32. Cross-check with
        // Linux: QI_CC_TYPE | QI_CC_GRAN(DMA_CCMD_DEVICE_INVL) |
        // QI_CC_DID(1) | QI_CC_SID(8) | QI_CC_FM(0), qw1 = 0.
        let d = ContextCacheInv {
            scope: ContextScope::Device {
                domain: DomainId::new(1),
                source: SourceId::new(0, 1, 0).unwrap(),
                function_mask: FunctionMask::None,
            },
        };
        let raw = d.encode();
        assert_eq!(raw, RawDescriptor::new(0x0000_0008_0001_0031, 0));
        assert_eq!(ContextCacheInv::decode(raw), Ok(d));
    }

    #[test]
    fn global_and_domain_known_answers() {
        let g = ContextCacheInv { scope: ContextScope::Global };
        assert_eq!(g.encode(), RawDescriptor::new(0x11, 0));
        let d = ContextCacheInv { scope: ContextScope::Domain(DomainId::new(0xabcd)) };
        assert_eq!(d.encode(), RawDescriptor::new(0xabcd_0021, 0));
        // FM = 11b sits in bits 49:48.
        let f = ContextCacheInv {
            scope: ContextScope::Device {
                domain: DomainId::new(0),
                source: SourceId::from_raw(0xffff),
                function_mask: FunctionMask::Bits2To0,
            },
        };
        assert_eq!(f.encode().qw0(), 0x0003_ffff_0000_0031);
    }

    #[test]
    fn rejects_bad_encodings() {
        assert_eq!(
            ContextCacheInv::decode(RawDescriptor::new(0x01, 0)),
            Err(DescError::InvalidGranularity { ty: DescType::ContextCache, granularity: 0 })
        );
        assert_eq!(
            ContextCacheInv::decode(RawDescriptor::new(0x11 | 1 << 50, 0)),
            Err(DescError::ReservedBits { qword: 0, bits: 1 << 50 })
        );
        assert_eq!(
            ContextCacheInv::decode(RawDescriptor::new(0x11, 1)),
            Err(DescError::ReservedBits { qword: 1, bits: 1 })
        );
    }
}
