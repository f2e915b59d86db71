//! What the DMAR table (VT-d §8) says about the unit a device is behind:
//! its register page, the devices it translates for, and the memory its
//! devices must keep reaching (RMRRs, §8.4), copied out of the table so
//! the table need not outlive bring-up.

use heapless::Vec;
use vtd_regs::dmar::{DeviceScopeKind, DeviceScopes, Dmar, RemappingStructure};
use vtd_regs::{PhysAddr, SourceId};

use crate::{Error, Result};

/// Most devices a unit's scopes, or a region's, are kept for.
pub const MAX_DEVICES: usize = 32;
/// Most reserved regions kept for a unit.
pub const MAX_REGIONS: usize = 8;

/// A reserved memory region (RMRR, §8.4): memory the firmware set up for
/// some devices to keep reaching (USB legacy emulation, graphics' stolen
/// memory). A domain identity-maps it for those devices when they attach,
/// and never hands its addresses out as IOVAs, as Linux does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    base: PhysAddr,
    limit: PhysAddr,
    devices: Vec<SourceId, MAX_DEVICES>,
}

impl ReservedRegion {
    /// A region `base..=limit` (whole pages) for `devices`.
    ///
    /// # Errors
    /// [`Error::TooManyEntries`] for more than [`MAX_DEVICES`] devices.
    pub fn new(base: PhysAddr, limit: PhysAddr, devices: &[SourceId]) -> Result<Self> {
        let devices = Vec::from_slice(devices).map_err(|_| Error::TooManyEntries)?;
        Ok(Self { base, limit, devices })
    }

    /// The first byte (page-aligned).
    pub fn base(&self) -> PhysAddr {
        self.base
    }

    /// The last byte (inclusive; the last byte of a page).
    pub fn limit(&self) -> PhysAddr {
        self.limit
    }

    /// The region's size in bytes.
    pub fn len(&self) -> u64 {
        self.limit.as_u64() - self.base.as_u64() + 1
    }

    /// Whether the region is empty (never: a region is at least a page).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The devices that use it.
    pub fn devices(&self) -> &[SourceId] {
        &self.devices
    }
}

/// One remapping unit as the DMAR table describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmarUnit {
    register_base: PhysAddr,
    include_pci_all: bool,
    devices: Vec<SourceId, MAX_DEVICES>,
    regions: Vec<ReservedRegion, MAX_REGIONS>,
    host_address_width: u32,
}

impl DmarUnit {
    /// The unit that translates for `device` (PCI segment 0): the DRHD whose
    /// device scopes name it, else the one with INCLUDE_PCI_ALL (§8.3), with
    /// the reserved regions of the devices it covers. The table's checksum
    /// must hold (firmware tables always do). Device scopes behind PCI
    /// bridges are not followed: see
    /// [`for_device_resolving`](Self::for_device_resolving).
    ///
    /// # Errors
    /// [`Error::Dmar`] for a malformed table, [`Error::NoUnitFor`] if no
    /// DRHD covers the device, [`Error::TooManyEntries`] beyond
    /// [`MAX_DEVICES`] or [`MAX_REGIONS`].
    pub fn for_device(dmar: &[u8], device: SourceId) -> Result<Self> {
        Self::for_device_resolving(dmar, device, |_| None)
    }

    /// [`for_device`](Self::for_device), resolving device scopes through
    /// bridges with `secondary_bus` (the secondary bus number a bridge's
    /// configuration space holds; `None` if unknown).
    ///
    /// # Errors
    /// As [`for_device`](Self::for_device).
    pub fn for_device_resolving(
        dmar: &[u8],
        device: SourceId,
        mut secondary_bus: impl FnMut(SourceId) -> Option<u8>,
    ) -> Result<Self> {
        let dmar = Dmar::parse(dmar)?;
        dmar.validate()?;
        let bus = &mut secondary_bus;
        // The DRHD naming the device, else the segment's catch-all (listed
        // last, §8.3).
        let drhd = dmar
            .structures()
            .flatten()
            .filter_map(|s| match s {
                RemappingStructure::Drhd(d) if d.segment() == 0 => Some(d),
                _ => None,
            })
            .find(|d| names(d.device_scopes(), device, bus) || d.include_pci_all())
            .ok_or(Error::NoUnitFor(device))?;
        let mut unit = DmarUnit {
            register_base: drhd.register_base(),
            include_pci_all: drhd.include_pci_all(),
            devices: collect(drhd.device_scopes(), bus)?,
            regions: Vec::new(),
            host_address_width: dmar.host_address_width(),
        };
        for structure in dmar.structures().flatten() {
            let RemappingStructure::Rmrr(rmrr) = structure else { continue };
            if rmrr.segment() != 0 {
                continue;
            }
            // Ours: named by our DRHD, or (INCLUDE_PCI_ALL) by no other.
            let ours = |sid: SourceId, bus: &mut dyn FnMut(SourceId) -> Option<u8>| {
                unit.devices.contains(&sid)
                    || (unit.include_pci_all
                        && !dmar.structures().flatten().any(|s| match s {
                            RemappingStructure::Drhd(other) => {
                                other.segment() == 0
                                    && other.register_base() != unit.register_base
                                    && names(other.device_scopes(), sid, &mut *bus)
                            }
                            _ => false,
                        }))
            };
            let mut users: Vec<SourceId, MAX_DEVICES> = Vec::new();
            for scope in rmrr.device_scopes().flatten().filter(|s| is_pci(s.kind())) {
                let Some(sid) = scope.resolve(&mut *bus) else { continue };
                if ours(sid, &mut *bus) && !users.contains(&sid) {
                    users.push(sid).map_err(|_| Error::TooManyEntries)?;
                }
            }
            if !users.is_empty() {
                let region =
                    ReservedRegion { base: rmrr.base(), limit: rmrr.limit(), devices: users };
                unit.regions.push(region).map_err(|_| Error::TooManyEntries)?;
            }
        }
        Ok(unit)
    }

    /// A unit known by its register page alone, with the reserved regions
    /// given (for platforms without a DMAR table, and tests).
    ///
    /// # Errors
    /// [`Error::TooManyEntries`] beyond [`MAX_REGIONS`].
    pub fn from_parts(register_base: PhysAddr, regions: &[ReservedRegion]) -> Result<Self> {
        let mut kept = Vec::new();
        for r in regions {
            kept.push(r.clone()).map_err(|_| Error::TooManyEntries)?;
        }
        Ok(DmarUnit {
            register_base,
            include_pci_all: true,
            devices: Vec::new(),
            regions: kept,
            host_address_width: 64,
        })
    }

    /// The base of the unit's register page.
    pub fn register_base(&self) -> PhysAddr {
        self.register_base
    }

    /// The PCI devices its scopes name (with INCLUDE_PCI_ALL, also every
    /// device no other unit names).
    pub fn devices(&self) -> &[SourceId] {
        &self.devices
    }

    /// Whether the unit covers every PCI device of its segment that no
    /// other unit names.
    pub fn include_pci_all(&self) -> bool {
        self.include_pci_all
    }

    /// The reserved regions of the devices it covers.
    pub fn reserved_regions(&self) -> &[ReservedRegion] {
        &self.regions
    }

    /// The platform's DMA addressability in bits (§8.1).
    pub fn host_address_width(&self) -> u32 {
        self.host_address_width
    }
}

/// Whether `scopes` name the PCI device `sid`.
fn names(
    scopes: DeviceScopes<'_>,
    sid: SourceId,
    bus: &mut dyn FnMut(SourceId) -> Option<u8>,
) -> bool {
    scopes.flatten().filter(|s| is_pci(s.kind())).any(|s| s.resolve(&mut *bus) == Some(sid))
}

/// The PCI devices `scopes` name.
fn collect(
    scopes: DeviceScopes<'_>,
    bus: &mut dyn FnMut(SourceId) -> Option<u8>,
) -> Result<Vec<SourceId, MAX_DEVICES>> {
    let mut out = Vec::new();
    for scope in scopes.flatten().filter(|s| is_pci(s.kind())) {
        if let Some(sid) = scope.resolve(&mut *bus).filter(|s| !out.contains(s)) {
            out.push(sid).map_err(|_| Error::TooManyEntries)?;
        }
    }
    Ok(out)
}

/// Whether a scope names PCI devices (endpoints, or a bridge and its
/// hierarchy), as opposed to I/O APICs, HPETs or ACPI devices.
fn is_pci(kind: DeviceScopeKind) -> bool {
    matches!(kind, DeviceScopeKind::PciEndpoint | DeviceScopeKind::PciSubHierarchy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_regs::dmar::{DmarFlags, DmarWriter, DrhdFlags};

    const GPU: SourceId = SourceId::from_raw(0x0010); // 00:02.0
    const NIC: SourceId = SourceId::from_raw(0x0008); // 00:01.0
    const USB: SourceId = SourceId::from_raw(0x00a0); // 00:14.0

    /// Two units, as on a laptop: one for the GPU alone, a catch-all for
    /// the rest; an RMRR for the GPU's stolen memory, one for USB.
    fn laptop(buf: &mut [u8]) -> &[u8] {
        let pci = DeviceScopeKind::PciEndpoint;
        let page = |a: u64| PhysAddr::new(a);
        DmarWriter::new(buf, 39, DmarFlags::INTR_REMAP)
            .and_then(|w| w.drhd(DrhdFlags::empty(), 0, page(0xfed9_0000)))
            .and_then(|w| w.device(pci, 0, 0, &[(2, 0)]))
            .and_then(|w| w.drhd(DrhdFlags::INCLUDE_PCI_ALL, 0, page(0xfed9_1000)))
            .and_then(|w| w.device(DeviceScopeKind::IoApic, 2, 0xf0, &[(0x1f, 0)]))
            .and_then(|w| w.rmrr(0, page(0x7c00_0000), page(0x7fff_ffff)))
            .and_then(|w| w.device(pci, 0, 0, &[(2, 0)]))
            .and_then(|w| w.rmrr(0, page(0x398d_a000), page(0x39b2_3fff)))
            .and_then(|w| w.device(pci, 0, 0, &[(0x14, 0)]))
            .and_then(|w| w.device(pci, 0, 0, &[(0x1c, 0), (0, 0)]))
            .and_then(|w| w.finish())
            .unwrap()
    }

    #[test]
    fn each_device_finds_its_unit_and_regions() {
        let mut buf = [0u8; 512];
        let table = laptop(&mut buf);
        let gpu = DmarUnit::for_device(table, GPU).unwrap();
        assert_eq!(gpu.register_base(), PhysAddr::new(0xfed9_0000));
        assert_eq!((gpu.devices(), gpu.include_pci_all()), (&[GPU][..], false));
        let r = gpu.reserved_regions();
        assert_eq!((r.len(), r[0].devices(), r[0].len()), (1, &[GPU][..], 0x400_0000));
        // The NIC is nobody's by name: the catch-all's, with USB's region
        // (the device behind a bridge is not followed without a resolver).
        let rest = DmarUnit::for_device(table, NIC).unwrap();
        assert_eq!(rest.register_base(), PhysAddr::new(0xfed9_1000));
        assert!(rest.include_pci_all() && rest.devices().is_empty());
        let r = rest.reserved_regions();
        assert_eq!((r.len(), r[0].devices()), (1, &[USB][..]));
        let bridged = SourceId::new(5, 0, 0).unwrap();
        let resolved = DmarUnit::for_device_resolving(table, NIC, |_| Some(5)).unwrap();
        assert_eq!(resolved.reserved_regions()[0].devices(), [USB, bridged]);
        assert_eq!(resolved.host_address_width(), 39);
    }

    #[test]
    fn tables_without_a_unit_for_the_device() {
        let mut buf = [0u8; 128];
        let only_gpu = DmarWriter::new(&mut buf, 39, DmarFlags::empty())
            .and_then(|w| w.drhd(DrhdFlags::empty(), 0, PhysAddr::new(0xfed9_0000)))
            .and_then(|w| w.device(DeviceScopeKind::PciEndpoint, 0, 0, &[(2, 0)]))
            .and_then(|w| w.finish())
            .unwrap();
        assert_eq!(DmarUnit::for_device(only_gpu, NIC), Err(Error::NoUnitFor(NIC)));
        assert!(matches!(DmarUnit::for_device(b"DMAR", NIC), Err(Error::Dmar(_))));
    }
}
