//! Context entries (VT-d §9.3 legacy mode, §9.4 scalable mode): per device
//! function, which domain its requests belong to and how they are
//! translated. A legacy context table holds 256 entries indexed by devfn.

use static_assertions::const_assert_eq;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::{DomainId, MemError, PhysAddr, PhysMem, SourceId};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::raw::{haw_frame_mask, read128, write128};

/// Entries in a legacy context table (one per device function).
pub const CONTEXT_ENTRIES: usize = 256;

/// P, bit 0.
const PRESENT: u64 = 1 << 0;
/// FPD (fault processing disable), bit 1.
const FPD: u64 = 1 << 1;
/// TT (translation type), bits 3:2.
const TT_SHIFT: u32 = 2;
const TT_MASK: u64 = 0b11 << TT_SHIFT;
/// SLPTPTR, bits 63:12.
const SLPTPTR_MASK: u64 = !0xfff;
/// Reserved bits 11:4 of the low word.
const LO_RESERVED: u64 = 0xff0;
/// AW, bits 66:64 (2:0 of the high word).
const AW_MASK: u64 = 0b111;
/// DID, bits 87:72 (23:8 of the high word).
const DID_SHIFT: u32 = 8;
/// Reserved bits 71 and 127:88 (7 and 63:24 of the high word); bits 70:67
/// are ignored.
const HI_RESERVED: u64 = 0xffff_ffff_ff00_0080;

/// The translation type of a legacy context entry (TT, §9.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TranslationType {
    /// 00b: untranslated requests go through the second-level table;
    /// translated and translation requests are blocked (fault Dh).
    Untranslated,
    /// 01b: as above, and the device may also use a device-TLB (ATS);
    /// valid only when ECAP.DT is set.
    WithDeviceTlb,
    /// 10b: untranslated requests pass through untranslated; valid only
    /// when ECAP.PT is set.
    PassThrough,
}

impl TranslationType {
    /// The 2-bit TT encoding.
    #[inline]
    pub const fn field(self) -> u8 {
        match self {
            TranslationType::Untranslated => 0b00,
            TranslationType::WithDeviceTlb => 0b01,
            TranslationType::PassThrough => 0b10,
        }
    }

    /// Decodes a TT field; 11b is reserved.
    #[inline]
    pub const fn from_field(tt: u8) -> Option<Self> {
        match tt {
            0b00 => Some(TranslationType::Untranslated),
            0b01 => Some(TranslationType::WithDeviceTlb),
            0b10 => Some(TranslationType::PassThrough),
            _ => None,
        }
    }
}

/// A legacy-mode context entry (§9.3), 128 bits.
///
/// Low word: P (0), FPD (1), TT (3:2), SLPTPTR (63:12). High word: AW (2:0),
/// DID (23:8). The rest is reserved, except bits 70:67, which are ignored.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ContextEntry {
    /// Bits 63:0.
    pub lo: u64,
    /// Bits 127:64.
    pub hi: u64,
}
const_assert_eq!(core::mem::size_of::<ContextEntry>(), 16);
const_assert_eq!(core::mem::align_of::<ContextEntry>(), 8);

impl ContextEntry {
    /// A not-present entry: requests from the device fault with reason 2h.
    pub const NOT_PRESENT: Self = Self { lo: 0, hi: 0 };

    /// A present entry that translates through the second-level table at
    /// `slptptr` (whose depth `agaw` gives) in domain `did`.
    #[inline]
    pub const fn translated(
        did: DomainId,
        slptptr: PhysAddr,
        agaw: Agaw,
        tt: TranslationType,
    ) -> Self {
        Self {
            lo: (slptptr.as_u64() & SLPTPTR_MASK) | ((tt.field() as u64) << TT_SHIFT) | PRESENT,
            hi: (agaw.aw_field() as u64) | ((did.raw() as u64) << DID_SHIFT),
        }
    }

    /// A present pass-through entry in domain `did`. §9.3 asks AW to hold
    /// the largest AGAW the unit supports.
    #[inline]
    pub const fn pass_through(did: DomainId, agaw: Agaw) -> Self {
        Self::translated(did, PhysAddr::ZERO, agaw, TranslationType::PassThrough)
    }

    /// This entry with FPD (fault processing disable) set to `on`.
    #[inline]
    #[must_use]
    pub const fn with_fpd(self, on: bool) -> Self {
        Self { lo: if on { self.lo | FPD } else { self.lo & !FPD }, hi: self.hi }
    }

    /// P, bit 0.
    #[inline]
    pub const fn present(self) -> bool {
        self.lo & PRESENT != 0
    }

    /// FPD, bit 1: faults from this device are not recorded or reported.
    #[inline]
    pub const fn fpd(self) -> bool {
        self.lo & FPD != 0
    }

    /// TT, bits 3:2, decoded; `None` for the reserved value 11b.
    #[inline]
    pub const fn translation_type(self) -> Option<TranslationType> {
        TranslationType::from_field(((self.lo & TT_MASK) >> TT_SHIFT) as u8)
    }

    /// SLPTPTR, bits 63:12: the root of the second-level table.
    #[inline]
    pub const fn slptptr(self) -> PhysAddr {
        PhysAddr::new(self.lo & SLPTPTR_MASK)
    }

    /// AW, bits 66:64, decoded; `None` for a reserved value.
    #[inline]
    pub const fn agaw(self) -> Option<Agaw> {
        Agaw::from_aw_field((self.hi & AW_MASK) as u8)
    }

    /// DID, bits 87:72.
    #[inline]
    pub const fn domain_id(self) -> DomainId {
        DomainId::new((self.hi >> DID_SHIFT) as u16)
    }

    /// Whether a reserved bit is set, for a unit whose host address width
    /// is `haw` bits (fault reason Bh when the entry is present).
    #[inline]
    pub const fn has_reserved_bits(self, haw: u8) -> bool {
        self.hi & HI_RESERVED != 0
            || self.lo & (LO_RESERVED | (SLPTPTR_MASK & !haw_frame_mask(haw))) != 0
    }

    /// Where the entry of `devfn` lives in the context table at `table`
    /// (taken 4 KiB aligned).
    #[inline]
    pub const fn address(table: PhysAddr, devfn: u8) -> PhysAddr {
        PhysAddr::new((table.as_u64() & !0xfff) | (devfn as u64 * 16))
    }

    /// Reads `sid`'s entry from the context table at `table`.
    pub fn read<M: PhysMem + ?Sized>(
        mem: &M,
        table: PhysAddr,
        sid: SourceId,
    ) -> Result<Self, MemError> {
        let (lo, hi) = read128(mem, Self::address(table, sid.devfn()))?;
        Ok(Self { lo, hi })
    }

    /// Writes `sid`'s entry into the context table at `table` (high word
    /// first, so P is set last).
    pub fn write<M: PhysMem + ?Sized>(
        self,
        mem: &M,
        table: PhysAddr,
        sid: SourceId,
    ) -> Result<(), MemError> {
        write128(mem, Self::address(table, sid.devfn()), self.lo, self.hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_known_answers() {
        // §9.3: DID 1, 4-level table (AW = 010b) at 0x1234_5000, TT = 00b.
        let e = ContextEntry::translated(
            DomainId::new(1),
            PhysAddr::new(0x1234_5000),
            Agaw::Bits48,
            TranslationType::Untranslated,
        );
        assert_eq!((e.lo, e.hi), (0x1234_5001, 0x0102));
        assert!(e.present() && !e.fpd());
        assert_eq!(e.translation_type(), Some(TranslationType::Untranslated));
        assert_eq!(e.agaw(), Some(Agaw::Bits48));
        assert_eq!(e.domain_id(), DomainId::new(1));
        assert_eq!(e.slptptr(), PhysAddr::new(0x1234_5000));
        assert!(!e.has_reserved_bits(39));

        // Pass-through (TT = 10b) in domain 0xabcd, 3-level AW (001b), FPD.
        let p = ContextEntry::pass_through(DomainId::new(0xabcd), Agaw::Bits39).with_fpd(true);
        assert_eq!((p.lo, p.hi), (0b1011, 0x00ab_cd01));
        assert_eq!(p.translation_type(), Some(TranslationType::PassThrough));

        // Device-TLB (TT = 01b), 5-level (AW = 011b).
        let d = ContextEntry::translated(
            DomainId::new(0xffff),
            PhysAddr::new(0x8000),
            Agaw::Bits57,
            TranslationType::WithDeviceTlb,
        );
        assert_eq!((d.lo, d.hi), (0x8005, 0x00ff_ff03));

        assert_eq!(ContextEntry { lo: 0b1101, hi: 0 }.translation_type(), None);
        assert_eq!(ContextEntry { lo: 1, hi: 4 }.agaw(), None);
        assert!(ContextEntry { lo: 0x11, hi: 1 }.has_reserved_bits(48));
        assert!(ContextEntry { lo: 1, hi: 0x81 }.has_reserved_bits(48));
        assert!(ContextEntry { lo: 1, hi: 1 << 24 }.has_reserved_bits(48));
        assert!(!ContextEntry { lo: 1, hi: 0x79 }.has_reserved_bits(48), "bits 70:67 are ignored");
        assert!(ContextEntry { lo: (1 << 40) | 1, hi: 1 }.has_reserved_bits(39));
        assert_eq!(ContextEntry::address(PhysAddr::new(0x3000), 0x08), PhysAddr::new(0x3080));
    }
}
