//! Known-answer tests on hand-built and real firmware tables, one test per
//! error, and property tests that walk arbitrary and mutated tables.

use proptest::prelude::*;

use super::*;
use crate::addr::PhysAddr;
use crate::ids::SourceId;

/// A table built byte by byte from §8.1-§8.8: two DRHDs (the
/// INCLUDE_PCI_ALL one last, as §8.3 requires), an RMRR for the USB
/// controller 00:14.0, an ATSR, an RHSA, an ANDD, a SATC whose device sits
/// behind the bridge 00:1c.4, and a structure of a reserved type.
#[rustfmt::skip]
const KAT: [u8; 211] = [
    0x44, 0x4d, 0x41, 0x52, // signature
    0xd3, 0x00, 0x00, 0x00, // length 211
    0x01, // revision
    0x19, // checksum
    0x56, 0x49, 0x4f, 0x4d, 0x4d, 0x55, // OEM id
    0x56, 0x54, 0x44, 0x54, 0x45, 0x53, 0x54, 0x20, // OEM table id
    0x01, 0x00, 0x00, 0x00, // OEM revision
    0x56, 0x49, 0x4f, 0x4d, // creator id
    0x25, 0x11, 0x26, 0x20, // creator revision
    0x26, // host address width - 1 (39 bits)
    0x01, // flags: INTR_REMAP
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x18, 0x00, // DRHD: type 0, length 24
    0x00, 0x00, 0x00, 0x00, // flags 0, size 0, segment 0
    0x00, 0x10, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00, // register base 0xfed91000
    0x01, 0x08, 0x00, 0x00, 0x00, 0x00, // scope: endpoint, length 8, enumeration id 0, start bus 0
    0x02, 0x00, // path 02.0
    0x00, 0x00, 0x18, 0x00, // DRHD: type 0, length 24
    0x01, 0x00, 0x00, 0x00, // flags INCLUDE_PCI_ALL, size 0, segment 0
    0x00, 0x00, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00, // register base 0xfed90000
    0x03, 0x08, 0x00, 0x00, 0x02, 0xf0, // scope: I/O APIC, length 8, I/O APIC id 2, start bus 0xf0
    0x1f, 0x00, // path 1f.0
    0x01, 0x00, 0x20, 0x00, // RMRR: type 1, length 32
    0x00, 0x00, 0x00, 0x00, // reserved, segment 0
    0x00, 0x00, 0x00, 0x7c, 0x00, 0x00, 0x00, 0x00, // base 0x7c00_0000
    0xff, 0xff, 0x7f, 0x7c, 0x00, 0x00, 0x00, 0x00, // limit 0x7c7f_ffff
    0x01, 0x08, 0x00, 0x00, 0x00, 0x00, // scope: endpoint, length 8, start bus 0
    0x14, 0x00, // path 14.0
    0x02, 0x00, 0x10, 0x00, // ATSR: type 2, length 16
    0x00, 0x00, 0x00, 0x00, // flags 0, reserved, segment 0
    0x02, 0x08, 0x00, 0x00, 0x00, 0x00, // scope: sub-hierarchy, length 8, start bus 0
    0x1c, 0x00, // path 1c.0
    0x03, 0x00, 0x14, 0x00, // RHSA: type 3, length 20
    0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00, // register base 0xfed90000
    0x01, 0x00, 0x00, 0x00, // proximity domain 1
    0x04, 0x00, 0x17, 0x00, // ANDD: type 4, length 23
    0x00, 0x00, 0x00, 0x07, // reserved, ACPI device number 7
    0x5c, 0x5f, 0x53, 0x42, 0x2e, 0x50, 0x43, 0x49, 0x30, 0x2e, 0x49, 0x32, 0x43, 0x30, 0x00, // object name \_SB.PCI0.I2C0, NUL
    0x05, 0x00, 0x12, 0x00, // SATC: type 5, length 18
    0x01, 0x00, 0x00, 0x00, // flags ATC_REQUIRED, reserved, segment 0
    0x01, 0x0a, 0x00, 0x00, 0x00, 0x00, // scope: endpoint, length 10, start bus 0
    0x1c, 0x04, 0x00, 0x00, // path 1c.4 (bridge), 00.0
    0x7f, 0x00, 0x06, 0x00, // type 0x7f (reserved), length 6
    0xaa, 0xbb, // payload
];

/// A desktop board's firmware DMAR (EDK2, Intel 400-series chipset), as
/// dumped by the ACPI tools (`acpidump`/`iasl -d`) with its checksum 0x2e:
/// DRHD 0xfed90000 for the graphics device 00:02.0, DRHD 0xfed91000 with
/// INCLUDE_PCI_ALL, I/O APIC 2 at 00:1e.7 and HPET 0 at 00:1e.6, and an
/// RMRR 0x398da000..=0x39b23fff for the USB controller 00:14.0.
#[rustfmt::skip]
const FIRMWARE: [u8; 136] = [
    0x44, 0x4d, 0x41, 0x52, 0x88, 0x00, 0x00, 0x00, 0x01, 0x2e, 0x49, 0x4e, 0x54, 0x45, 0x4c, 0x20,
    0x45, 0x44, 0x4b, 0x32, 0x20, 0x20, 0x20, 0x20, 0x02, 0x00, 0x00, 0x00, 0x49, 0x4e, 0x54, 0x4c,
    0x25, 0x09, 0x20, 0x20, 0x26, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x10, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x02, 0x00, 0x1e, 0x07,
    0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x1e, 0x06, 0x01, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xa0, 0x8d, 0x39, 0x00, 0x00, 0x00, 0x00, 0xff, 0x3f, 0xb2, 0x39, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00,
];

/// QEMU 7.2's q35 DMAR (`-machine q35,kernel-irqchip=split -nodefaults
/// -device intel-iommu,intremap=on,device-iotlb=on`), read through fw_cfg
/// (`etc/acpi/tables`) over qtest. The checksum byte is still 0: QEMU's
/// BIOS linker fills it in when the firmware loads the tables. One DRHD
/// at 0xfed90000 listing the I/O APIC at ff:00.0 (QEMU's pseudo bus) and
/// each device of the root bus (no INCLUDE_PCI_ALL), and an ATSR with
/// ALL_PORTS.
#[rustfmt::skip]
const QEMU_Q35: [u8; 112] = [
    0x44, 0x4d, 0x41, 0x52, 0x70, 0x00, 0x00, 0x00, 0x01, 0x00, 0x42, 0x4f, 0x43, 0x48, 0x53, 0x20,
    0x42, 0x58, 0x50, 0x43, 0x20, 0x20, 0x20, 0x20, 0x01, 0x00, 0x00, 0x00, 0x42, 0x58, 0x50, 0x43,
    0x01, 0x00, 0x00, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00,
    0x03, 0x08, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x02,
    0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x03, 0x02, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00,
];

fn sid(bus: u8, device: u8, function: u8) -> SourceId {
    SourceId::new(bus, device, function).unwrap()
}

/// Sets the length field to the size of `table` and the checksum so that
/// its bytes sum to zero.
fn seal(mut table: Vec<u8>) -> Vec<u8> {
    let length = u32::try_from(table.len()).unwrap();
    table[4..8].copy_from_slice(&length.to_le_bytes());
    table[9] = 0;
    table[9] = table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)).wrapping_neg();
    table
}

/// The KAT's header followed by `structures`, sealed.
fn table_of(structures: &[u8]) -> Vec<u8> {
    let mut table = KAT[..Dmar::HEADER_LEN].to_vec();
    table.extend_from_slice(structures);
    seal(table)
}

fn structures(table: &[u8]) -> Vec<Result<RemappingStructure<'_>, DmarError>> {
    Dmar::parse(table).unwrap().structures().collect()
}

/// The scopes of the only structure of `table`.
fn scopes(table: &[u8]) -> Vec<Result<DeviceScope<'_>, DmarError>> {
    let all = structures(table);
    assert_eq!(all.len(), 1);
    all[0].as_ref().unwrap().device_scopes().unwrap().collect()
}

fn path(scope: &DeviceScope<'_>) -> Vec<(u8, u8)> {
    scope.path().collect()
}

/// A resolver for paths that must not need one.
fn no_bridges(bridge: SourceId) -> Option<u8> {
    panic!("secondary bus of {bridge} asked for a one-hop path")
}

#[test]
fn known_answer_table() {
    let dmar = Dmar::parse(&KAT).unwrap();
    assert_eq!((dmar.length(), dmar.revision(), dmar.as_bytes().len()), (211, 1, 211));
    assert_eq!((dmar.oem_id(), dmar.oem_table_id()), (b"VIOMMU", b"VTDTEST "));
    assert_eq!((dmar.oem_revision(), dmar.creator_id()), (1, b"VIOM"));
    assert_eq!(dmar.creator_revision(), 0x2026_1125);
    assert_eq!(dmar.host_address_width(), 39);
    assert_eq!(dmar.flags(), DmarFlags::INTR_REMAP);
    assert_eq!(dmar.validate(), Ok(()));

    let all: Vec<_> = dmar.structures().map(Result::unwrap).collect();
    let kinds: Vec<_> = all.iter().map(RemappingStructure::kind).collect();
    use StructureKind::*;
    assert_eq!(kinds, [Drhd, Drhd, Rmrr, Atsr, Rhsa, Andd, Satc, Other(0x7f)]);
    assert_eq!(kinds.iter().map(|k| k.raw()).collect::<Vec<_>>(), [0, 0, 1, 2, 3, 4, 5, 0x7f]);

    let RemappingStructure::Drhd(gfx) = all[0] else { panic!("{:?}", all[0]) };
    assert!(!gfx.include_pci_all());
    assert_eq!((gfx.segment(), gfx.register_base()), (0, PhysAddr::new(0xfed9_1000)));
    assert_eq!(gfx.register_set_size(), 4096);
    let s: Vec<_> = gfx.device_scopes().map(Result::unwrap).collect();
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].kind(), s[0].enumeration_id(), s[0].start_bus()),
        (DeviceScopeKind::PciEndpoint, 0, 0)
    );
    assert_eq!((path(&s[0]), s[0].offset()), (vec![(2, 0)], 64));
    assert_eq!(s[0].resolve(no_bridges), Some(sid(0, 2, 0)));

    let RemappingStructure::Drhd(all_pci) = all[1] else { panic!("{:?}", all[1]) };
    assert!(all_pci.include_pci_all());
    assert_eq!(all_pci.flags(), DrhdFlags::INCLUDE_PCI_ALL);
    assert_eq!(all_pci.register_base(), PhysAddr::new(0xfed9_0000));
    let s: Vec<_> = all_pci.device_scopes().map(Result::unwrap).collect();
    assert_eq!((s.len(), s[0].kind(), s[0].enumeration_id()), (1, DeviceScopeKind::IoApic, 2));
    assert_eq!(s[0].resolve(no_bridges), Some(sid(0xf0, 0x1f, 0)));

    let RemappingStructure::Rmrr(usb) = all[2] else { panic!("{:?}", all[2]) };
    assert_eq!(
        (usb.segment(), usb.base(), usb.limit()),
        (0, PhysAddr::new(0x7c00_0000), PhysAddr::new(0x7c7f_ffff))
    );
    assert_eq!(usb.pages(), 0x800);
    assert!(usb.contains(PhysAddr::new(0x7c7f_ffff)) && !usb.contains(PhysAddr::new(0x7c80_0000)));
    let s: Vec<_> = usb.device_scopes().map(Result::unwrap).collect();
    assert_eq!(s[0].resolve(no_bridges), Some(sid(0, 0x14, 0)));

    let RemappingStructure::Atsr(atsr) = all[3] else { panic!("{:?}", all[3]) };
    assert!(!atsr.all_ports());
    assert_eq!((atsr.flags(), atsr.segment()), (AtsrFlags::empty(), 0));
    let s: Vec<_> = atsr.device_scopes().map(Result::unwrap).collect();
    assert_eq!(
        (s[0].kind(), s[0].resolve(no_bridges)),
        (DeviceScopeKind::PciSubHierarchy, Some(sid(0, 0x1c, 0)))
    );

    let RemappingStructure::Rhsa(rhsa) = all[4] else { panic!("{:?}", all[4]) };
    assert_eq!((rhsa.register_base(), rhsa.proximity_domain()), (PhysAddr::new(0xfed9_0000), 1));
    assert!(all[4].device_scopes().is_none());

    let RemappingStructure::Andd(andd) = all[5] else { panic!("{:?}", all[5]) };
    assert_eq!((andd.device_number(), andd.object_name()), (7, &b"\\_SB.PCI0.I2C0"[..]));

    let RemappingStructure::Satc(satc) = all[6] else { panic!("{:?}", all[6]) };
    assert!(satc.atc_required());
    assert_eq!((satc.flags(), satc.segment()), (SatcFlags::ATC_REQUIRED, 0));
    let s: Vec<_> = satc.device_scopes().map(Result::unwrap).collect();
    assert_eq!(path(&s[0]), [(0x1c, 4), (0, 0)]);
    // The device sits behind the root port 00:1c.4, whose secondary bus is 3.
    let mut asked = Vec::new();
    let resolved = s[0].resolve(|bridge| {
        asked.push(bridge);
        Some(3)
    });
    assert_eq!((resolved, asked), (Some(sid(3, 0, 0)), vec![sid(0, 0x1c, 4)]));
    assert_eq!(s[0].resolve(|_| None), None);

    let RemappingStructure::Other { kind, offset, bytes } = all[7] else { panic!("{:?}", all[7]) };
    assert_eq!((kind, offset, bytes), (0x7f, 205, &[0x7f, 0, 6, 0, 0xaa, 0xbb][..]));
    assert!(all[7].device_scopes().is_none());

    let debug = format!("{dmar:?}");
    assert!(
        debug.contains("Drhd") && debug.contains("IoApic") && debug.contains("(28, 4)"),
        "{debug}"
    );
}

#[test]
fn known_answer_firmware_table() {
    let dmar = Dmar::parse(&FIRMWARE).unwrap();
    assert_eq!(dmar.as_bytes()[9], 0x2e);
    assert_eq!(
        (dmar.oem_id(), dmar.oem_table_id(), dmar.creator_id()),
        (b"INTEL ", b"EDK2    ", b"INTL")
    );
    assert_eq!((dmar.oem_revision(), dmar.creator_revision()), (2, 0x2020_0925));
    assert_eq!(dmar.host_address_width(), 39);
    assert_eq!(dmar.flags(), DmarFlags::INTR_REMAP | DmarFlags::DMA_CTRL_PLATFORM_OPT_IN);
    assert_eq!(dmar.validate(), Ok(()));

    let all: Vec<_> = dmar.structures().map(Result::unwrap).collect();
    assert_eq!(all.len(), 3);
    let RemappingStructure::Drhd(gfx) = all[0] else { panic!("{:?}", all[0]) };
    assert_eq!((gfx.include_pci_all(), gfx.register_base()), (false, PhysAddr::new(0xfed9_0000)));
    let s: Vec<_> = gfx.device_scopes().map(Result::unwrap).collect();
    assert_eq!(
        (s.len(), s[0].kind(), s[0].resolve(no_bridges)),
        (1, DeviceScopeKind::PciEndpoint, Some(sid(0, 2, 0)))
    );

    let RemappingStructure::Drhd(rest) = all[1] else { panic!("{:?}", all[1]) };
    assert_eq!((rest.include_pci_all(), rest.register_base()), (true, PhysAddr::new(0xfed9_1000)));
    let s: Vec<_> = rest.device_scopes().map(Result::unwrap).collect();
    let got: Vec<_> =
        s.iter().map(|s| (s.kind(), s.enumeration_id(), s.resolve(no_bridges))).collect();
    assert_eq!(
        got,
        [
            (DeviceScopeKind::IoApic, 2, Some(sid(0, 0x1e, 7))),
            (DeviceScopeKind::Hpet, 0, Some(sid(0, 0x1e, 6))),
        ]
    );

    let RemappingStructure::Rmrr(usb) = all[2] else { panic!("{:?}", all[2]) };
    assert_eq!(
        (usb.base(), usb.limit(), usb.pages()),
        (PhysAddr::new(0x398d_a000), PhysAddr::new(0x39b2_3fff), 0x24a)
    );
    let s: Vec<_> = usb.device_scopes().map(Result::unwrap).collect();
    assert_eq!(s[0].resolve(no_bridges), Some(sid(0, 0x14, 0)));
}

#[test]
fn known_answer_qemu_table() {
    assert_eq!(Dmar::parse(&QEMU_Q35).unwrap_err(), DmarError::Checksum { sum: 0xd1 });
    let dmar = Dmar::parse_unchecked(&QEMU_Q35).unwrap();
    assert_eq!(
        (dmar.oem_id(), dmar.oem_table_id(), dmar.creator_id()),
        (b"BOCHS ", b"BXPC    ", b"BXPC")
    );
    assert_eq!((dmar.host_address_width(), dmar.flags()), (39, DmarFlags::INTR_REMAP));
    assert_eq!(dmar.validate(), Ok(()));
    let all: Vec<_> = dmar.structures().map(Result::unwrap).collect();
    assert_eq!(all.len(), 2);
    let RemappingStructure::Drhd(drhd) = all[0] else { panic!("{:?}", all[0]) };
    assert_eq!(
        (drhd.flags(), drhd.register_base()),
        (DrhdFlags::empty(), PhysAddr::new(0xfed9_0000))
    );
    let got: Vec<_> = drhd
        .device_scopes()
        .map(|s| s.map(|s| (s.kind(), s.enumeration_id(), s.resolve(no_bridges))))
        .collect();
    let endpoint = |d, f| Ok((DeviceScopeKind::PciEndpoint, 0, Some(sid(0, d, f))));
    assert_eq!(
        got,
        [
            Ok((DeviceScopeKind::IoApic, 0, Some(sid(0xff, 0, 0)))),
            endpoint(0, 0),
            endpoint(0x1f, 0),
            endpoint(0x1f, 2),
            endpoint(0x1f, 3),
        ]
    );
    let RemappingStructure::Atsr(atsr) = all[1] else { panic!("{:?}", all[1]) };
    assert!(atsr.all_ports());
    assert_eq!((atsr.segment(), atsr.device_scopes().count()), (0, 0));

    // With the checksum the firmware would write, the table parses.
    let mut patched = QEMU_Q35;
    patched[9] = 0xd1u8.wrapping_neg();
    assert_eq!(Dmar::parse(&patched).map(|d| d.as_bytes().len()), Ok(112));
}

#[test]
fn header_errors() {
    assert_eq!(Dmar::parse(&KAT[..47]).unwrap_err(), DmarError::TruncatedHeader { available: 47 });
    assert_eq!(Dmar::parse(&[]).unwrap_err(), DmarError::TruncatedHeader { available: 0 });

    let mut t = KAT;
    t[0] = b'X';
    assert_eq!(Dmar::parse(&t).unwrap_err(), DmarError::BadSignature(*b"XMAR"));

    let mut t = KAT;
    t[4] = 47;
    assert_eq!(Dmar::parse(&t).unwrap_err(), DmarError::LengthBelowHeader { length: 47 });
    t[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Dmar::parse(&t).unwrap_err(),
        DmarError::LengthBeyondBuffer { length: u32::MAX, available: 211 }
    );
    assert_eq!(
        Dmar::parse(&KAT[..210]).unwrap_err(),
        DmarError::LengthBeyondBuffer { length: 211, available: 210 }
    );

    let mut t = KAT;
    t[100] = t[100].wrapping_add(3);
    assert_eq!(Dmar::parse(&t).unwrap_err(), DmarError::Checksum { sum: 3 });
    assert_eq!(Dmar::parse_unchecked(&t).map(|d| d.length()), Ok(211));

    // Bytes past the length field are not part of the table.
    let mut padded = KAT.to_vec();
    padded.extend_from_slice(&[0xff; 5]);
    assert_eq!(Dmar::parse(&padded).unwrap().as_bytes(), &KAT[..]);

    // A table with no structures at all is well formed.
    let empty = table_of(&[]);
    assert_eq!(Dmar::parse(&empty).unwrap().structures().count(), 0);
}

#[test]
fn structure_framing_errors() {
    // Three bytes cannot hold a type and a length.
    let t = table_of(&[0, 0, 0x18]);
    assert_eq!(
        structures(&t)[0].unwrap_err(),
        DmarError::TruncatedStructure { offset: 48, remaining: 3 }
    );

    // A zero length would never advance: reported once, then the end.
    let t = table_of(&[0, 0, 0, 0, 1, 0, 0, 0]);
    let all = structures(&t);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].unwrap_err(), DmarError::ZeroLengthStructure { offset: 48 });

    let t = table_of(&[0, 0, 2, 0, 0, 0]);
    let all = structures(&t);
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].unwrap_err(),
        DmarError::StructureTooShort { offset: 48, kind: 0, length: 2, minimum: 4 }
    );

    // The DRHD claims 24 bytes; 16 are left.
    let t = table_of(&KAT[48..64]);
    assert_eq!(
        structures(&t)[0].unwrap_err(),
        DmarError::StructureOverrun { offset: 48, length: 24, remaining: 16 }
    );
}

#[test]
fn structure_content_errors_skip_to_the_next() {
    // A DRHD of length 8 (its fixed part is 16), then the KAT's RHSA.
    let mut s = vec![0, 0, 8, 0, 0, 0, 0, 0];
    s.extend_from_slice(&KAT[144..164]);
    let t = table_of(&s);
    let all = structures(&t);
    assert_eq!(
        all[0].unwrap_err(),
        DmarError::StructureTooShort { offset: 48, kind: 0, length: 8, minimum: 16 }
    );
    assert!(matches!(all[1], Ok(RemappingStructure::Rhsa(_))));
    assert_eq!(Dmar::parse(&t).unwrap().validate(), Err(all[0].unwrap_err()));

    // Every fixed part is checked: RMRR 24, ATSR 8, RHSA 20, ANDD 8, SATC 8.
    for (kind, minimum) in [(1u8, 24), (2, 8), (3, 20), (4, 8), (5, 8)] {
        let t = table_of(&[kind, 0, 4, 0]);
        assert_eq!(
            structures(&t)[0].unwrap_err(),
            DmarError::StructureTooShort { offset: 48, kind: kind.into(), length: 4, minimum }
        );
    }
}

#[test]
fn rmrr_range_errors() {
    let rmrr = |base: u64, limit: u64| {
        let mut s = KAT[96..128].to_vec();
        s[8..16].copy_from_slice(&base.to_le_bytes());
        s[16..24].copy_from_slice(&limit.to_le_bytes());
        table_of(&s)
    };
    for (base, limit) in
        [(0x7c00_0800, 0x7c7f_ffff), (0x7c00_0000, 0x7c7f_fffe), (0x7c80_0000, 0x7c7f_ffff)]
    {
        let t = rmrr(base, limit);
        assert_eq!(
            structures(&t)[0].unwrap_err(),
            DmarError::RmrrRange {
                offset: 48,
                base: PhysAddr::new(base),
                limit: PhysAddr::new(limit)
            }
        );
    }
    // One page, and the whole address space, are fine.
    let t = rmrr(0x1000, 0x1fff);
    let Ok(RemappingStructure::Rmrr(one)) = structures(&t)[0] else { panic!() };
    assert_eq!(one.pages(), 1);
    let t = rmrr(0, u64::MAX);
    let Ok(RemappingStructure::Rmrr(all)) = structures(&t)[0] else { panic!() };
    assert_eq!(all.pages(), 1 << 52);
}

#[test]
fn andd_name_must_be_terminated() {
    let mut s = KAT[164..187].to_vec();
    s[22] = b'!';
    let t = table_of(&s);
    assert_eq!(structures(&t)[0].unwrap_err(), DmarError::UnterminatedName { offset: 48 });
    // An empty name is just the NUL.
    let t = table_of(&[4, 0, 9, 0, 0, 0, 0, 3, 0]);
    let Ok(RemappingStructure::Andd(andd)) = structures(&t)[0] else { panic!() };
    assert_eq!((andd.device_number(), andd.object_name()), (3, &b""[..]));
}

/// A DRHD (fixed part from the KAT) whose scope area is `scopes`.
fn drhd_with_scopes(scopes: &[u8]) -> Vec<u8> {
    let mut s = KAT[48..64].to_vec();
    s[2..4].copy_from_slice(&u16::try_from(16 + scopes.len()).unwrap().to_le_bytes());
    s.extend_from_slice(scopes);
    table_of(&s)
}

#[test]
fn device_scope_errors() {
    let t = drhd_with_scopes(&[1, 8, 0]);
    assert_eq!(scopes(&t)[0].unwrap_err(), DmarError::TruncatedScope { offset: 64, remaining: 3 });

    for length in [0, 5] {
        let t = drhd_with_scopes(&[1, length, 0, 0, 0, 0, 2, 0]);
        let all = scopes(&t);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].unwrap_err(), DmarError::ScopeTooShort { offset: 64, length });
    }

    let t = drhd_with_scopes(&[1, 10, 0, 0, 0, 0, 2, 0]);
    assert_eq!(
        scopes(&t)[0].unwrap_err(),
        DmarError::ScopeOverrun { offset: 64, length: 10, remaining: 8 }
    );

    let t = drhd_with_scopes(&[1, 7, 0, 0, 0, 0, 2, 0]);
    let all = scopes(&t);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].unwrap_err(), DmarError::OddPath { offset: 64, length: 7 });

    // An out-of-range hop spoils only its own scope.
    let t = drhd_with_scopes(&[
        1, 8, 0, 0, 0, 0, 32, 0, 1, 8, 0, 0, 0, 0, 2, 8, 1, 8, 0, 0, 0, 0, 3, 0,
    ]);
    let all = scopes(&t);
    assert_eq!(
        all[0].unwrap_err(),
        DmarError::InvalidPathEntry { offset: 64, device: 32, function: 0 }
    );
    assert_eq!(
        all[1].unwrap_err(),
        DmarError::InvalidPathEntry { offset: 72, device: 2, function: 8 }
    );
    assert_eq!(all[2].as_ref().unwrap().resolve(no_bridges), Some(sid(0, 3, 0)));
    assert_eq!(Dmar::parse(&t).unwrap().validate(), Err(all[0].unwrap_err()));

    // A scope with an empty path (length 6) is framed but names no device;
    // reserved scope types are passed through.
    let t = drhd_with_scopes(&[9, 6, 0, 0, 4, 0]);
    let s = scopes(&t)[0].unwrap();
    assert_eq!((s.kind(), s.kind().raw(), s.path().len()), (DeviceScopeKind::Reserved(9), 9, 0));
    assert_eq!(s.resolve(no_bridges), None);
}

#[test]
fn errors_display() {
    let errors = [
        DmarError::TruncatedHeader { available: 1 },
        DmarError::BadSignature(*b"APIC"),
        DmarError::Checksum { sum: 3 },
        DmarError::ZeroLengthStructure { offset: 48 },
        DmarError::OddPath { offset: 64, length: 7 },
        DmarError::RmrrRange { offset: 48, base: PhysAddr::new(1), limit: PhysAddr::new(0) },
    ];
    for e in errors {
        assert!(e.to_string().starts_with("DMAR"), "{e}");
    }
}

/// Walks everything in `dmar`, checking what the iterators promise, and
/// returns the first error in walk order.
fn walk(dmar: &Dmar<'_>) -> Result<(), DmarError> {
    let table_len = dmar.as_bytes().len();
    let mut first = Ok(());
    let mut count = 0;
    let structures = dmar.structures();
    let (_, Some(bound)) = structures.size_hint() else { panic!("unbounded") };
    for structure in structures {
        count += 1;
        let structure = match structure {
            Ok(s) => s,
            Err(e) => {
                first = first.and(Err(e));
                continue;
            }
        };
        let _ = format!("{structure:?}");
        for scope in structure.device_scopes().into_iter().flatten() {
            let scope = match scope {
                Ok(s) => s,
                Err(e) => {
                    first = first.and(Err(e));
                    continue;
                }
            };
            let hops: Vec<_> = scope.path().collect();
            assert!(scope.offset() + 6 + 2 * hops.len() <= table_len);
            assert!(hops.iter().all(|&(d, f)| d < 32 && f < 8));
            let resolved = scope.resolve(|bridge| Some(bridge.devfn()));
            assert_eq!(resolved.map(|s| (s.device(), s.function())), hops.last().copied());
        }
    }
    assert!(count <= bound, "{count} structures, bound {bound}");
    first
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Dmar::parse(&bytes);
        if let Ok(dmar) = Dmar::parse_unchecked(&bytes) {
            prop_assert_eq!(walk(&dmar), dmar.validate());
        }
    }

    #[test]
    fn arbitrary_structures_never_panic(structures in proptest::collection::vec(any::<u8>(), 0..256)) {
        let table = table_of(&structures);
        let dmar = Dmar::parse(&table).unwrap();
        prop_assert_eq!(walk(&dmar), dmar.validate());
    }

    #[test]
    fn mutated_tables_never_panic(
        base in prop_oneof![Just(&KAT[..]), Just(&FIRMWARE[..]), Just(&QEMU_Q35[..])],
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        reseal in any::<bool>(),
    ) {
        let mut table = base.to_vec();
        for (at, byte) in edits {
            let at = Dmar::HEADER_LEN + at % (table.len() - Dmar::HEADER_LEN);
            table[at] = byte;
        }
        table.truncate(Dmar::HEADER_LEN + cut % (table.len() - Dmar::HEADER_LEN + 1));
        let table = if reseal { seal(table) } else { table };
        if let Ok(dmar) = Dmar::parse_unchecked(&table) {
            prop_assert_eq!(walk(&dmar), dmar.validate());
        }
    }
}

/// A device scope of the reference model: kind, enumeration id, start bus
/// and path.
type ModelScope = (u8, u8, u8, Vec<(u8, u8)>);

/// A remapping structure of the reference model, with the fields a parser
/// reports.
#[derive(Clone, Debug, PartialEq)]
enum Model {
    Drhd { flags: u8, size: u8, segment: u16, base: u64, scopes: Vec<ModelScope> },
    Rmrr { segment: u16, first_page: u64, pages: u64, scopes: Vec<ModelScope> },
    Atsr { flags: u8, segment: u16, scopes: Vec<ModelScope> },
    Rhsa { base: u64, domain: u32 },
    Andd { number: u8, name: Vec<u8> },
    Satc { flags: u8, segment: u16, scopes: Vec<ModelScope> },
    Other { kind: u16, payload: Vec<u8> },
}

fn model_scope() -> impl Strategy<Value = ModelScope> {
    let path = proptest::collection::vec((0u8..32, 0u8..8), 0..4);
    (any::<u8>(), any::<u8>(), any::<u8>(), path)
}

fn model_structure() -> impl Strategy<Value = Model> {
    let scopes = || proptest::collection::vec(model_scope(), 0..4);
    prop_oneof![
        // Only bits 3:0 of the DRHD Size field are defined.
        (any::<u8>(), 0u8..16, any::<u16>(), any::<u64>(), scopes()).prop_map(
            |(flags, size, segment, base, scopes)| Model::Drhd {
                flags,
                size,
                segment,
                base,
                scopes
            }
        ),
        (any::<u16>(), 0u64..1 << 40, 1u64..1 << 12, scopes()).prop_map(
            |(segment, first_page, pages, scopes)| Model::Rmrr {
                segment,
                first_page,
                pages,
                scopes
            }
        ),
        (any::<u8>(), any::<u16>(), scopes()).prop_map(|(flags, segment, scopes)| Model::Atsr {
            flags,
            segment,
            scopes
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(base, domain)| Model::Rhsa { base, domain }),
        (any::<u8>(), proptest::collection::vec(1u8..=255, 0..20))
            .prop_map(|(number, name)| Model::Andd { number, name }),
        (any::<u8>(), any::<u16>(), scopes()).prop_map(|(flags, segment, scopes)| Model::Satc {
            flags,
            segment,
            scopes
        }),
        (6u16.., proptest::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(kind, payload)| Model::Other { kind, payload }),
    ]
}

/// The bytes of a structure of type `kind` whose body (after type and
/// length) is `body`.
fn encode_structure(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut s = kind.to_le_bytes().to_vec();
    s.extend_from_slice(&u16::try_from(4 + body.len()).unwrap().to_le_bytes());
    s.extend_from_slice(body);
    s
}

fn encode_scopes(body: &mut Vec<u8>, scopes: &[ModelScope]) {
    for (kind, id, bus, path) in scopes {
        body.extend_from_slice(&[
            *kind,
            u8::try_from(6 + 2 * path.len()).unwrap(),
            0,
            0,
            *id,
            *bus,
        ]);
        body.extend(path.iter().flat_map(|&(d, f)| [d, f]));
    }
}

fn encode(model: &Model) -> Vec<u8> {
    let mut b = Vec::new();
    let kind = match model {
        Model::Drhd { flags, size, segment, base, scopes } => {
            b.extend_from_slice(&[*flags, *size]);
            b.extend_from_slice(&segment.to_le_bytes());
            b.extend_from_slice(&base.to_le_bytes());
            encode_scopes(&mut b, scopes);
            0
        }
        Model::Rmrr { segment, first_page, pages, scopes } => {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&segment.to_le_bytes());
            b.extend_from_slice(&(first_page << 12).to_le_bytes());
            b.extend_from_slice(&(((first_page + pages) << 12) - 1).to_le_bytes());
            encode_scopes(&mut b, scopes);
            1
        }
        Model::Atsr { flags, segment, scopes } | Model::Satc { flags, segment, scopes } => {
            b.extend_from_slice(&[*flags, 0]);
            b.extend_from_slice(&segment.to_le_bytes());
            encode_scopes(&mut b, scopes);
            if matches!(model, Model::Atsr { .. }) { 2 } else { 5 }
        }
        Model::Rhsa { base, domain } => {
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&base.to_le_bytes());
            b.extend_from_slice(&domain.to_le_bytes());
            3
        }
        Model::Andd { number, name } => {
            b.extend_from_slice(&[0, 0, 0, *number]);
            b.extend_from_slice(name);
            b.push(0);
            4
        }
        Model::Other { kind, payload } => {
            b.extend_from_slice(payload);
            *kind
        }
    };
    encode_structure(kind, &b)
}

/// What the parser reports of a structure's device scopes, as the model
/// writes them.
fn decoded_scopes(scopes: Option<DeviceScopes<'_>>) -> Vec<ModelScope> {
    scopes
        .into_iter()
        .flatten()
        .map(|s| {
            let s = s.unwrap();
            (s.kind().raw(), s.enumeration_id(), s.start_bus(), s.path().collect())
        })
        .collect()
}

/// What the parser reports of a structure, in the model's terms.
fn decoded(structure: &RemappingStructure<'_>) -> Model {
    let scopes = decoded_scopes(structure.device_scopes());
    match *structure {
        RemappingStructure::Drhd(d) => Model::Drhd {
            flags: d.flags().bits(),
            size: (d.register_set_size().trailing_zeros() - 12) as u8,
            segment: d.segment(),
            base: d.register_base().as_u64(),
            scopes,
        },
        RemappingStructure::Rmrr(r) => Model::Rmrr {
            segment: r.segment(),
            first_page: r.base().page_number(),
            pages: r.pages(),
            scopes,
        },
        RemappingStructure::Atsr(a) => {
            Model::Atsr { flags: a.flags().bits(), segment: a.segment(), scopes }
        }
        RemappingStructure::Rhsa(r) => {
            Model::Rhsa { base: r.register_base().as_u64(), domain: r.proximity_domain() }
        }
        RemappingStructure::Andd(a) => {
            Model::Andd { number: a.device_number(), name: a.object_name().to_vec() }
        }
        RemappingStructure::Satc(s) => {
            Model::Satc { flags: s.flags().bits(), segment: s.segment(), scopes }
        }
        RemappingStructure::Other { kind, bytes, .. } => {
            Model::Other { kind, payload: bytes[4..].to_vec() }
        }
    }
}

proptest! {
    /// Any well-formed table built from the reference model parses back to
    /// the model, structure by structure and scope by scope.
    #[test]
    fn well_formed_tables_round_trip(
        model in proptest::collection::vec(model_structure(), 0..8),
    ) {
        let bytes: Vec<u8> = model.iter().flat_map(encode).collect();
        let table = table_of(&bytes);
        let dmar = Dmar::parse(&table).unwrap();
        prop_assert_eq!(dmar.validate(), Ok(()));
        let got: Vec<Model> = dmar.structures().map(|s| decoded(&s.unwrap())).collect();
        prop_assert_eq!(got, model);
    }
}

#[test]
fn writer_round_trips_through_the_parser() {
    let mut buf = [0u8; 200];
    let table = DmarWriter::new(&mut buf, 46, DmarFlags::INTR_REMAP | DmarFlags::X2APIC_OPT_OUT)
        .unwrap()
        .drhd(DrhdFlags::INCLUDE_PCI_ALL, 0, PhysAddr::new(0xfed9_1000))
        .unwrap()
        .device(DeviceScopeKind::IoApic, 2, 0xf0, &[(0x1f, 0)])
        .unwrap()
        .rmrr(0, PhysAddr::new(0x398d_a000), PhysAddr::new(0x39b2_3fff))
        .unwrap()
        .device(DeviceScopeKind::PciEndpoint, 0, 0, &[(0x14, 0)])
        .unwrap()
        .device(DeviceScopeKind::PciEndpoint, 0, 0, &[(0x1c, 0), (0, 1)])
        .unwrap()
        .finish()
        .unwrap();
    let dmar = Dmar::parse(table).unwrap();
    assert_eq!(dmar.validate(), Ok(()));
    assert_eq!((dmar.host_address_width(), dmar.flags().bits()), (46, 3));
    assert_eq!(dmar.length() as usize, table.len());
    let all: Vec<_> = dmar.structures().map(Result::unwrap).collect();
    let RemappingStructure::Drhd(drhd) = all[0] else { panic!("{:?}", all[0]) };
    assert!(drhd.include_pci_all());
    assert_eq!(drhd.register_base(), PhysAddr::new(0xfed9_1000));
    let s: Vec<_> = drhd.device_scopes().map(Result::unwrap).collect();
    assert_eq!(
        (s[0].kind(), s[0].enumeration_id(), s[0].start_bus()),
        (DeviceScopeKind::IoApic, 2, 0xf0)
    );
    let RemappingStructure::Rmrr(usb) = all[1] else { panic!("{:?}", all[1]) };
    assert_eq!((usb.base(), usb.pages()), (PhysAddr::new(0x398d_a000), 0x24a));
    let s: Vec<_> = usb.device_scopes().map(Result::unwrap).collect();
    assert_eq!(s[0].resolve(no_bridges), Some(sid(0, 0x14, 0)));
    assert_eq!(path(&s[1]), [(0x1c, 0), (0, 1)]);
    assert_eq!(s[1].resolve(|_| Some(3)), Some(sid(3, 0, 1)));
}

#[test]
fn writer_errors() {
    let mut small = [0u8; 60];
    let w = DmarWriter::new(&mut small, 39, DmarFlags::empty()).unwrap();
    assert_eq!(
        w.drhd(DrhdFlags::empty(), 0, PhysAddr::ZERO).unwrap_err(),
        DmarError::NoRoom { needed: 64, available: 60 }
    );
    let mut buf = [0u8; 100];
    assert_eq!(
        DmarWriter::new(&mut buf[..40], 39, DmarFlags::empty()).unwrap_err(),
        DmarError::NoRoom { needed: 48, available: 40 }
    );
    let w = DmarWriter::new(&mut buf, 39, DmarFlags::empty()).unwrap();
    let e = w.device(DeviceScopeKind::PciEndpoint, 0, 0, &[(1, 0)]).unwrap_err();
    assert_eq!(e, DmarError::ScopeWithoutStructure);
    let w = DmarWriter::new(&mut buf, 39, DmarFlags::empty()).unwrap();
    let w = w.drhd(DrhdFlags::empty(), 0, PhysAddr::ZERO).unwrap();
    let e = w.device(DeviceScopeKind::PciEndpoint, 0, 0, &[(32, 0)]).unwrap_err();
    assert_eq!(e, DmarError::InvalidPathEntry { offset: 64, device: 32, function: 0 });
    let w = DmarWriter::new(&mut buf, 39, DmarFlags::empty()).unwrap();
    let e = w.rmrr(0, PhysAddr::new(0x1000), PhysAddr::new(0x1ffe)).unwrap_err();
    assert!(matches!(e, DmarError::RmrrRange { offset: 48, .. }), "{e:?}");
    assert!(DmarError::ScopeWithoutStructure.to_string().contains("DRHD"));
}
