//! ACPI Name-space Device Declaration (ANDD, §8.7): gives an ACPI device
//! number to a device that is not on PCI (e.g. an I2C or UART controller
//! that issues DMA), so device scopes of type ACPI namespace can name it.

use static_assertions::const_assert_eq;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::error::DmarError;
use super::structure::{RawStructureHeader, fixed_part};

/// The fixed part of an ANDD (type 4), followed by the object name.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
struct RawAndd {
    header: RawStructureHeader,
    reserved: [u8; 3],
    device_number: u8,
}
const_assert_eq!(core::mem::size_of::<RawAndd>(), 8);
const_assert_eq!(core::mem::align_of::<RawAndd>(), 1);

/// An ACPI namespace device and the number scopes name it by.
#[derive(Clone, Copy, Debug)]
pub struct Andd<'a> {
    raw: &'a RawAndd,
    name: &'a [u8],
}

impl<'a> Andd<'a> {
    pub(super) fn decode(bytes: &'a [u8], offset: usize) -> Result<Self, DmarError> {
        let (raw, name) = fixed_part::<RawAndd>(bytes, offset)?;
        let Some(end) = name.iter().position(|b| *b == 0) else {
            return Err(DmarError::UnterminatedName { offset });
        };
        Ok(Self { raw, name: name.get(..end).unwrap_or_default() })
    }

    /// The ACPI device number that ACPI namespace device scopes use as
    /// their enumeration id.
    pub fn device_number(&self) -> u8 {
        self.raw.device_number
    }

    /// The fully qualified ACPI object name (e.g. `\_SB.PCI0.I2C0`),
    /// without its terminating NUL.
    pub fn object_name(&self) -> &'a [u8] {
        self.name
    }
}
