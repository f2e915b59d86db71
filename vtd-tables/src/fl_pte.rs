//! First-stage paging entries (VT-d §9.7; the format of the processor's
//! 4- and 5-level paging): one 64-bit format for every level, a leaf when
//! it is in the last level or has PS set (levels 2 and 3).

use static_assertions::const_assert_eq;
use vtd_regs::{PageSize, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::perm::Perm;
use crate::pte::ADDR_MASK;

bitflags::bitflags! {
    /// The single-bit fields of a first-stage entry (§9.7).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    pub struct FlPteFlags: u64 {
        /// P, bit 0: present. A present entry always allows reads.
        const PRESENT = 1 << 0;
        /// R/W, bit 1: writes allowed (in every entry of the walk).
        const WRITE = 1 << 1;
        /// U/S, bit 2: user requests allowed (in every entry of the walk).
        const USER = 1 << 2;
        /// PWT, bit 3.
        const PWT = 1 << 3;
        /// PCD, bit 4.
        const PCD = 1 << 4;
        /// A, bit 5: accessed; the unit sets it in every entry it uses.
        const ACCESSED = 1 << 5;
        /// D, bit 6 (leaves): dirty; the unit sets it on a write.
        const DIRTY = 1 << 6;
        /// PS, bit 7 (levels 2 and 3): a 2 MiB or 1 GiB leaf. In a
        /// last-level entry bit 7 is PAT.
        const PAGE_SIZE = 1 << 7;
        /// G, bit 8 (leaves): global, kept across PASID-selective
        /// invalidations.
        const GLOBAL = 1 << 8;
        /// XD, bit 63: instruction fetches not allowed.
        const EXECUTE_DISABLE = 1 << 63;
    }
}

/// A first-stage paging entry (§9.7).
#[derive(Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(transparent)]
pub struct FlPte(pub u64);
const_assert_eq!(core::mem::size_of::<FlPte>(), 8);
const_assert_eq!(core::mem::align_of::<FlPte>(), 8);

impl FlPte {
    /// The not-present entry.
    pub const EMPTY: Self = Self(0);

    /// A leaf mapping the page of `size` at `phys` (aligned to `size`; lower
    /// bits are dropped): present, R/W when `perm` has WRITE, U/S when
    /// `user`, PS for 2 MiB and 1 GiB pages, XD, and A (and D when
    /// writable) already set so the unit never writes the table (§9.7:
    /// a unit sets a clear A or D atomically).
    #[inline]
    pub const fn leaf(phys: PhysAddr, perm: Perm, size: PageSize, user: bool) -> Self {
        let ps = match size {
            PageSize::Size4KiB => 0,
            _ => FlPteFlags::PAGE_SIZE.bits(),
        };
        let write = if perm.contains(Perm::WRITE) {
            FlPteFlags::WRITE.bits() | FlPteFlags::DIRTY.bits()
        } else {
            0
        };
        let user = if user { FlPteFlags::USER.bits() } else { 0 };
        Self(
            (phys.as_u64() & ADDR_MASK & !(size.bytes() - 1))
                | ps
                | write
                | user
                | FlPteFlags::PRESENT.bits()
                | FlPteFlags::ACCESSED.bits()
                | FlPteFlags::EXECUTE_DISABLE.bits(),
        )
    }

    /// A non-leaf entry pointing at the table frame `table`: present,
    /// writable, user (when `user`) and accessed, so the leaves alone
    /// decide the permission.
    #[inline]
    pub const fn table(table: PhysAddr, user: bool) -> Self {
        let user = if user { FlPteFlags::USER.bits() } else { 0 };
        Self(
            (table.as_u64() & ADDR_MASK)
                | user
                | FlPteFlags::PRESENT.bits()
                | FlPteFlags::WRITE.bits()
                | FlPteFlags::ACCESSED.bits(),
        )
    }

    /// The single-bit fields.
    #[inline]
    pub const fn flags(self) -> FlPteFlags {
        FlPteFlags::from_bits_truncate(self.0)
    }

    /// P.
    #[inline]
    pub const fn is_present(self) -> bool {
        self.0 & FlPteFlags::PRESENT.bits() != 0
    }

    /// The permission of this entry alone: READ when present, WRITE with R/W.
    #[inline]
    pub const fn perm(self) -> Perm {
        if !self.is_present() {
            return Perm::empty();
        }
        if self.0 & FlPteFlags::WRITE.bits() != 0 { Perm::READ_WRITE } else { Perm::READ }
    }

    /// U/S.
    #[inline]
    pub const fn user(self) -> bool {
        self.0 & FlPteFlags::USER.bits() != 0
    }

    /// PS (meaningful at levels 2 and 3 only).
    #[inline]
    pub const fn is_superpage(self) -> bool {
        self.0 & FlPteFlags::PAGE_SIZE.bits() != 0
    }

    /// The frame of the next table or of the page (bits 51:12).
    #[inline]
    pub const fn address(self) -> PhysAddr {
        PhysAddr::new(self.0 & ADDR_MASK)
    }
}

impl core::fmt::Debug for FlPte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FlPte({:#x}: {:?} {:?})", self.0, self.address(), self.flags())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // §9.7 (Intel SDM paging): P 0, R/W 1, U/S 2, A 5, D 6, PS 7, XD 63.
        // Cross-check with Linux: DMA_FL_PTE_PRESENT BIT(0), DMA_FL_PTE_US
        // BIT(2), DMA_FL_PTE_ACCESS BIT(5), DMA_FL_PTE_DIRTY BIT(6),
        // DMA_FL_PTE_XD BIT(63); QEMU VTD_FL_P, VTD_FL_RW (1 << 1),
        // VTD_FL_US (1 << 2), VTD_FL_A (1 << 5), VTD_FL_D (1 << 6).
        let r = FlPte::leaf(PhysAddr::new(0x1234_5000), Perm::READ, PageSize::Size4KiB, true);
        assert_eq!(r.0, 0x8000_0000_1234_5025);
        let w =
            FlPte::leaf(PhysAddr::new(0x4000_0000), Perm::READ_WRITE, PageSize::Size2MiB, false);
        assert_eq!(w.0, 0x8000_0000_4000_00e3);
        assert_eq!((r.perm(), w.perm()), (Perm::READ, Perm::READ_WRITE));
        assert!(r.user() && !w.user() && w.is_superpage());
        assert_eq!(FlPte::table(PhysAddr::new(0xabc_d000), true).0, 0xabc_d027);
        assert_eq!(FlPte::EMPTY.perm(), Perm::empty());
        assert_eq!(FlPte(0x1002).perm(), Perm::empty(), "R/W without P is not present");
    }
}
