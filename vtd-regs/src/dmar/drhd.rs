//! DMA Remapping Hardware Unit Definition (DRHD, §8.3): one remapping
//! unit, its register set and the devices it translates for.

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::device_scope::{DeviceScopes, ScopeArea};
use super::error::DmarError;
use super::structure::{RawStructureHeader, fixed_part};
use crate::addr::{PAGE_SHIFT, PhysAddr};

/// The fixed part of a DRHD (type 0).
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
struct RawDrhd {
    header: RawStructureHeader,
    flags: u8,
    /// Bits 3:0: the register set spans 2^N 4 KiB pages.
    size: u8,
    segment: U16,
    register_base: U64,
}
const_assert_eq!(core::mem::size_of::<RawDrhd>(), 16);
const_assert_eq!(core::mem::align_of::<RawDrhd>(), 1);

bitflags::bitflags! {
    /// The Flags field of a DRHD (§8.3).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct DrhdFlags: u8 {
        /// INCLUDE_PCI_ALL: the unit covers every PCI device of its segment
        /// that no other DRHD of the segment lists (its device scopes then
        /// name only I/O APICs, HPETs and ACPI namespace devices). The
        /// table lists such a DRHD last in its segment.
        const INCLUDE_PCI_ALL = 1 << 0;
    }
}

/// A remapping unit definition.
#[derive(Clone, Copy, Debug)]
pub struct Drhd<'a> {
    raw: &'a RawDrhd,
    scopes: ScopeArea<'a>,
}

impl<'a> Drhd<'a> {
    pub(super) fn decode(bytes: &'a [u8], offset: usize) -> Result<Self, DmarError> {
        let (raw, scopes) = fixed_part::<RawDrhd>(bytes, offset)?;
        let scopes = ScopeArea::new(scopes, offset + core::mem::size_of::<RawDrhd>());
        Ok(Self { raw, scopes })
    }

    /// The flags; bits this crate does not name are kept.
    pub fn flags(&self) -> DrhdFlags {
        DrhdFlags::from_bits_retain(self.raw.flags)
    }

    /// Whether the unit covers every PCI device of its segment not claimed
    /// by another DRHD.
    pub fn include_pci_all(&self) -> bool {
        self.flags().contains(DrhdFlags::INCLUDE_PCI_ALL)
    }

    /// The PCI segment (domain) of the devices the unit covers.
    pub fn segment(&self) -> u16 {
        self.raw.segment.get()
    }

    /// The base address of the unit's register set (§10).
    pub fn register_base(&self) -> PhysAddr {
        PhysAddr::new(self.raw.register_base.get())
    }

    /// The size of the unit's register set in bytes: 2^N 4 KiB pages for
    /// the N in bits 3:0 of the Size field (tables that leave the field 0
    /// describe a one-page register set).
    pub fn register_set_size(&self) -> u64 {
        1 << (u32::from(self.raw.size & 0xf) + PAGE_SHIFT)
    }

    /// The devices the unit covers (or, with INCLUDE_PCI_ALL, the
    /// non-PCI devices it remaps interrupts for).
    pub fn device_scopes(&self) -> DeviceScopes<'a> {
        self.scopes.scopes()
    }
}
