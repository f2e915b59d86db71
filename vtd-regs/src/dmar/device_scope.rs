//! Device scopes (§8.3.1): which devices a DRHD, RMRR, ATSR or SATC
//! covers, each named by a start bus and a path of (device, function)
//! hops through PCI bridges.

use core::fmt;
use core::iter::FusedIterator;

use static_assertions::const_assert_eq;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::error::DmarError;
use super::table::DebugList;
use crate::ids::SourceId;

/// The fixed part of a device scope (§8.3.1).
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawDeviceScope {
    kind: u8,
    length: u8,
    /// Reserved in VT-d 3.x (flags in later revisions).
    flags: u8,
    reserved: u8,
    enumeration_id: u8,
    start_bus: u8,
}
const_assert_eq!(core::mem::size_of::<RawDeviceScope>(), 6);
const_assert_eq!(core::mem::align_of::<RawDeviceScope>(), 1);

/// One hop of a device scope's path.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawPathEntry {
    device: u8,
    function: u8,
}
const_assert_eq!(core::mem::size_of::<RawPathEntry>(), 2);
const_assert_eq!(core::mem::align_of::<RawPathEntry>(), 1);

/// What a device scope names (§8.3.1, the Type field).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum DeviceScopeKind {
    /// 1: a PCI endpoint device.
    PciEndpoint,
    /// 2: a PCI-PCI bridge and every device below it.
    PciSubHierarchy,
    /// 3: an I/O APIC; the enumeration id is its I/O APIC id.
    IoApic,
    /// 4: an MSI-capable HPET; the enumeration id is its HPET number.
    Hpet,
    /// 5: an ACPI namespace device; the enumeration id is the ACPI device
    /// number of its ANDD structure.
    AcpiNamespace,
    /// A reserved type (0 or 6..=255), kept for the caller to skip.
    Reserved(u8),
}

impl DeviceScopeKind {
    /// Decodes a Type field.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            1 => DeviceScopeKind::PciEndpoint,
            2 => DeviceScopeKind::PciSubHierarchy,
            3 => DeviceScopeKind::IoApic,
            4 => DeviceScopeKind::Hpet,
            5 => DeviceScopeKind::AcpiNamespace,
            other => DeviceScopeKind::Reserved(other),
        }
    }

    /// The Type field.
    pub const fn raw(self) -> u8 {
        match self {
            DeviceScopeKind::PciEndpoint => 1,
            DeviceScopeKind::PciSubHierarchy => 2,
            DeviceScopeKind::IoApic => 3,
            DeviceScopeKind::Hpet => 4,
            DeviceScopeKind::AcpiNamespace => 5,
            DeviceScopeKind::Reserved(raw) => raw,
        }
    }
}

/// A device scope whose length, path and path entries have been checked.
#[derive(Clone, Copy)]
pub struct DeviceScope<'a> {
    header: &'a RawDeviceScope,
    path: &'a [RawPathEntry],
    offset: usize,
}

impl<'a> DeviceScope<'a> {
    /// What kind of device the scope names.
    pub fn kind(&self) -> DeviceScopeKind {
        DeviceScopeKind::from_raw(self.header.kind)
    }

    /// The enumeration id: the I/O APIC id, HPET number or ACPI device
    /// number, depending on [`DeviceScope::kind`]; 0 for PCI devices.
    pub fn enumeration_id(&self) -> u8 {
        self.header.enumeration_id
    }

    /// The bus number where the path starts.
    pub fn start_bus(&self) -> u8 {
        self.header.start_bus
    }

    /// Where the scope starts in the table.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The path: the (device, function) of each hop from the start bus,
    /// through bridges, to the device. Every device is at most 31 and every
    /// function at most 7.
    pub fn path(
        &self,
    ) -> impl ExactSizeIterator<Item = (u8, u8)> + DoubleEndedIterator + Clone + 'a {
        self.path.iter().map(|e| (e.device, e.function))
    }

    /// The requester id of the device, following the path from the start
    /// bus: each hop but the last is a bridge, and `secondary_bus` gives the
    /// secondary bus number of that bridge (from its configuration space).
    /// `secondary_bus` is not called for a path of one hop. `None` if the
    /// path is empty or `secondary_bus` returned `None`.
    pub fn resolve(
        &self,
        mut secondary_bus: impl FnMut(SourceId) -> Option<u8>,
    ) -> Option<SourceId> {
        let mut bus = self.start_bus();
        let mut previous: Option<SourceId> = None;
        for (device, function) in self.path() {
            if let Some(bridge) = previous {
                bus = secondary_bus(bridge)?;
            }
            previous = Some(SourceId::new(bus, device, function)?);
        }
        previous
    }
}

impl fmt::Debug for DeviceScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceScope")
            .field("kind", &self.kind())
            .field("enumeration_id", &self.enumeration_id())
            .field("start_bus", &self.start_bus())
            .field("path", &DebugList(self.path()))
            .finish()
    }
}

/// The device scope area of a remapping structure: the bytes after its
/// fixed part, and where they start in the table.
#[derive(Clone, Copy)]
pub(super) struct ScopeArea<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> ScopeArea<'a> {
    pub(super) fn new(bytes: &'a [u8], offset: usize) -> Self {
        Self { bytes, offset }
    }

    pub(super) fn scopes(self) -> DeviceScopes<'a> {
        DeviceScopes { area: self }
    }
}

impl fmt::Debug for ScopeArea<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DebugList(self.scopes()).fmt(f)
    }
}

/// The device scopes of one remapping structure, in order.
///
/// An error in a scope's framing (truncated header, length below 6 or past
/// the end of the structure, half a path entry) is yielded once and ends
/// the iteration; a path entry out of range is yielded in place of its
/// scope and iteration goes on.
#[derive(Clone, Debug)]
pub struct DeviceScopes<'a> {
    area: ScopeArea<'a>,
}

impl<'a> DeviceScopes<'a> {
    /// Ends the iteration and returns `err`.
    fn fail(&mut self, err: DmarError) -> Option<Result<DeviceScope<'a>, DmarError>> {
        self.area.bytes = &[];
        Some(Err(err))
    }
}

impl<'a> Iterator for DeviceScopes<'a> {
    type Item = Result<DeviceScope<'a>, DmarError>;

    fn next(&mut self) -> Option<Self::Item> {
        let ScopeArea { bytes, offset } = self.area;
        if bytes.is_empty() {
            return None;
        }
        let Ok((header, _)) = RawDeviceScope::ref_from_prefix(bytes) else {
            return self.fail(DmarError::TruncatedScope { offset, remaining: bytes.len() });
        };
        let length = header.length;
        if usize::from(length) < core::mem::size_of::<RawDeviceScope>() {
            return self.fail(DmarError::ScopeTooShort { offset, length });
        }
        let Some((scope, rest)) = bytes.split_at_checked(usize::from(length)) else {
            return self.fail(DmarError::ScopeOverrun { offset, length, remaining: bytes.len() });
        };
        let path = RawDeviceScope::ref_from_prefix(scope)
            .ok()
            .and_then(|(_, path)| <[RawPathEntry]>::ref_from_bytes(path).ok());
        let Some(path) = path else {
            return self.fail(DmarError::OddPath { offset, length });
        };
        self.area = ScopeArea { bytes: rest, offset: offset + scope.len() };
        if let Some(bad) = path.iter().find(|e| SourceId::new(0, e.device, e.function).is_none()) {
            return Some(Err(DmarError::InvalidPathEntry {
                offset,
                device: bad.device,
                function: bad.function,
            }));
        }
        Some(Ok(DeviceScope { header, path, offset }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.area.bytes.len();
        (usize::from(left > 0), Some(left.div_ceil(core::mem::size_of::<RawDeviceScope>())))
    }
}

impl FusedIterator for DeviceScopes<'_> {}
