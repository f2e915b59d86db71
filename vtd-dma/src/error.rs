//! What can go wrong in the DMA API: one error type for the whole facade,
//! wrapping the layers' own where they are the cause.

use core::fmt;

use iova_alloc::AllocError;
use vtd_regs::dmar::DmarError;
use vtd_regs::{MemError, PhysAddr, SourceId, UnitError};

/// Why a [`DmaDomain`](crate::DmaDomain) operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The DMAR table is malformed (VT-d §8).
    Dmar(DmarError),
    /// No DRHD of the DMAR table covers the device (segment 0, §8.3).
    NoUnitFor(SourceId),
    /// The unit's devices or reserved regions exceed what the facade keeps
    /// (`MAX_DEVICES` devices, `MAX_REGIONS` regions).
    TooManyEntries,
    /// The platform could not map the unit's register page at this base.
    NoRegisters(PhysAddr),
    /// The remapping unit refused a command or did not answer.
    Unit(UnitError),
    /// Building or changing the root, context or domain tables failed.
    Table(vtd_tables::Error),
    /// An invalidation failed.
    Invalidation(invalidation::Error),
    /// The mapping layer refused the map, unmap or configuration.
    Map(teardown::Error),
    /// The IOVA space refused a reservation (a reserved region overlaps a
    /// live mapping, or lies beyond the domain's width).
    Iova(AllocError),
    /// The platform has no frames for coherent memory.
    OutOfFrames,
    /// The platform's memory refused an access.
    Memory(MemError),
    /// The device is not attached to this domain.
    NotAttached(SourceId),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Dmar(e) => write!(f, "DMAR table: {e}"),
            Error::NoUnitFor(sid) => write!(f, "no remapping unit in the DMAR table covers {sid}"),
            Error::TooManyEntries => f.write_str("more devices or reserved regions than kept"),
            Error::NoRegisters(base) => write!(f, "no register page mapped at {base:?}"),
            Error::Unit(e) => write!(f, "remapping unit: {e}"),
            Error::Table(e) => write!(f, "tables: {e}"),
            Error::Invalidation(e) => write!(f, "invalidation: {e}"),
            Error::Map(e) => write!(f, "mapping: {e}"),
            Error::Iova(e) => write!(f, "IOVA space: {e}"),
            Error::OutOfFrames => f.write_str("no frames for coherent memory"),
            Error::Memory(e) => write!(f, "memory: {e}"),
            Error::NotAttached(sid) => write!(f, "{sid} is not attached to the domain"),
        }
    }
}

impl core::error::Error for Error {}

impl From<DmarError> for Error {
    fn from(e: DmarError) -> Self {
        Error::Dmar(e)
    }
}
impl From<UnitError> for Error {
    fn from(e: UnitError) -> Self {
        Error::Unit(e)
    }
}
impl From<vtd_tables::Error> for Error {
    fn from(e: vtd_tables::Error) -> Self {
        Error::Table(e)
    }
}
impl From<invalidation::Error> for Error {
    fn from(e: invalidation::Error) -> Self {
        Error::Invalidation(e)
    }
}
impl From<teardown::Error> for Error {
    fn from(e: teardown::Error) -> Self {
        Error::Map(e)
    }
}
impl From<AllocError> for Error {
    fn from(e: AllocError) -> Self {
        Error::Iova(e)
    }
}
impl From<MemError> for Error {
    fn from(e: MemError) -> Self {
        Error::Memory(e)
    }
}

/// `Result` with the facade's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
