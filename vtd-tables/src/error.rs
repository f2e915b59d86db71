//! Errors of the table builder ([`SlPageTable`](crate::SlPageTable) and
//! [`ContextManager`](crate::ContextManager)).

use core::fmt;

use vtd_regs::{Iova, MemError, PageSize, PhysAddr};

/// Why a table operation failed. An operation that fails changed nothing,
/// except where a range operation reports the part it did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// Part of the range already has a translation.
    AlreadyMapped {
        /// The page that was to be mapped.
        iova: Iova,
    },
    /// The page to unmap has no translation (or only part of it has one).
    NotMapped {
        /// The page that was to be unmapped.
        iova: Iova,
    },
    /// The page to unmap is mapped by smaller pages: unmap those, or use
    /// [`unmap_range`](crate::SlPageTable::unmap_range).
    MappedWithSmallerPages {
        /// The page that was to be unmapped.
        iova: Iova,
    },
    /// The IOVA, physical address or length is not a multiple of the page size.
    Misaligned {
        /// The IOVA.
        iova: Iova,
        /// The physical address (zero for an unmap).
        phys: PhysAddr,
        /// The page size asked for.
        size: PageSize,
    },
    /// The range reaches beyond the domain's address width.
    BeyondWidth {
        /// The page that does not fit.
        iova: Iova,
    },
    /// The physical address does not fit a second-level entry (52 bits).
    PhysBeyondWidth {
        /// The address.
        phys: PhysAddr,
    },
    /// The page size is not in CAP.SLLPS.
    UnsupportedPageSize(PageSize),
    /// No table depth in CAP.SAGAW covers the domain's width (or the
    /// width is above 57 bits).
    UnsupportedWidth {
        /// The width asked for, in bits.
        bits: u8,
    },
    /// A mapping needs at least one of read and write.
    NoPermission,
    /// A first-stage page is always readable: write-only cannot be mapped.
    WriteOnly,
    /// The PASID is beyond the PASID table's size.
    PasidBeyondTable {
        /// The PASID.
        pasid: u32,
    },
    /// The frame allocator has no frame for a new table.
    OutOfFrames,
    /// The memory behind the tables refused an access.
    Memory(MemError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl From<MemError> for Error {
    #[inline]
    fn from(e: MemError) -> Self {
        Error::Memory(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyMapped { iova } => {
                write!(f, "IOVA {:#x} is already mapped", iova.as_u64())
            }
            Error::NotMapped { iova } => write!(f, "IOVA {:#x} is not mapped", iova.as_u64()),
            Error::MappedWithSmallerPages { iova } => {
                write!(f, "IOVA {:#x} is mapped with smaller pages", iova.as_u64())
            }
            Error::Misaligned { iova, phys, size } => write!(
                f,
                "IOVA {:#x} / address {:#x} not aligned to {:#x}",
                iova.as_u64(),
                phys.as_u64(),
                size.bytes()
            ),
            Error::BeyondWidth { iova } => {
                write!(f, "IOVA {:#x} is beyond the domain's width", iova.as_u64())
            }
            Error::PhysBeyondWidth { phys } => {
                write!(f, "address {:#x} does not fit an entry", phys.as_u64())
            }
            Error::UnsupportedPageSize(s) => write!(f, "page size {:#x} not supported", s.bytes()),
            Error::UnsupportedWidth { bits } => {
                write!(f, "no supported table depth for {bits} bits")
            }
            Error::NoPermission => f.write_str("a mapping needs read or write permission"),
            Error::WriteOnly => f.write_str("a first-stage mapping cannot be write-only"),
            Error::PasidBeyondTable { pasid } => {
                write!(f, "PASID {pasid:#x} is beyond the PASID table")
            }
            Error::OutOfFrames => f.write_str("out of frames for page tables"),
            Error::Memory(e) => write!(f, "table memory: {e}"),
        }
    }
}

impl core::error::Error for Error {}
