//! Remapping structures (§8.2): the type-length records that follow the
//! DMAR header, and the iterator that frames them.

use core::iter::FusedIterator;

use static_assertions::const_assert_eq;
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::andd::Andd;
use super::atsr::Atsr;
use super::device_scope::{DeviceScopes, ScopeArea};
use super::drhd::Drhd;
use super::error::DmarError;
use super::rhsa::Rhsa;
use super::rmrr::Rmrr;
use super::satc::Satc;

/// The type and length every remapping structure starts with (§8.2).
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
pub(super) struct RawStructureHeader {
    pub(super) kind: U16,
    pub(super) length: U16,
}
const_assert_eq!(core::mem::size_of::<RawStructureHeader>(), 4);
const_assert_eq!(core::mem::align_of::<RawStructureHeader>(), 1);

/// The type field of a remapping structure (§8.2, Table "Remapping
/// Structure Types").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum StructureKind {
    /// 0: DMA Remapping Hardware Unit Definition.
    Drhd,
    /// 1: Reserved Memory Region Reporting.
    Rmrr,
    /// 2: Root Port ATS Capability Reporting.
    Atsr,
    /// 3: Remapping Hardware Static Affinity.
    Rhsa,
    /// 4: ACPI Name-space Device Declaration.
    Andd,
    /// 5: SoC Integrated Address Translation Cache.
    Satc,
    /// A type this crate does not decode (reserved in VT-d 3.x).
    Other(u16),
}

impl StructureKind {
    /// Decodes a type field.
    pub const fn from_raw(raw: u16) -> Self {
        match raw {
            0 => StructureKind::Drhd,
            1 => StructureKind::Rmrr,
            2 => StructureKind::Atsr,
            3 => StructureKind::Rhsa,
            4 => StructureKind::Andd,
            5 => StructureKind::Satc,
            other => StructureKind::Other(other),
        }
    }

    /// The type field.
    pub const fn raw(self) -> u16 {
        match self {
            StructureKind::Drhd => 0,
            StructureKind::Rmrr => 1,
            StructureKind::Atsr => 2,
            StructureKind::Rhsa => 3,
            StructureKind::Andd => 4,
            StructureKind::Satc => 5,
            StructureKind::Other(raw) => raw,
        }
    }
}

/// One remapping structure of a DMAR table.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum RemappingStructure<'a> {
    /// A remapping unit and the devices it covers (§8.3).
    Drhd(Drhd<'a>),
    /// Memory that devices keep using across the OS handoff (§8.4).
    Rmrr(Rmrr<'a>),
    /// Root ports that support Address Translation Services (§8.5).
    Atsr(Atsr<'a>),
    /// The NUMA proximity domain of a remapping unit (§8.6).
    Rhsa(Rhsa<'a>),
    /// An ACPI namespace device named by device scopes (§8.7).
    Andd(Andd<'a>),
    /// SoC-integrated devices with an address translation cache (§8.8).
    Satc(Satc<'a>),
    /// A structure of a type this crate does not decode, skipped by its
    /// length.
    Other {
        /// The type field.
        kind: u16,
        /// Where the structure starts in the table.
        offset: usize,
        /// The whole structure, header included.
        bytes: &'a [u8],
    },
}

impl<'a> RemappingStructure<'a> {
    /// The structure's type.
    pub fn kind(&self) -> StructureKind {
        match self {
            RemappingStructure::Drhd(_) => StructureKind::Drhd,
            RemappingStructure::Rmrr(_) => StructureKind::Rmrr,
            RemappingStructure::Atsr(_) => StructureKind::Atsr,
            RemappingStructure::Rhsa(_) => StructureKind::Rhsa,
            RemappingStructure::Andd(_) => StructureKind::Andd,
            RemappingStructure::Satc(_) => StructureKind::Satc,
            RemappingStructure::Other { kind, .. } => StructureKind::Other(*kind),
        }
    }

    /// The device scopes of a structure that has them (DRHD, RMRR, ATSR,
    /// SATC).
    pub fn device_scopes(&self) -> Option<DeviceScopes<'a>> {
        match self {
            RemappingStructure::Drhd(s) => Some(s.device_scopes()),
            RemappingStructure::Rmrr(s) => Some(s.device_scopes()),
            RemappingStructure::Atsr(s) => Some(s.device_scopes()),
            RemappingStructure::Satc(s) => Some(s.device_scopes()),
            RemappingStructure::Rhsa(_)
            | RemappingStructure::Andd(_)
            | RemappingStructure::Other { .. } => None,
        }
    }

    /// Decodes the structure `bytes` (exactly its length, header included)
    /// found at `offset`.
    fn decode(kind: u16, bytes: &'a [u8], offset: usize) -> Result<Self, DmarError> {
        Ok(match StructureKind::from_raw(kind) {
            StructureKind::Drhd => RemappingStructure::Drhd(Drhd::decode(bytes, offset)?),
            StructureKind::Rmrr => RemappingStructure::Rmrr(Rmrr::decode(bytes, offset)?),
            StructureKind::Atsr => RemappingStructure::Atsr(Atsr::decode(bytes, offset)?),
            StructureKind::Rhsa => RemappingStructure::Rhsa(Rhsa::decode(bytes, offset)?),
            StructureKind::Andd => RemappingStructure::Andd(Andd::decode(bytes, offset)?),
            StructureKind::Satc => RemappingStructure::Satc(Satc::decode(bytes, offset)?),
            StructureKind::Other(kind) => RemappingStructure::Other { kind, offset, bytes },
        })
    }
}

/// Splits the fixed part `T` (header included) off the structure `bytes`
/// found at `offset`, or reports the structure too short for its type.
pub(super) fn fixed_part<T>(bytes: &[u8], offset: usize) -> Result<(&T, &[u8]), DmarError>
where
    T: FromBytes + KnownLayout + Immutable + Unaligned,
{
    T::ref_from_prefix(bytes).map_err(|_| {
        let header = RawStructureHeader::ref_from_prefix(bytes).ok().map(|(h, _)| h);
        DmarError::StructureTooShort {
            offset,
            kind: header.map_or(0, |h| h.kind.get()),
            length: header.map_or(0, |h| h.length.get()),
            minimum: core::mem::size_of::<T>(),
        }
    })
}

/// The remapping structures of a table, in order; from
/// [`Dmar::structures`](super::Dmar::structures).
///
/// An error in a structure's framing (a truncated header, a length of zero,
/// below 4 or past the end of the table) is yielded once and ends the
/// iteration; an error inside a structure whose length is sound (too short
/// for its type, a bad RMRR range, an unterminated name) is yielded in its
/// place and iteration goes on with the next structure.
#[derive(Clone, Debug)]
pub struct Structures<'a> {
    table: &'a [u8],
    offset: usize,
}

impl<'a> Structures<'a> {
    pub(super) fn new(table: &'a [u8], offset: usize) -> Self {
        Self { table, offset }
    }

    /// Ends the iteration and returns `err`.
    fn fail(&mut self, err: DmarError) -> Option<Result<RemappingStructure<'a>, DmarError>> {
        self.offset = self.table.len();
        Some(Err(err))
    }
}

impl<'a> Iterator for Structures<'a> {
    type Item = Result<RemappingStructure<'a>, DmarError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        let rest = self.table.get(offset..).filter(|rest| !rest.is_empty())?;
        let Ok((header, _)) = RawStructureHeader::ref_from_prefix(rest) else {
            return self.fail(DmarError::TruncatedStructure { offset, remaining: rest.len() });
        };
        let (kind, length) = (header.kind.get(), header.length.get());
        let minimum = core::mem::size_of::<RawStructureHeader>();
        if length == 0 {
            return self.fail(DmarError::ZeroLengthStructure { offset });
        }
        if usize::from(length) < minimum {
            return self.fail(DmarError::StructureTooShort { offset, kind, length, minimum });
        }
        let Some(bytes) = rest.get(..usize::from(length)) else {
            return self.fail(DmarError::StructureOverrun {
                offset,
                length,
                remaining: rest.len(),
            });
        };
        self.offset = offset + bytes.len();
        Some(RemappingStructure::decode(kind, bytes, offset))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.table.len().saturating_sub(self.offset);
        (usize::from(left > 0), Some(left.div_ceil(4)))
    }
}

impl FusedIterator for Structures<'_> {}

/// The fixed part shared by ATSR (type 2, §8.5) and SATC (type 5, §8.8):
/// header, a flags byte, a reserved byte and the PCI segment, followed by
/// device scopes.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
pub(super) struct RawFlagsSegment {
    header: RawStructureHeader,
    pub(super) flags: u8,
    reserved: u8,
    pub(super) segment: U16,
}
const_assert_eq!(core::mem::size_of::<RawFlagsSegment>(), 8);
const_assert_eq!(core::mem::align_of::<RawFlagsSegment>(), 1);

impl RawFlagsSegment {
    /// Splits the structure `bytes` at `offset` into this fixed part and
    /// its device scopes.
    pub(super) fn decode(bytes: &[u8], offset: usize) -> Result<(&Self, ScopeArea<'_>), DmarError> {
        let (raw, scopes) = fixed_part::<Self>(bytes, offset)?;
        Ok((raw, ScopeArea::new(scopes, offset + core::mem::size_of::<Self>())))
    }
}
