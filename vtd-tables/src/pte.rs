//! Second-level paging entries (VT-d §9.8, legacy mode): one 64-bit format
//! for every level, a leaf when it is in the last level or has PS set.

use static_assertions::const_assert_eq;
use vtd_regs::{Iova, PageSize, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::perm::Perm;

/// Entries in one second-level table frame.
pub const PTES_PER_TABLE: usize = 512;
/// Index bits per level.
const LEVEL_BITS: u32 = 9;

bitflags::bitflags! {
    /// The single-bit fields of a second-level entry (§9.8).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    pub struct SlPteFlags: u64 {
        /// R, bit 0: reads allowed (with W, 0 means not present).
        const READ = 1 << 0;
        /// W, bit 1: writes allowed.
        const WRITE = 1 << 1;
        /// PS, bit 7: in a level-2 or level-3 entry, this entry maps a
        /// 2 MiB or 1 GiB page instead of pointing at a table.
        const SUPERPAGE = 1 << 7;
        /// SNP, bit 11 (leaves): snoop the processor caches for accesses
        /// through this page; reserved unless ECAP.SC.
        const SNOOP = 1 << 11;
        /// TM, bit 62 (leaves): transient mapping, not to be cached in a
        /// device-TLB for long; reserved unless ECAP.DT.
        const TRANSIENT = 1 << 62;
    }
}

/// ADDR, bits 51:12: the next table's frame or the page's frame (bits at
/// and above the host address width are reserved).
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bits 61:52 are ignored by hardware (§9.8). In a non-leaf entry the
/// driver keeps there the number of present entries of the table it points
/// at, so it knows when that table becomes empty without scanning it.
const COUNT_SHIFT: u32 = 52;
const COUNT_MASK: u64 = 0x3ff << COUNT_SHIFT;

/// A second-level paging entry (§9.8).
#[derive(Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(transparent)]
pub struct SlPte(pub u64);
const_assert_eq!(core::mem::size_of::<SlPte>(), 8);
const_assert_eq!(core::mem::align_of::<SlPte>(), 8);

impl SlPte {
    /// The not-present entry (R = W = 0).
    pub const EMPTY: Self = Self(0);

    /// A leaf mapping the page of `size` at `phys` (aligned to `size`;
    /// lower bits are dropped) with permission `perm`. PS is set for 2 MiB
    /// and 1 GiB pages.
    #[inline]
    pub const fn leaf(phys: PhysAddr, perm: Perm, size: PageSize) -> Self {
        let ps = match size {
            PageSize::Size4KiB => 0,
            _ => SlPteFlags::SUPERPAGE.bits(),
        };
        Self((phys.as_u64() & ADDR_MASK & !(size.bytes() - 1)) | ps | perm.bits() as u64)
    }

    /// A non-leaf entry pointing at the table frame `table`, with R and W
    /// set so the leaves alone decide the permission.
    #[inline]
    pub const fn table(table: PhysAddr) -> Self {
        Self((table.as_u64() & ADDR_MASK) | Perm::READ_WRITE.bits() as u64)
    }

    /// The single-bit fields.
    #[inline]
    pub const fn flags(self) -> SlPteFlags {
        SlPteFlags::from_bits_truncate(self.0)
    }

    /// This entry with `flags` set or cleared.
    #[inline]
    #[must_use]
    pub const fn with_flags(self, flags: SlPteFlags, on: bool) -> Self {
        Self(if on { self.0 | flags.bits() } else { self.0 & !flags.bits() })
    }

    /// R and W.
    #[inline]
    pub const fn perm(self) -> Perm {
        Perm::from_bits_truncate(self.0 as u8)
    }

    /// Present: R or W set (§9.8).
    #[inline]
    pub const fn is_present(self) -> bool {
        self.0 & Perm::READ_WRITE.bits() as u64 != 0
    }

    /// Present and not a superpage: above the last level, a pointer to
    /// the next table.
    #[inline]
    pub const fn is_table(self) -> bool {
        matches!(self.0 & (Perm::READ_WRITE.bits() as u64 | SlPteFlags::SUPERPAGE.bits()), 1..=3)
    }

    /// PS set.
    #[inline]
    pub const fn is_superpage(self) -> bool {
        self.0 & SlPteFlags::SUPERPAGE.bits() != 0
    }

    /// ADDR: the frame of the next table or of the page.
    #[inline]
    pub const fn address(self) -> PhysAddr {
        PhysAddr::new(self.0 & ADDR_MASK)
    }

    /// The driver's count of present entries in the table this non-leaf
    /// entry points at (kept in ignored bits 61:52).
    #[inline]
    pub(crate) const fn count(self) -> u16 {
        ((self.0 & COUNT_MASK) >> COUNT_SHIFT) as u16
    }

    /// This non-leaf entry with the present-entry count set to `n` (≤ 512).
    #[inline]
    pub(crate) const fn with_count(self, n: u16) -> Self {
        Self((self.0 & !COUNT_MASK) | ((n as u64) << COUNT_SHIFT))
    }
}

impl core::fmt::Debug for SlPte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SlPte({:#x}: {:?} {:?})", self.0, self.address(), self.flags())
    }
}

/// The shift of the IOVA bits that index a table at `level` (1 = last):
/// 12, 21, 30, 39, 48 (§3.7, Figure 3-8).
#[inline]
pub const fn level_shift(level: u8) -> u32 {
    12 + LEVEL_BITS * (level as u32 - 1)
}

/// The index of `iova`'s entry in a table at `level`.
#[inline]
pub const fn index(iova: Iova, level: u8) -> usize {
    ((iova.as_u64() >> level_shift(level)) & (PTES_PER_TABLE as u64 - 1)) as usize
}

/// The address of entry `index` (taken modulo 512) in the table frame
/// `table` (4 KiB aligned: table pointers read from entries always are).
/// The entry's offset is OR-ed in, never added, so no input overflows.
#[inline]
pub const fn entry_address(table: PhysAddr, index: usize) -> PhysAddr {
    PhysAddr::new(table.as_u64() | ((index as u64 & (PTES_PER_TABLE as u64 - 1)) * 8))
}

/// The page size of a leaf at `level`, if a leaf can sit there.
#[inline]
pub const fn leaf_size(level: u8) -> Option<PageSize> {
    match level {
        1 => Some(PageSize::Size4KiB),
        2 => Some(PageSize::Size2MiB),
        3 => Some(PageSize::Size1GiB),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // §9.8: R = bit 0, W = bit 1, PS = bit 7, SNP = bit 11, TM = bit 62,
        // ADDR = bits 51:12.
        let p = SlPte::leaf(PhysAddr::new(0x1234_5000), Perm::READ_WRITE, PageSize::Size4KiB);
        assert_eq!(p.0, 0x1234_5003);
        let big = SlPte::leaf(PhysAddr::new(0x4000_0000), Perm::READ, PageSize::Size2MiB);
        assert_eq!(big.0, 0x4000_0081);
        let g = SlPte::leaf(PhysAddr::new(0x8000_0000), Perm::WRITE, PageSize::Size1GiB)
            .with_flags(SlPteFlags::SNOOP | SlPteFlags::TRANSIENT, true);
        assert_eq!(g.0, 0x4000_0000_8000_0882);
        assert_eq!(SlPte::table(PhysAddr::new(0xabc_d000)).0, 0xabc_d003);
        assert_eq!(g.perm(), Perm::WRITE);
        assert!(g.is_present() && g.is_superpage());
        assert_eq!(g.address(), PhysAddr::new(0x8000_0000));
        assert!(!SlPte::EMPTY.is_present());
        assert!(
            SlPte::table(PhysAddr::new(0x1000)).is_table()
                && !g.is_table()
                && !SlPte::EMPTY.is_table()
        );
        assert!(SlPte(0x1001).is_table() && SlPte(0x1002).is_table() && !SlPte(0x1080).is_table());
        assert_eq!(SlPte::table(PhysAddr::new(0x1000)).with_count(512).count(), 512);
        assert_eq!(
            SlPte::table(PhysAddr::new(0x1000)).with_count(512).address(),
            PhysAddr::new(0x1000)
        );
    }

    #[test]
    fn indexing() {
        let iova = Iova::new(0x1f_ffff_ffff_f000);
        assert_eq!(index(iova, 1), 511);
        assert_eq!(index(Iova::new(0x20_0000), 2), 1);
        assert_eq!(index(Iova::new(1 << 48), 5), 1);
        assert_eq!(level_shift(3), 30);
        assert_eq!(entry_address(PhysAddr::new(0x1000), 511), PhysAddr::new(0x1ff8));
        assert_eq!(leaf_size(2), Some(PageSize::Size2MiB));
        assert_eq!(leaf_size(4), None);
    }
}
