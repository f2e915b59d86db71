//! The DMA Remapping Reporting structure (§8.1): the ACPI table header,
//! the host address width and the platform flags, followed by the
//! remapping structures.

use core::fmt;

use static_assertions::const_assert_eq;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::error::DmarError;
use super::structure::Structures;

/// The fixed part of the DMAR table: the standard ACPI header (36 bytes)
/// and the DMAR fields after it, as laid out in §8.1.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawDmarHeader {
    signature: [u8; 4],
    length: U32,
    revision: u8,
    checksum: u8,
    oem_id: [u8; 6],
    oem_table_id: [u8; 8],
    oem_revision: U32,
    creator_id: [u8; 4],
    creator_revision: U32,
    host_address_width: u8,
    flags: u8,
    reserved: [u8; 10],
}
const_assert_eq!(core::mem::size_of::<RawDmarHeader>(), Dmar::HEADER_LEN);
const_assert_eq!(core::mem::align_of::<RawDmarHeader>(), 1);

bitflags::bitflags! {
    /// The Flags field of the DMAR table (§8.1).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct DmarFlags: u8 {
        /// INTR_REMAP: the platform supports interrupt remapping.
        const INTR_REMAP = 1 << 0;
        /// X2APIC_OPT_OUT: firmware asks the OS not to enable x2APIC mode.
        const X2APIC_OPT_OUT = 1 << 1;
        /// DMA_CTRL_PLATFORM_OPT_IN: firmware initiated DMA is restricted
        /// to RMRR regions, so the OS may enable DMA remapping while
        /// booting (platform opt-in to kernel DMA protection).
        const DMA_CTRL_PLATFORM_OPT_IN = 1 << 2;
    }
}

/// A DMAR table whose header, length and (unless parsed with
/// [`Dmar::parse_unchecked`]) checksum have been checked; it borrows the
/// bytes it was parsed from.
#[derive(Clone, Copy)]
pub struct Dmar<'a> {
    header: &'a RawDmarHeader,
    /// Exactly the `length` bytes of the table.
    table: &'a [u8],
}

impl<'a> Dmar<'a> {
    /// The size of the DMAR header; the first remapping structure starts here.
    pub const HEADER_LEN: usize = 48;
    /// The table signature.
    pub const SIGNATURE: [u8; 4] = *b"DMAR";

    /// Checks the signature, the length field against `bytes` and the
    /// checksum of the table. Bytes after `length` are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DmarError> {
        let dmar = Self::parse_unchecked(bytes)?;
        let sum = dmar.table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
        if sum != 0 {
            return Err(DmarError::Checksum { sum });
        }
        Ok(dmar)
    }

    /// Like [`Dmar::parse`] without verifying the checksum: for tables
    /// whose checksum is filled in later, such as QEMU's before its BIOS
    /// linker runs.
    pub fn parse_unchecked(bytes: &'a [u8]) -> Result<Self, DmarError> {
        let Ok((header, _)) = RawDmarHeader::ref_from_prefix(bytes) else {
            return Err(DmarError::TruncatedHeader { available: bytes.len() });
        };
        if header.signature != Self::SIGNATURE {
            return Err(DmarError::BadSignature(header.signature));
        }
        let length = header.length.get();
        let table = match usize::try_from(length) {
            Ok(len) if len < Self::HEADER_LEN => {
                return Err(DmarError::LengthBelowHeader { length });
            }
            Ok(len) => bytes.get(..len),
            Err(_) => None,
        };
        let Some(table) = table else {
            return Err(DmarError::LengthBeyondBuffer { length, available: bytes.len() });
        };
        Ok(Self { header, table })
    }

    /// The bytes of the table (exactly `length` of them).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.table
    }

    /// The table's length in bytes, header included.
    pub fn length(&self) -> u32 {
        self.header.length.get()
    }

    /// The table revision (1 for every VT-d revision so far).
    pub fn revision(&self) -> u8 {
        self.header.revision
    }

    /// The OEM id of the ACPI header.
    pub fn oem_id(&self) -> &'a [u8; 6] {
        &self.header.oem_id
    }

    /// The OEM table id of the ACPI header.
    pub fn oem_table_id(&self) -> &'a [u8; 8] {
        &self.header.oem_table_id
    }

    /// The OEM revision of the ACPI header.
    pub fn oem_revision(&self) -> u32 {
        self.header.oem_revision.get()
    }

    /// The creator (ASL compiler) id of the ACPI header.
    pub fn creator_id(&self) -> &'a [u8; 4] {
        &self.header.creator_id
    }

    /// The creator (ASL compiler) revision of the ACPI header.
    pub fn creator_revision(&self) -> u32 {
        self.header.creator_revision.get()
    }

    /// The maximum DMA physical addressability of the platform in bits: the
    /// Host Address Width field plus one (§8.1).
    pub fn host_address_width(&self) -> u32 {
        u32::from(self.header.host_address_width) + 1
    }

    /// The platform flags; bits this crate does not name are kept.
    pub fn flags(&self) -> DmarFlags {
        DmarFlags::from_bits_retain(self.header.flags)
    }

    /// The remapping structures, in table order (§8.2).
    pub fn structures(&self) -> Structures<'a> {
        Structures::new(self.table, Self::HEADER_LEN)
    }

    /// Walks every remapping structure, device scope and path of the table
    /// and returns the first error found, if any.
    pub fn validate(&self) -> Result<(), DmarError> {
        for structure in self.structures() {
            if let Some(scopes) = structure?.device_scopes() {
                for scope in scopes {
                    scope?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Dmar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dmar")
            .field("length", &self.length())
            .field("revision", &self.revision())
            .field("host_address_width", &self.host_address_width())
            .field("flags", &self.flags())
            .field("structures", &DebugList(self.structures()))
            .finish()
    }
}

/// Formats the items of a cloneable iterator as a list.
pub(super) struct DebugList<I>(pub(super) I);

impl<I: Iterator + Clone> fmt::Debug for DebugList<I>
where
    I::Item: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.clone()).finish()
    }
}
