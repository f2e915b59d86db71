//! [`DmarWriter`]: writes a DMAR table (§8) into a byte buffer, without a
//! heap: what a hypervisor gives a guest that has a vIOMMU, and how tests
//! and examples describe a software unit to a driver that reads the table
//! as it would the firmware's.

use super::device_scope::DeviceScopeKind;
use super::drhd::DrhdFlags;
use super::error::DmarError;
use super::table::{Dmar, DmarFlags};
use crate::addr::{PAGE_SIZE, PhysAddr};

/// Bytes of a DRHD's fixed part (§8.3).
const DRHD_LEN: usize = 16;
/// Bytes of an RMRR's fixed part (§8.4).
const RMRR_LEN: usize = 24;
/// Bytes of a device scope's header (§8.3.1).
const SCOPE_LEN: usize = 6;

/// A DMAR table being written into a buffer. Each method appends, in table
/// order; [`finish`](Self::finish) fills in the length and checksum and
/// returns the table, which [`Dmar::parse`] accepts.
///
/// ```
/// use vtd_regs::dmar::{Dmar, DmarFlags, DmarWriter, DeviceScopeKind, DrhdFlags, RemappingStructure};
/// use vtd_regs::PhysAddr;
///
/// let mut buf = [0u8; 256];
/// let table = DmarWriter::new(&mut buf, 39, DmarFlags::INTR_REMAP)?
///     .drhd(DrhdFlags::empty(), 0, PhysAddr::new(0xfed9_0000))?
///     .device(DeviceScopeKind::PciEndpoint, 0, 0, &[(1, 0)])? // 00:01.0
///     .rmrr(0, PhysAddr::new(0x7f00_0000), PhysAddr::new(0x7f0f_ffff))?
///     .device(DeviceScopeKind::PciEndpoint, 0, 0, &[(1, 0)])?
///     .finish()?;
/// let dmar = Dmar::parse(table)?;
/// assert_eq!(dmar.host_address_width(), 39);
/// assert!(matches!(dmar.structures().next(), Some(Ok(RemappingStructure::Drhd(_)))));
/// # Ok::<(), vtd_regs::dmar::DmarError>(())
/// ```
#[derive(Debug)]
pub struct DmarWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    /// Where the structure that takes device scopes starts.
    open: Option<usize>,
}

impl<'a> DmarWriter<'a> {
    /// A table in `buf` for a platform of `host_address_width` bits of DMA
    /// addressability (§8.1; the field holds the width minus one), with the
    /// platform `flags`. The ACPI header names viommu as its OEM and
    /// creator.
    ///
    /// # Errors
    /// [`DmarError::NoRoom`] if `buf` is shorter than the 48-byte header.
    pub fn new(
        buf: &'a mut [u8],
        host_address_width: u8,
        flags: DmarFlags,
    ) -> Result<Self, DmarError> {
        let mut w = Self { buf, len: 0, open: None };
        let mut header = [0u8; Dmar::HEADER_LEN];
        header[..4].copy_from_slice(&Dmar::SIGNATURE);
        header[8] = 1; // revision
        header[10..16].copy_from_slice(b"VIOMMU");
        header[16..24].copy_from_slice(b"VIOMMU  ");
        header[24..28].copy_from_slice(&1u32.to_le_bytes());
        header[28..32].copy_from_slice(b"VIOM");
        header[32..36].copy_from_slice(&1u32.to_le_bytes());
        header[36] = host_address_width.saturating_sub(1);
        header[37] = flags.bits();
        w.append(&header)?;
        Ok(w)
    }

    /// Appends a remapping unit definition (§8.3) of one 4 KiB register
    /// page at `register_base`; the device scopes that follow are its.
    ///
    /// # Errors
    /// [`DmarError::NoRoom`].
    pub fn drhd(
        mut self,
        flags: DrhdFlags,
        segment: u16,
        register_base: PhysAddr,
    ) -> Result<Self, DmarError> {
        let mut s = [0u8; DRHD_LEN];
        s[2..4].copy_from_slice(&(DRHD_LEN as u16).to_le_bytes());
        s[4] = flags.bits();
        s[6..8].copy_from_slice(&segment.to_le_bytes());
        s[8..16].copy_from_slice(&register_base.as_u64().to_le_bytes());
        self.open = Some(self.len);
        self.append(&s)?;
        Ok(self)
    }

    /// Appends a reserved memory region (§8.4), `base..=limit` (whole
    /// pages); the device scopes that follow are the devices that use it.
    ///
    /// # Errors
    /// [`DmarError::RmrrRange`] if the range is not whole pages,
    /// [`DmarError::NoRoom`].
    pub fn rmrr(
        mut self,
        segment: u16,
        base: PhysAddr,
        limit: PhysAddr,
    ) -> Result<Self, DmarError> {
        if !base.is_aligned(PAGE_SIZE) || limit.page_offset() != PAGE_SIZE - 1 || limit < base {
            return Err(DmarError::RmrrRange { offset: self.len, base, limit });
        }
        let mut s = [0u8; RMRR_LEN];
        s[..2].copy_from_slice(&1u16.to_le_bytes());
        s[2..4].copy_from_slice(&(RMRR_LEN as u16).to_le_bytes());
        s[6..8].copy_from_slice(&segment.to_le_bytes());
        s[8..16].copy_from_slice(&base.as_u64().to_le_bytes());
        s[16..24].copy_from_slice(&limit.as_u64().to_le_bytes());
        self.open = Some(self.len);
        self.append(&s)?;
        Ok(self)
    }

    /// Appends a device scope (§8.3.1) to the last DRHD or RMRR: a device
    /// of `kind` reached from `start_bus` through the (device, function)
    /// hops of `path`.
    ///
    /// # Errors
    /// [`DmarError::ScopeWithoutStructure`] before any DRHD or RMRR,
    /// [`DmarError::InvalidPathEntry`] for a device above 31 or a function
    /// above 7, [`DmarError::NoRoom`] (also for a path too long for the
    /// scope's 8-bit length).
    pub fn device(
        mut self,
        kind: DeviceScopeKind,
        enumeration_id: u8,
        start_bus: u8,
        path: &[(u8, u8)],
    ) -> Result<Self, DmarError> {
        let open = self.open.ok_or(DmarError::ScopeWithoutStructure)?;
        let scope_len = SCOPE_LEN + 2 * path.len();
        let length = u8::try_from(scope_len).map_err(|_| DmarError::NoRoom {
            needed: scope_len,
            available: usize::from(u8::MAX),
        })?;
        let offset = self.len;
        if let Some(&(device, function)) = path.iter().find(|(d, f)| *d > 31 || *f > 7) {
            return Err(DmarError::InvalidPathEntry { offset, device, function });
        }
        let structure_len = offset + scope_len - open;
        let structure_len = u16::try_from(structure_len).map_err(|_| DmarError::NoRoom {
            needed: structure_len,
            available: usize::from(u16::MAX),
        })?;
        self.append(&[kind.raw(), length, 0, 0, enumeration_id, start_bus])?;
        for &(device, function) in path {
            self.append(&[device, function])?;
        }
        self.buf[open + 2..open + 4].copy_from_slice(&structure_len.to_le_bytes());
        Ok(self)
    }

    /// Fills in the table's length and checksum and returns its bytes.
    ///
    /// # Errors
    /// [`DmarError::NoRoom`] if the table is longer than 4 GiB.
    pub fn finish(self) -> Result<&'a [u8], DmarError> {
        let length = u32::try_from(self.len)
            .map_err(|_| DmarError::NoRoom { needed: self.len, available: u32::MAX as usize })?;
        let table = &mut self.buf[..self.len];
        table[4..8].copy_from_slice(&length.to_le_bytes());
        table[9] = 0;
        let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        table[9] = sum.wrapping_neg();
        Ok(table)
    }

    /// Appends `bytes`.
    fn append(&mut self, bytes: &[u8]) -> Result<(), DmarError> {
        let end = self.len + bytes.len();
        let available = self.buf.len();
        let room =
            self.buf.get_mut(self.len..end).ok_or(DmarError::NoRoom { needed: end, available })?;
        room.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}
