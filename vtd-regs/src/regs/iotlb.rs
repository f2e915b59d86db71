//! IVA_REG and IOTLB_REG: register-based IOTLB invalidation (§10.4.8). Both sit at the offset ECAP.IRO reports, IVA_REG first and
//! IOTLB_REG 8 bytes after it.

use super::bits::{bit_fields, field, with_field};
use super::ecap::{Ecap, IotlbRegisterOffset};
use crate::addr::{Iova, PAGE_SHIFT};
use crate::ids::DomainId;
use crate::scope::{AddressMaskOrder, Drain, Granularity, IotlbScope};

/// Invalidate address register (64-bit, at ECAP.IRO × 16), §10.4.8.1:
/// the page range of a page-selective IOTLB invalidation.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Iva(pub u64);

bit_fields!(Iva: u64 {
    /// IH (bit 6): invalidation hint: only leaf entries changed, so cached
    /// paging-structure entries may be kept.
    6 => ih / with_ih;
});

impl Iva {
    /// The byte offset of IVA_REG on a unit with this ECAP.
    pub const fn offset(ecap: Ecap) -> usize {
        ecap.iro().iva()
    }
    /// ADDR (bits 63:12): the first page to invalidate.
    pub const fn addr(self) -> Iova {
        Iova::new(self.0 & !0xfff)
    }
    /// This value with ADDR replaced (the address's low 12 bits are dropped).
    #[must_use]
    pub const fn with_addr(self, addr: Iova) -> Self {
        Self((self.0 & 0xfff) | (addr.as_u64() & !0xfff))
    }
    /// AM (bits 5:0): the address mask; 2^AM pages are invalidated.
    pub const fn am(self) -> AddressMaskOrder {
        field(self.0, 0, 5) as u8
    }
    /// This value with AM replaced.
    #[must_use]
    pub const fn with_am(self, order: AddressMaskOrder) -> Self {
        Self(with_field(self.0, 0, 5, order as u64))
    }
    /// The number of bytes the range covers, 2^(12 + AM), or `None` if that
    /// does not fit 64 bits.
    pub const fn span(self) -> Option<u64> {
        1u64.checked_shl(PAGE_SHIFT + self.am() as u32)
    }
}

/// IOTLB invalidate register (64-bit, at ECAP.IRO × 16 + 8), §10.4.8.2.
///
/// Software writes IVT = 1 with the requested granularity (IIRG), the domain
/// and the drain hints; the unit clears IVT when done and reports the
/// granularity it performed in IAIG.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct IotlbInv(pub u64);

bit_fields!(IotlbInv: u64 {
    /// IVT (bit 63): invalidate IOTLB; the unit clears it when done.
    63 => ivt / with_ivt;
    /// DR (bit 49): drain reads before completing (only if CAP.DRD).
    49 => dr / with_dr;
    /// DW (bit 48): drain writes before completing (only if CAP.DWD).
    48 => dw / with_dw;
});

impl IotlbInv {
    /// The byte offset of IOTLB_REG on a unit with this ECAP.
    pub const fn offset(ecap: Ecap) -> usize {
        ecap.iro().iotlb()
    }
    /// The register pair's offsets for an IRO value.
    pub const fn offsets(iro: IotlbRegisterOffset) -> (usize, usize) {
        (iro.iva(), iro.iotlb())
    }
    /// The command pair that invalidates `scope` with the `drain` hints: the
    /// IVA_REG value to write first (zero unless page-selective) and the
    /// IOTLB_REG value with IVT set.
    pub const fn invalidate(scope: IotlbScope, drain: Drain) -> (Iva, Self) {
        let c = Self(0)
            .with_ivt(true)
            .with_iirg(scope.granularity())
            .with_dr(drain.contains(Drain::READS))
            .with_dw(drain.contains(Drain::WRITES));
        match scope {
            IotlbScope::Global => (Iva(0), c),
            IotlbScope::Domain(d) => (Iva(0), c.with_did(d)),
            IotlbScope::Pages { domain, addr, order, leaf_only } => {
                (Iva(0).with_addr(addr).with_am(order).with_ih(leaf_only), c.with_did(domain))
            }
        }
    }
    /// IIRG (bits 61:60): the requested granularity; `None` if reserved (0).
    pub const fn iirg(self) -> Option<Granularity> {
        Granularity::from_field(field(self.0, 60, 61) as u8)
    }
    /// This value with IIRG replaced.
    #[must_use]
    pub const fn with_iirg(self, g: Granularity) -> Self {
        Self(with_field(self.0, 60, 61, g.field() as u64))
    }
    /// IAIG (bits 58:57): the granularity performed, valid once IVT is clear;
    /// `None` if 0 (the request was not performed).
    pub const fn iaig(self) -> Option<Granularity> {
        Granularity::from_field(field(self.0, 57, 58) as u8)
    }
    /// This value with IAIG replaced (the unit's side).
    #[must_use]
    pub const fn with_iaig(self, g: Option<Granularity>) -> Self {
        let f = match g {
            Some(g) => g.field(),
            None => 0,
        };
        Self(with_field(self.0, 57, 58, f as u64))
    }
    /// DID (bits 47:32): the domain of a domain- or page-selective request.
    pub const fn did(self) -> DomainId {
        DomainId::new(field(self.0, 32, 47) as u16)
    }
    /// This value with DID replaced.
    #[must_use]
    pub const fn with_did(self, did: DomainId) -> Self {
        Self(with_field(self.0, 32, 47, did.raw() as u64))
    }
    /// The drain hints requested.
    pub const fn drain(self) -> Drain {
        let r = if self.dr() { Drain::READS.bits() } else { 0 };
        let w = if self.dw() { Drain::WRITES.bits() } else { 0 };
        Drain::from_bits_retain(r | w)
    }
    /// The scope the pair (`iva`, `self`) requests, or `None` if IIRG is
    /// reserved. A page-selective request whose ADDR is not aligned to its
    /// AM gives the scope of the aligned range that contains it, as the unit
    /// ignores the low address bits (§10.4.8.1).
    pub const fn scope(self, iva: Iva) -> Option<IotlbScope> {
        match self.iirg() {
            Some(Granularity::Global) => Some(IotlbScope::Global),
            Some(Granularity::Domain) => Some(IotlbScope::Domain(self.did())),
            Some(Granularity::Selective) => {
                let order = if iva.am() > 51 { 51 } else { iva.am() };
                let addr = iva.addr().align_down(1u64 << (PAGE_SHIFT + order as u32));
                Some(IotlbScope::Pages { domain: self.did(), addr, order, leaf_only: iva.ih() })
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        // Linux: DMA_TLB_IVT = 1 << 63, DMA_TLB_GLOBAL_FLUSH = 1 << 60,
        // DMA_TLB_DSI_FLUSH = 2 << 60, DMA_TLB_PSI_FLUSH = 3 << 60,
        // DMA_TLB_READ_DRAIN = 1 << 49, DMA_TLB_WRITE_DRAIN = 1 << 48,
        // DMA_TLB_DID(id) = id << 32.
        let (iva, g) = IotlbInv::invalidate(IotlbScope::Global, Drain::empty());
        assert_eq!((iva.0, g.0), (0, 0x9000_0000_0000_0000));
        let (_, d) = IotlbInv::invalidate(IotlbScope::Domain(DomainId::new(3)), Drain::all());
        assert_eq!(d.0, 0xa003_0003_0000_0000);
        assert_eq!(d.drain(), Drain::all());
        let s = IotlbScope::pages(DomainId::new(1), Iova::new(0x40_0000), 9, true).unwrap();
        let (iva, p) = IotlbInv::invalidate(s, Drain::WRITES);
        assert_eq!(iva.0, 0x40_0049);
        assert_eq!(p.0, 0xb001_0001_0000_0000);
        assert_eq!(p.scope(iva), Some(s));
        assert_eq!(iva.span(), Some(2 << 20));
        assert_eq!(Iva(0x3f).span(), None);
    }

    #[test]
    fn completion_and_offsets() {
        let done =
            IotlbInv(0xa003_0000_0000_0000).with_ivt(false).with_iaig(Some(Granularity::Global));
        assert_eq!(done.0, 0x2203_0000_0000_0000);
        assert_eq!(done.iaig(), Some(Granularity::Global));
        assert_eq!(IotlbInv(0).iaig(), None);
        // QEMU: ECAP.IRO = 0xf, so IVA_REG at 0xf0 and IOTLB_REG at 0xf8.
        let e = Ecap(0xf0_0f4a);
        assert_eq!((Iva::offset(e), IotlbInv::offset(e)), (0xf0, 0xf8));
        assert_eq!(IotlbInv::offsets(e.iro()), (0xf0, 0xf8));
        // A misaligned ADDR decodes to the aligned range containing it.
        let sc = IotlbInv(0).with_iirg(Granularity::Selective).scope(Iva(0x5001));
        assert!(
            matches!(sc, Some(IotlbScope::Pages { addr, order: 1, .. }) if addr == Iova::new(0x4000))
        );
        assert_eq!(IotlbInv(0).scope(Iva(0x3f)).map(|s| s.granularity()), None);
    }
}
