//! Remapping Hardware Static Affinity (RHSA, §8.6): the NUMA proximity
//! domain a remapping unit belongs to, so its tables and queues can be
//! allocated from near memory.

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::error::DmarError;
use super::structure::{RawStructureHeader, fixed_part};
use crate::addr::PhysAddr;

/// The RHSA structure (type 3); it has no variable part.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
struct RawRhsa {
    header: RawStructureHeader,
    reserved: U32,
    register_base: U64,
    proximity_domain: U32,
}
const_assert_eq!(core::mem::size_of::<RawRhsa>(), 20);
const_assert_eq!(core::mem::align_of::<RawRhsa>(), 1);

/// The proximity domain of the remapping unit at a register base.
#[derive(Clone, Copy, Debug)]
pub struct Rhsa<'a> {
    raw: &'a RawRhsa,
}

impl<'a> Rhsa<'a> {
    pub(super) fn decode(bytes: &'a [u8], offset: usize) -> Result<Self, DmarError> {
        let (raw, _) = fixed_part::<RawRhsa>(bytes, offset)?;
        Ok(Self { raw })
    }

    /// The register base of the unit, as in its DRHD.
    pub fn register_base(&self) -> PhysAddr {
        PhysAddr::new(self.raw.register_base.get())
    }

    /// The unit's proximity domain, as in the ACPI SRAT.
    pub fn proximity_domain(&self) -> u32 {
        self.raw.proximity_domain.get()
    }
}
