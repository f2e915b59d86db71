//! CAP_REG: what the remapping hardware can do (§10.4.2).

use core::fmt;

use super::bits::{bit_fields, field, with_field};
use crate::addr::PageSize;
use crate::mmio::register;

/// Capability register (read-only, 64-bit, offset 0x08), §10.4.2.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct Cap(pub u64);
register!(Cap, super::offset::CAP, u64, ReadOnly);

/// CAP.ND: how many domain-id bits the unit supports (bits 2:0). Value `n`
/// means 4 + 2n bits; 7 is reserved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct DomainBits(u8);

impl DomainBits {
    /// Wraps the 3-bit ND field value.
    pub const fn from_field(nd: u8) -> Self {
        Self(nd & 7)
    }
    /// The raw ND field value.
    pub const fn field(self) -> u8 {
        self.0
    }
    /// The ND value whose domain ids have `bits` bits (4, 6, ..., 16).
    pub const fn from_id_bits(bits: u8) -> Option<Self> {
        if bits < 4 || bits > 16 || bits & 1 != 0 { None } else { Some(Self((bits - 4) / 2)) }
    }
    /// Width of a domain id in bits, or `None` for the reserved value 7.
    pub const fn id_bits(self) -> Option<u8> {
        if self.0 == 7 { None } else { Some(4 + 2 * self.0) }
    }
    /// Number of domains supported, or `None` for the reserved value 7.
    pub const fn domains(self) -> Option<u32> {
        match self.id_bits() {
            Some(b) => Some(1 << b),
            None => None,
        }
    }
}

/// An adjusted guest address width and the number of second-level paging
/// levels that goes with it (§3.6): the values SAGAW can report and
/// a context entry's AW field selects.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Agaw {
    /// 39-bit IOVA space, 3-level table.
    Bits39,
    /// 48-bit IOVA space, 4-level table.
    Bits48,
    /// 57-bit IOVA space, 5-level table.
    Bits57,
}

impl Agaw {
    /// All widths, narrowest first.
    pub const ALL: [Agaw; 3] = [Agaw::Bits39, Agaw::Bits48, Agaw::Bits57];

    /// The address width in bits.
    pub const fn bits(self) -> u8 {
        match self {
            Agaw::Bits39 => 39,
            Agaw::Bits48 => 48,
            Agaw::Bits57 => 57,
        }
    }
    /// The number of second-level paging levels.
    pub const fn levels(self) -> u8 {
        match self {
            Agaw::Bits39 => 3,
            Agaw::Bits48 => 4,
            Agaw::Bits57 => 5,
        }
    }
    /// The encoding of this width in a context entry's AW field and in the
    /// bit position of SAGAW (§9.3): 1, 2 or 3.
    pub const fn aw_field(self) -> u8 {
        match self {
            Agaw::Bits39 => 1,
            Agaw::Bits48 => 2,
            Agaw::Bits57 => 3,
        }
    }
    /// Decodes a context entry's AW field; other values are reserved.
    pub const fn from_aw_field(aw: u8) -> Option<Self> {
        match aw {
            1 => Some(Agaw::Bits39),
            2 => Some(Agaw::Bits48),
            3 => Some(Agaw::Bits57),
            _ => None,
        }
    }
    /// The narrowest width that covers `bits` address bits.
    pub const fn covering(bits: u8) -> Option<Self> {
        if bits <= 39 {
            Some(Agaw::Bits39)
        } else if bits <= 48 {
            Some(Agaw::Bits48)
        } else if bits <= 57 {
            Some(Agaw::Bits57)
        } else {
            None
        }
    }
}

bitflags::bitflags! {
    /// CAP.SAGAW (bits 12:8): the adjusted guest address widths, i.e. table
    /// depths, the unit supports for second-level translation (§10.4.2).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub struct Sagaw: u8 {
        /// 39-bit AGAW, 3-level page table.
        const BITS39_L3 = 1 << 1;
        /// 48-bit AGAW, 4-level page table.
        const BITS48_L4 = 1 << 2;
        /// 57-bit AGAW, 5-level page table.
        const BITS57_L5 = 1 << 3;
    }
}

impl Sagaw {
    /// The flag for one width.
    pub const fn of(agaw: Agaw) -> Self {
        Self::from_bits_retain(1 << agaw.aw_field())
    }
    /// Whether `agaw` is supported.
    pub const fn supports(self, agaw: Agaw) -> bool {
        self.contains(Self::of(agaw))
    }
    /// The narrowest supported width that covers `bits` address bits: the
    /// table depth a domain of that width should use on this unit.
    pub fn choose(self, bits: u8) -> Option<Agaw> {
        Agaw::ALL.into_iter().find(|a| a.bits() >= bits && self.supports(*a))
    }
}

/// CAP.MGAW (bits 21:16) and similar address-width fields: a width in bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(transparent)]
pub struct AddressWidth(pub u8);

impl AddressWidth {
    /// The width in bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// The largest address of this width, 2^bits - 1.
    pub const fn max_address(self) -> u64 {
        super::bits::mask(self.0 as u32)
    }
}

/// CAP.FRO (bits 33:24): where the fault recording registers start, in
/// 16-byte units from the register base.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct FaultRecordingOffset(pub u16);

impl FaultRecordingOffset {
    /// The byte offset of the first fault recording register.
    pub const fn byte_offset(self) -> usize {
        self.0 as usize * 16
    }
    /// The byte offset of fault recording register `index` (each 128 bits).
    pub const fn record(self, index: u16) -> usize {
        self.byte_offset() + index as usize * 16
    }
}

bitflags::bitflags! {
    /// CAP.SLLPS (bits 37:34): second-level superpage sizes supported.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub struct SecondLevelPageSizes: u8 {
        /// 2 MiB pages (21-bit offset).
        const SIZE_2MIB = 1 << 0;
        /// 1 GiB pages (30-bit offset).
        const SIZE_1GIB = 1 << 1;
    }
}

impl SecondLevelPageSizes {
    /// Whether a page of `size` may be mapped (4 KiB always may).
    pub const fn supports(self, size: PageSize) -> bool {
        match size {
            PageSize::Size4KiB => true,
            PageSize::Size2MiB => self.contains(Self::SIZE_2MIB),
            PageSize::Size1GiB => self.contains(Self::SIZE_1GIB),
        }
    }
}

/// CAP.NFR (bits 47:40): the number of fault recording registers, minus one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct FaultRecordCount(pub u8);

impl FaultRecordCount {
    /// The number of fault recording registers (1..=256).
    pub const fn count(self) -> u16 {
        self.0 as u16 + 1
    }
}

/// CAP.MAMV (bits 53:48): the largest address mask a page-selective IOTLB
/// invalidation may carry: up to 2^MAMV pages in one descriptor.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(transparent)]
pub struct MaxAddressMask(pub u8);

impl MaxAddressMask {
    /// The largest mask value (log2 of the largest page count).
    pub const fn max_order(self) -> u8 {
        self.0
    }
}

impl Cap {
    /// CAP.ND, bits 2:0.
    pub const fn nd(self) -> DomainBits {
        DomainBits::from_field(field(self.0, 0, 2) as u8)
    }
    /// This value with CAP.ND replaced.
    #[must_use]
    pub const fn with_nd(self, nd: DomainBits) -> Self {
        Self(with_field(self.0, 0, 2, nd.field() as u64))
    }
    /// CAP.SAGAW, bits 12:8.
    pub const fn sagaw(self) -> Sagaw {
        Sagaw::from_bits_retain(field(self.0, 8, 12) as u8)
    }
    /// This value with CAP.SAGAW replaced.
    #[must_use]
    pub const fn with_sagaw(self, s: Sagaw) -> Self {
        Self(with_field(self.0, 8, 12, s.bits() as u64))
    }
    /// CAP.MGAW, bits 21:16: the maximum guest address width (field + 1).
    pub const fn mgaw(self) -> AddressWidth {
        AddressWidth(field(self.0, 16, 21) as u8 + 1)
    }
    /// This value with CAP.MGAW set to `width` bits (1..=64).
    #[must_use]
    pub const fn with_mgaw(self, width: AddressWidth) -> Self {
        Self(with_field(self.0, 16, 21, width.0.saturating_sub(1) as u64))
    }
    /// CAP.FRO, bits 33:24.
    pub const fn fro(self) -> FaultRecordingOffset {
        FaultRecordingOffset(field(self.0, 24, 33) as u16)
    }
    /// This value with CAP.FRO replaced.
    #[must_use]
    pub const fn with_fro(self, fro: FaultRecordingOffset) -> Self {
        Self(with_field(self.0, 24, 33, fro.0 as u64))
    }
    /// CAP.SLLPS, bits 37:34.
    pub const fn sllps(self) -> SecondLevelPageSizes {
        SecondLevelPageSizes::from_bits_retain(field(self.0, 34, 37) as u8)
    }
    /// This value with CAP.SLLPS replaced.
    #[must_use]
    pub const fn with_sllps(self, s: SecondLevelPageSizes) -> Self {
        Self(with_field(self.0, 34, 37, s.bits() as u64))
    }
    /// CAP.NFR, bits 47:40.
    pub const fn nfr(self) -> FaultRecordCount {
        FaultRecordCount(field(self.0, 40, 47) as u8)
    }
    /// This value with CAP.NFR replaced.
    #[must_use]
    pub const fn with_nfr(self, n: FaultRecordCount) -> Self {
        Self(with_field(self.0, 40, 47, n.0 as u64))
    }
    /// CAP.MAMV, bits 53:48 (meaningful only when [`psi`](Self::psi) is set).
    pub const fn mamv(self) -> MaxAddressMask {
        MaxAddressMask(field(self.0, 48, 53) as u8)
    }
    /// This value with CAP.MAMV replaced.
    #[must_use]
    pub const fn with_mamv(self, m: MaxAddressMask) -> Self {
        Self(with_field(self.0, 48, 53, m.0 as u64))
    }
}

bit_fields!(Cap: u64 {
    /// CAP.AFL (bit 3): advanced fault logging supported.
    3 => afl / with_afl;
    /// CAP.RWBF (bit 4): software must flush the write buffer (GCMD.WBF)
    /// after changing tables.
    4 => rwbf / with_rwbf;
    /// CAP.PLMR (bit 5): protected low-memory region supported.
    5 => plmr / with_plmr;
    /// CAP.PHMR (bit 6): protected high-memory region supported.
    6 => phmr / with_phmr;
    /// CAP.CM (bit 7): caching mode: not-present and erroneous entries may be
    /// cached, so software must invalidate after making an entry present too.
    /// An emulated IOMMU sets it to learn of every map.
    7 => caching_mode / with_caching_mode;
    /// CAP.ZLR (bit 22): zero-length reads are supported.
    22 => zlr / with_zlr;
    /// CAP.PSI (bit 39): page-selective IOTLB invalidation supported.
    39 => psi / with_psi;
    /// CAP.DWD (bit 54): write draining on IOTLB invalidation supported.
    54 => dwd / with_dwd;
    /// CAP.DRD (bit 55): read draining on IOTLB invalidation supported.
    55 => drd / with_drd;
    /// CAP.FL1GP (bit 56): first-level 1 GiB pages supported.
    56 => fl1gp / with_fl1gp;
    /// CAP.PI (bit 59): posted interrupts supported.
    59 => pi / with_pi;
    /// CAP.FL5LP (bit 60): first-level 5-level paging supported.
    60 => fl5lp / with_fl5lp;
    /// CAP.ESIRTPS (bit 62): SIRTP also invalidates the interrupt entry cache.
    62 => esirtps / with_esirtps;
    /// CAP.ESRTPS (bit 63): SRTP also invalidates context, PASID and IOTLB caches.
    63 => esrtps / with_esrtps;
});

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cap")
            .field("raw", &format_args!("{:#x}", self.0))
            .field("nd", &self.nd())
            .field("sagaw", &self.sagaw())
            .field("mgaw", &self.mgaw())
            .field("fro", &format_args!("{:#x}", self.fro().byte_offset()))
            .field("sllps", &self.sllps())
            .field("nfr", &self.nfr().count())
            .field("psi", &self.psi())
            .field("mamv", &self.mamv().max_order())
            .field("cm", &self.caching_mode())
            .field("rwbf", &self.rwbf())
            .field("drd", &self.drd())
            .field("dwd", &self.dwd())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CAP read from QEMU 7.2 `intel-iommu` (q35, default options).
    const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
    /// CAP of QEMU with `aw-bits=48`.
    const QEMU_CAP_AW48: u64 = 0x00d2_008c_222f_0606;

    #[test]
    fn qemu_default_cap() {
        let c = Cap(QEMU_CAP);
        assert_eq!(c.nd().field(), 6);
        assert_eq!(c.nd().id_bits(), Some(16));
        assert_eq!(c.nd().domains(), Some(65536));
        assert_eq!(c.sagaw(), Sagaw::BITS39_L3);
        assert_eq!(c.sagaw().choose(39), Some(Agaw::Bits39));
        assert_eq!(c.sagaw().choose(48), None);
        assert_eq!(c.mgaw().bits(), 39);
        assert_eq!(c.fro().byte_offset(), 0x220);
        assert_eq!(c.nfr().count(), 1);
        assert!(c.psi());
        assert_eq!(c.mamv().max_order(), 18);
        assert_eq!(c.sllps(), SecondLevelPageSizes::SIZE_2MIB | SecondLevelPageSizes::SIZE_1GIB);
        assert!(c.sllps().supports(PageSize::Size1GiB));
        assert!(!c.caching_mode());
        assert!(c.drd() && c.dwd());
        assert!(!c.rwbf() && !c.afl() && !c.zlr() && !c.plmr() && !c.phmr());
    }

    #[test]
    fn qemu_aw48_cap() {
        let c = Cap(QEMU_CAP_AW48);
        assert_eq!(c.sagaw(), Sagaw::BITS39_L3 | Sagaw::BITS48_L4);
        assert_eq!(c.mgaw().bits(), 48);
        assert_eq!(c.sagaw().choose(40), Some(Agaw::Bits48));
    }

    #[test]
    fn encode_rebuilds_qemu_cap() {
        let c = Cap(0)
            .with_nd(DomainBits::from_id_bits(16).unwrap())
            .with_sagaw(Sagaw::BITS39_L3)
            .with_mgaw(AddressWidth(39))
            .with_fro(FaultRecordingOffset(0x22))
            .with_sllps(SecondLevelPageSizes::all())
            .with_psi(true)
            .with_nfr(FaultRecordCount(0))
            .with_mamv(MaxAddressMask(18))
            .with_dwd(true)
            .with_drd(true);
        assert_eq!(c.0, QEMU_CAP);
        assert_eq!(c.with_caching_mode(true).0, QEMU_CAP | 1 << 7);
    }

    #[test]
    fn agaw_encodings() {
        for a in Agaw::ALL {
            assert_eq!(Agaw::from_aw_field(a.aw_field()), Some(a));
            assert_eq!(Agaw::covering(a.bits()), Some(a));
            assert_eq!(a.levels() as u32 * 9 + 12, a.bits() as u32);
        }
        assert_eq!(Agaw::from_aw_field(0), None);
        assert_eq!(Agaw::from_aw_field(4), None);
        assert_eq!(DomainBits::from_field(7).id_bits(), None);
    }
}
