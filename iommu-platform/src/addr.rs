//! Typed addresses: host/guest physical addresses and I/O virtual addresses.
//!
//! VT-d translates an *I/O virtual address* (IOVA, "DMA address" in the
//! specification's words, §3.1) of a request into a *physical address*
//! through the second-level tables of the request's domain. Keeping the two in
//! distinct types makes it a compile error to hand an IOVA to code that wants a
//! physical address, as rust-osdev `x86_64`'s `PhysAddr`/`VirtAddr` do.

use core::fmt;

/// Shift of the base page size: VT-d pages and table frames are 4 KiB.
pub const PAGE_SHIFT: u32 = 12;
/// The base page size (4 KiB) of VT-d tables and second-level pages.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $abbrev:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Address zero.
            pub const ZERO: Self = Self(0);

            /// Wraps a raw 64-bit address.
            #[inline]
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw 64-bit address.
            #[inline]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// The 4 KiB page number (address >> 12).
            #[inline]
            pub const fn page_number(self) -> u64 {
                self.0 >> PAGE_SHIFT
            }

            /// The address of 4 KiB page number `pfn`, or `None` if it does not fit 64 bits.
            #[inline]
            pub const fn from_page_number(pfn: u64) -> Option<Self> {
                if pfn >> (64 - PAGE_SHIFT) != 0 {
                    None
                } else {
                    Some(Self(pfn << PAGE_SHIFT))
                }
            }

            /// The offset of the address within its 4 KiB page.
            #[inline]
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }

            /// Rounds down to a multiple of `align` (a power of two).
            #[inline]
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align - 1))
            }

            /// Whether the address is a multiple of `align` (a power of two).
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                debug_assert!(align.is_power_of_two());
                self.0 & (align - 1) == 0
            }

            /// `self + bytes`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($abbrev, "({:#x})"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A physical address: host physical for a native driver, guest physical
    /// inside a guest. What the second-level tables translate *to*, and where
    /// the tables and the invalidation queue themselves live.
    PhysAddr,
    "PhysAddr"
);

address_type!(
    /// An I/O virtual address: the address a device puts on the bus, which the
    /// remapping unit translates through the device's domain (§3.1).
    Iova,
    "Iova"
);

/// The page sizes of second-level translation (§3.7 and §9.8):
/// 4 KiB always, 2 MiB and 1 GiB where CAP.SLLPS reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// A 4 KiB page, mapped by a leaf entry at the last level.
    Size4KiB,
    /// A 2 MiB superpage, mapped by a PDE with PS=1.
    Size2MiB,
    /// A 1 GiB superpage, mapped by a PDPE with PS=1.
    Size1GiB,
}

impl PageSize {
    /// All page sizes, smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Size4KiB, PageSize::Size2MiB, PageSize::Size1GiB];

    /// log2 of the page size in bytes.
    #[inline]
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Size4KiB => 12,
            PageSize::Size2MiB => 21,
            PageSize::Size1GiB => 30,
        }
    }

    /// The page size in bytes.
    #[inline]
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The table level (1 = last level) at which a leaf of this size sits.
    #[inline]
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4KiB => 1,
            PageSize::Size2MiB => 2,
            PageSize::Size1GiB => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_arithmetic() {
        let a = PhysAddr::new(0x1234_5678);
        assert_eq!(a.page_number(), 0x12345);
        assert_eq!(a.page_offset(), 0x678);
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr::new(0x1234_5000));
        assert!(!a.is_aligned(PAGE_SIZE));
        assert_eq!(PhysAddr::from_page_number(0x12345), Some(PhysAddr::new(0x1234_5000)));
        assert_eq!(PhysAddr::from_page_number(1 << 52), None);
        assert_eq!(Iova::new(u64::MAX).checked_add(1), None);
        assert_eq!(PageSize::Size2MiB.bytes(), 0x20_0000);
        assert_eq!(PageSize::Size1GiB.level(), 3);
    }
}
