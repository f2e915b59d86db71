//! What can be wrong with a DMAR table: every truncation or inconsistency
//! the parser detects, with the byte offset (from the start of the table)
//! where it was found.

use core::fmt;

use crate::addr::PhysAddr;

/// An error in a DMAR table (VT-d chapter 8). Offsets count bytes from the
/// first byte of the table (the `D` of the signature).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum DmarError {
    /// The buffer is shorter than the 48-byte DMAR header (§8.1).
    TruncatedHeader {
        /// Bytes in the buffer.
        available: usize,
    },
    /// The signature is not `DMAR`.
    BadSignature([u8; 4]),
    /// The header's length field is smaller than the 48-byte DMAR header.
    LengthBelowHeader {
        /// The length field.
        length: u32,
    },
    /// The header's length field runs past the end of the buffer.
    LengthBeyondBuffer {
        /// The length field.
        length: u32,
        /// Bytes in the buffer.
        available: usize,
    },
    /// The bytes of the table do not sum to zero (mod 256).
    Checksum {
        /// The sum of all bytes of the table, checksum field included.
        sum: u8,
    },
    /// Fewer than the 4 bytes of a remapping structure header (type, length)
    /// are left before the end of the table.
    TruncatedStructure {
        /// Where the structure starts.
        offset: usize,
        /// Bytes left in the table.
        remaining: usize,
    },
    /// A remapping structure with length 0.
    ZeroLengthStructure {
        /// Where the structure starts.
        offset: usize,
    },
    /// A remapping structure shorter than the fixed part of its type.
    StructureTooShort {
        /// Where the structure starts.
        offset: usize,
        /// The structure's type field.
        kind: u16,
        /// The structure's length field.
        length: u16,
        /// The size of the fixed part of that type.
        minimum: usize,
    },
    /// A remapping structure whose length runs past the end of the table.
    StructureOverrun {
        /// Where the structure starts.
        offset: usize,
        /// The structure's length field.
        length: u16,
        /// Bytes left in the table from `offset`.
        remaining: usize,
    },
    /// Fewer than the 6 bytes of a device scope header are left before the
    /// end of the enclosing remapping structure (§8.3.1).
    TruncatedScope {
        /// Where the device scope starts.
        offset: usize,
        /// Bytes left in the enclosing structure.
        remaining: usize,
    },
    /// A device scope whose length is below its 6-byte header (zero
    /// included).
    ScopeTooShort {
        /// Where the device scope starts.
        offset: usize,
        /// The scope's length field.
        length: u8,
    },
    /// A device scope whose length runs past the end of the enclosing
    /// remapping structure.
    ScopeOverrun {
        /// Where the device scope starts.
        offset: usize,
        /// The scope's length field.
        length: u8,
        /// Bytes left in the enclosing structure from `offset`.
        remaining: usize,
    },
    /// A device scope whose path is not a whole number of 2-byte
    /// (device, function) entries.
    OddPath {
        /// Where the device scope starts.
        offset: usize,
        /// The scope's length field.
        length: u8,
    },
    /// A path entry with device > 31 or function > 7.
    InvalidPathEntry {
        /// Where the device scope starts.
        offset: usize,
        /// The entry's device number.
        device: u8,
        /// The entry's function number.
        function: u8,
    },
    /// A reserved memory region whose base is not 4 KiB aligned, whose
    /// limit is not the last byte of a 4 KiB page, or whose limit is below
    /// its base (§8.4).
    RmrrRange {
        /// Where the RMRR starts.
        offset: usize,
        /// The base address field.
        base: PhysAddr,
        /// The limit address field (inclusive).
        limit: PhysAddr,
    },
    /// An ACPI namespace device declaration whose object name has no
    /// terminating NUL (§8.7).
    UnterminatedName {
        /// Where the ANDD starts.
        offset: usize,
    },
    /// Writing a table: the buffer (or a structure's 16-bit length) has
    /// no room for what was added.
    NoRoom {
        /// Bytes the table would need.
        needed: usize,
        /// Bytes there are room for.
        available: usize,
    },
    /// Writing a table: a device scope added before any structure that
    /// takes one (DRHD, RMRR).
    ScopeWithoutStructure,
}

impl fmt::Display for DmarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmarError::TruncatedHeader { available } => {
                write!(f, "DMAR: {available} bytes, shorter than the 48-byte header")
            }
            DmarError::BadSignature(sig) => write!(f, "DMAR: bad signature {sig:02x?}"),
            DmarError::LengthBelowHeader { length } => {
                write!(f, "DMAR: length {length} is below the 48-byte header")
            }
            DmarError::LengthBeyondBuffer { length, available } => {
                write!(f, "DMAR: length {length} runs past the {available}-byte buffer")
            }
            DmarError::Checksum { sum } => write!(f, "DMAR: checksum mismatch (sum {sum:#04x})"),
            DmarError::TruncatedStructure { offset, remaining } => write!(
                f,
                "DMAR @{offset:#x}: {remaining} bytes left, too few for a structure header"
            ),
            DmarError::ZeroLengthStructure { offset } => {
                write!(f, "DMAR @{offset:#x}: structure of length 0")
            }
            DmarError::StructureTooShort { offset, kind, length, minimum } => write!(
                f,
                "DMAR @{offset:#x}: structure type {kind} of length {length}, needs {minimum}"
            ),
            DmarError::StructureOverrun { offset, length, remaining } => write!(
                f,
                "DMAR @{offset:#x}: structure length {length} runs past the table ({remaining} left)"
            ),
            DmarError::TruncatedScope { offset, remaining } => write!(
                f,
                "DMAR @{offset:#x}: {remaining} bytes left, too few for a device scope header"
            ),
            DmarError::ScopeTooShort { offset, length } => {
                write!(f, "DMAR @{offset:#x}: device scope of length {length}, needs 6")
            }
            DmarError::ScopeOverrun { offset, length, remaining } => write!(
                f,
                "DMAR @{offset:#x}: device scope length {length} runs past its structure ({remaining} left)"
            ),
            DmarError::OddPath { offset, length } => write!(
                f,
                "DMAR @{offset:#x}: device scope length {length} leaves a partial path entry"
            ),
            DmarError::InvalidPathEntry { offset, device, function } => write!(
                f,
                "DMAR @{offset:#x}: path entry device {device:#x} function {function:#x} out of range"
            ),
            DmarError::RmrrRange { offset, base, limit } => write!(
                f,
                "DMAR @{offset:#x}: reserved region {base:?}..={limit:?} is not a page-aligned range"
            ),
            DmarError::UnterminatedName { offset } => {
                write!(f, "DMAR @{offset:#x}: ACPI object name without terminating NUL")
            }
            DmarError::NoRoom { needed, available } => {
                write!(f, "DMAR: {needed} bytes needed, room for {available}")
            }
            DmarError::ScopeWithoutStructure => {
                f.write_str("DMAR: a device scope needs a DRHD or RMRR before it")
            }
        }
    }
}

impl core::error::Error for DmarError {}
