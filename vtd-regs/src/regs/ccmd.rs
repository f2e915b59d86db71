//! CCMD_REG: register-based context-cache invalidation (§10.4.7).

use super::bits::{bit_fields, field, with_field};
use crate::ids::{DomainId, SourceId};
use crate::mmio::register;
use crate::scope::{ContextScope, FunctionMask, Granularity};

/// Context command register (64-bit, offset 0x28), §10.4.7.
///
/// Software writes ICC = 1 with the requested granularity (CIRG) and the
/// domain, source id and function mask it needs; the unit clears ICC when the
/// invalidation is done and reports the granularity it actually performed in
/// CAIG.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Ccmd(pub u64);
register!(Ccmd, super::offset::CCMD, u64, ReadWrite);

bit_fields!(Ccmd: u64 {
    /// ICC (bit 63): invalidate context cache; the unit clears it when done.
    63 => icc / with_icc;
});

impl Ccmd {
    /// The command that invalidates `scope`: ICC set, CIRG and the fields the
    /// scope names.
    pub const fn invalidate(scope: ContextScope) -> Self {
        let c = Self(0).with_icc(true).with_cirg(scope.granularity());
        match scope {
            ContextScope::Global => c,
            ContextScope::Domain(d) => c.with_did(d),
            ContextScope::Device { domain, source, function_mask } => {
                c.with_did(domain).with_sid(source).with_fm(function_mask)
            }
        }
    }
    /// CIRG (bits 62:61): the requested granularity; `None` if reserved (0).
    pub const fn cirg(self) -> Option<Granularity> {
        Granularity::from_field(field(self.0, 61, 62) as u8)
    }
    /// This value with CIRG replaced.
    #[must_use]
    pub const fn with_cirg(self, g: Granularity) -> Self {
        Self(with_field(self.0, 61, 62, g.field() as u64))
    }
    /// CAIG (bits 60:59): the granularity the unit performed, valid once ICC
    /// is clear; `None` if 0 (no invalidation was done).
    pub const fn caig(self) -> Option<Granularity> {
        Granularity::from_field(field(self.0, 59, 60) as u8)
    }
    /// This value with CAIG replaced (the unit's side).
    #[must_use]
    pub const fn with_caig(self, g: Option<Granularity>) -> Self {
        let f = match g {
            Some(g) => g.field(),
            None => 0,
        };
        Self(with_field(self.0, 59, 60, f as u64))
    }
    /// FM (bits 33:32): the function mask of a device-selective request.
    pub const fn fm(self) -> FunctionMask {
        FunctionMask::from_field(field(self.0, 32, 33) as u8)
    }
    /// This value with FM replaced.
    #[must_use]
    pub const fn with_fm(self, fm: FunctionMask) -> Self {
        Self(with_field(self.0, 32, 33, fm.field() as u64))
    }
    /// SID (bits 31:16): the device of a device-selective request.
    pub const fn sid(self) -> SourceId {
        SourceId::from_raw(field(self.0, 16, 31) as u16)
    }
    /// This value with SID replaced.
    #[must_use]
    pub const fn with_sid(self, sid: SourceId) -> Self {
        Self(with_field(self.0, 16, 31, sid.raw() as u64))
    }
    /// DID (bits 15:0): the domain of a domain- or device-selective request.
    pub const fn did(self) -> DomainId {
        DomainId::new(field(self.0, 0, 15) as u16)
    }
    /// This value with DID replaced.
    #[must_use]
    pub const fn with_did(self, did: DomainId) -> Self {
        Self(with_field(self.0, 0, 15, did.raw() as u64))
    }
    /// The scope the command requests, or `None` if CIRG is reserved.
    pub const fn scope(self) -> Option<ContextScope> {
        match self.cirg() {
            Some(Granularity::Global) => Some(ContextScope::Global),
            Some(Granularity::Domain) => Some(ContextScope::Domain(self.did())),
            Some(Granularity::Selective) => Some(ContextScope::Device {
                domain: self.did(),
                source: self.sid(),
                function_mask: self.fm(),
            }),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        // Linux: DMA_CCMD_ICC = 1 << 63, DMA_CCMD_GLOBAL_INVL = 1 << 61,
        // DMA_CCMD_DOMAIN_INVL = 2 << 61, DMA_CCMD_DEVICE_INVL = 3 << 61,
        // DMA_CCMD_SID(s) = s << 16, DMA_CCMD_FM(m) = m << 32.
        assert_eq!(Ccmd::invalidate(ContextScope::Global).0, 0xa000_0000_0000_0000);
        assert_eq!(
            Ccmd::invalidate(ContextScope::Domain(DomainId::new(5))).0,
            0xc000_0000_0000_0005
        );
        let dev = ContextScope::Device {
            domain: DomainId::new(0x12),
            source: SourceId::new(0, 3, 0).unwrap(),
            function_mask: FunctionMask::Bits2To0,
        };
        let c = Ccmd::invalidate(dev);
        assert_eq!(c.0, 0xe000_0003_0018_0012);
        assert_eq!(c.scope(), Some(dev));
        assert!(c.icc());
    }

    #[test]
    fn completion() {
        // The unit clears ICC and reports a global invalidation in CAIG (bits 60:59 = 01).
        let done = Ccmd(0xc000_0000_0000_0005).with_icc(false).with_caig(Some(Granularity::Global));
        assert_eq!(done.0, 0x4800_0000_0000_0005);
        assert_eq!(done.caig(), Some(Granularity::Global));
        assert_eq!(done.cirg(), Some(Granularity::Domain));
        assert_eq!(Ccmd(0).caig(), None);
        assert_eq!(Ccmd(0).scope(), None);
    }
}
