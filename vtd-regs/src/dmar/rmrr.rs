//! Reserved Memory Region Reporting (RMRR, §8.4): memory that firmware
//! set up for devices to keep using (USB legacy emulation, integrated
//! graphics' stolen memory) and that must stay identity mapped for them.

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::device_scope::{DeviceScopes, ScopeArea};
use super::error::DmarError;
use super::structure::{RawStructureHeader, fixed_part};
use crate::addr::{PAGE_SIZE, PhysAddr};

/// The fixed part of an RMRR (type 1).
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
struct RawRmrr {
    header: RawStructureHeader,
    reserved: U16,
    segment: U16,
    base: U64,
    limit: U64,
}
const_assert_eq!(core::mem::size_of::<RawRmrr>(), 24);
const_assert_eq!(core::mem::align_of::<RawRmrr>(), 1);

/// A reserved memory region: `base..=limit`, whole 4 KiB pages, for the
/// devices of its scopes.
#[derive(Clone, Copy, Debug)]
pub struct Rmrr<'a> {
    raw: &'a RawRmrr,
    scopes: ScopeArea<'a>,
}

impl<'a> Rmrr<'a> {
    pub(super) fn decode(bytes: &'a [u8], offset: usize) -> Result<Self, DmarError> {
        let (raw, scopes) = fixed_part::<RawRmrr>(bytes, offset)?;
        let (base, limit) = (PhysAddr::new(raw.base.get()), PhysAddr::new(raw.limit.get()));
        let whole_pages = base.is_aligned(PAGE_SIZE) && limit.page_offset() == PAGE_SIZE - 1;
        if !whole_pages || limit < base {
            return Err(DmarError::RmrrRange { offset, base, limit });
        }
        let scopes = ScopeArea::new(scopes, offset + core::mem::size_of::<RawRmrr>());
        Ok(Self { raw, scopes })
    }

    /// The PCI segment of the devices in scope.
    pub fn segment(&self) -> u16 {
        self.raw.segment.get()
    }

    /// The first byte of the region (4 KiB aligned).
    pub fn base(&self) -> PhysAddr {
        PhysAddr::new(self.raw.base.get())
    }

    /// The last byte of the region (inclusive; the last byte of a page).
    pub fn limit(&self) -> PhysAddr {
        PhysAddr::new(self.raw.limit.get())
    }

    /// The number of 4 KiB pages in the region (at least 1).
    pub fn pages(&self) -> u64 {
        self.limit().page_number() - self.base().page_number() + 1
    }

    /// Whether `addr` lies in the region.
    pub fn contains(&self, addr: PhysAddr) -> bool {
        self.base() <= addr && addr <= self.limit()
    }

    /// The devices that use the region.
    pub fn device_scopes(&self) -> DeviceScopes<'a> {
        self.scopes.scopes()
    }
}
