//! Root entries (VT-d §9.1 legacy mode, §9.2 scalable mode): the 256-entry
//! root table that RTADDR_REG points at, indexed by a request's bus number,
//! each entry pointing at that bus's context table.

use static_assertions::const_assert_eq;
use vtd_regs::{MemError, PhysAddr, PhysMem};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::raw::{haw_frame_mask, read128, write128};

/// Entries in a root table (one per bus).
pub const ROOT_ENTRIES: usize = 256;

/// Present bit (P, bit 0 of the low word; LP/UP in scalable mode).
const PRESENT: u64 = 1 << 0;
/// Context-table pointer, bits 63:12 (bits above HAW are reserved).
const CTP_MASK: u64 = !0xfff;
/// Reserved low bits 11:1.
const LO_RESERVED: u64 = 0xffe;

/// A legacy-mode root entry (§9.1): 128 bits, `P` in bit 0 and the context
/// table pointer (CTP) in bits 63:12 of the low word; the high word is
/// reserved.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RootEntry {
    /// Bits 63:0.
    pub lo: u64,
    /// Bits 127:64 (reserved, zero).
    pub hi: u64,
}
const_assert_eq!(core::mem::size_of::<RootEntry>(), 16);
const_assert_eq!(core::mem::align_of::<RootEntry>(), 8);

impl RootEntry {
    /// A not-present entry: requests from the bus fault with reason 1h.
    pub const NOT_PRESENT: Self = Self { lo: 0, hi: 0 };

    /// A present entry pointing at the context table at `context_table`
    /// (4 KiB aligned; low bits are dropped).
    #[inline]
    pub const fn new(context_table: PhysAddr) -> Self {
        Self { lo: (context_table.as_u64() & CTP_MASK) | PRESENT, hi: 0 }
    }

    /// The present bit.
    #[inline]
    pub const fn present(self) -> bool {
        self.lo & PRESENT != 0
    }

    /// The context table pointer.
    #[inline]
    pub const fn context_table(self) -> PhysAddr {
        PhysAddr::new(self.lo & CTP_MASK)
    }

    /// Whether a reserved bit is set, for a unit whose host address width
    /// is `haw` bits (fault reason Ah when the entry is present).
    #[inline]
    pub const fn has_reserved_bits(self, haw: u8) -> bool {
        self.hi != 0 || self.lo & (LO_RESERVED | (CTP_MASK & !haw_frame_mask(haw))) != 0
    }

    /// Where the entry of `bus` lives in the root table at `root_table`
    /// (taken 4 KiB aligned, as RTADDR_REG's low bits are not part of it).
    #[inline]
    pub const fn address(root_table: PhysAddr, bus: u8) -> PhysAddr {
        PhysAddr::new((root_table.as_u64() & !0xfff) | (bus as u64 * 16))
    }

    /// Reads the entry of `bus` from the root table at `root_table`.
    pub fn read<M: PhysMem + ?Sized>(
        mem: &M,
        root_table: PhysAddr,
        bus: u8,
    ) -> Result<Self, MemError> {
        let (lo, hi) = read128(mem, Self::address(root_table, bus))?;
        Ok(Self { lo, hi })
    }

    /// Writes the entry of `bus` into the root table at `root_table`.
    pub fn write<M: PhysMem + ?Sized>(
        self,
        mem: &M,
        root_table: PhysAddr,
        bus: u8,
    ) -> Result<(), MemError> {
        write128(mem, Self::address(root_table, bus), self.lo, self.hi)
    }
}

/// A scalable-mode root entry (§9.2): two context-table pointers, the lower
/// one (LP/LCTP, low word) for device functions 0–127 and the upper one
/// (UP/UCTP, high word) for 128–255, because scalable-mode context entries
/// are 256 bits and a table holds 128 of them.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ScalableRootEntry {
    /// LP (bit 0) and LCTP (bits 63:12).
    pub lo: u64,
    /// UP (bit 64) and UCTP (bits 127:76).
    pub hi: u64,
}
const_assert_eq!(core::mem::size_of::<ScalableRootEntry>(), 16);
const_assert_eq!(core::mem::align_of::<ScalableRootEntry>(), 8);

impl ScalableRootEntry {
    /// An entry with the given lower and upper context tables (`None`: not present).
    #[inline]
    pub const fn new(lower: Option<PhysAddr>, upper: Option<PhysAddr>) -> Self {
        const fn half(t: Option<PhysAddr>) -> u64 {
            match t {
                Some(a) => (a.as_u64() & CTP_MASK) | PRESENT,
                None => 0,
            }
        }
        Self { lo: half(lower), hi: half(upper) }
    }

    /// Whether a reserved bit is set in the half of `devfn` (bits 11:1 of
    /// it, or its pointer at or above HAW; fault 3Ah when present).
    #[inline]
    pub const fn has_reserved_bits(self, devfn: u8, haw: u8) -> bool {
        let half = if devfn < 128 { self.lo } else { self.hi };
        half & (LO_RESERVED | (CTP_MASK & !haw_frame_mask(haw))) != 0
    }

    /// Reads the entry of `bus` from the root table at `root_table`.
    pub fn read<M: PhysMem + ?Sized>(
        mem: &M,
        root_table: PhysAddr,
        bus: u8,
    ) -> Result<Self, MemError> {
        let (lo, hi) = read128(mem, RootEntry::address(root_table, bus))?;
        Ok(Self { lo, hi })
    }

    /// Writes the entry of `bus` into the root table at `root_table`.
    pub fn write<M: PhysMem + ?Sized>(
        self,
        mem: &M,
        root_table: PhysAddr,
        bus: u8,
    ) -> Result<(), MemError> {
        write128(mem, RootEntry::address(root_table, bus), self.lo, self.hi)
    }

    /// The context table that holds `devfn`'s entry, or `None` when that
    /// half is not present.
    #[inline]
    pub const fn context_table(self, devfn: u8) -> Option<PhysAddr> {
        let half = if devfn < 128 { self.lo } else { self.hi };
        if half & PRESENT == 0 { None } else { Some(PhysAddr::new(half & CTP_MASK)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_known_answers() {
        // §9.1: P = bit 0, CTP = bits 63:12.
        let e = RootEntry::new(PhysAddr::new(0x1234_5000));
        assert_eq!((e.lo, e.hi), (0x1234_5001, 0));
        assert!(e.present());
        assert_eq!(e.context_table(), PhysAddr::new(0x1234_5000));
        assert!(!e.has_reserved_bits(39));
        assert!(!RootEntry::NOT_PRESENT.present());
        assert!(RootEntry { lo: 0x1003, hi: 0 }.has_reserved_bits(39));
        assert!(RootEntry { lo: 0x1001, hi: 1 }.has_reserved_bits(39));
        assert!(RootEntry { lo: (1 << 39) | 1, hi: 0 }.has_reserved_bits(39));
        assert!(!RootEntry { lo: (1 << 39) | 1, hi: 0 }.has_reserved_bits(48));
        assert_eq!(RootEntry::address(PhysAddr::new(0x10000), 0xff), PhysAddr::new(0x10ff0));
        assert_eq!(e.as_bytes(), &[1, 0x50, 0x34, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn scalable_known_answers() {
        // §9.2: LP/LCTP in bits 0 and 63:12, UP/UCTP in bits 64 and 127:76.
        let e = ScalableRootEntry::new(Some(PhysAddr::new(0x2000)), Some(PhysAddr::new(0x3000)));
        assert_eq!((e.lo, e.hi), (0x2001, 0x3001));
        assert_eq!(e.context_table(0x7f), Some(PhysAddr::new(0x2000)));
        assert_eq!(e.context_table(0x80), Some(PhysAddr::new(0x3000)));
        let l = ScalableRootEntry::new(Some(PhysAddr::new(0x2000)), None);
        assert_eq!(l.context_table(0xff), None);
    }
}
