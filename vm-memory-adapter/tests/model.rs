//! GuestRam against a model: guest RAM as a list of (start, bytes) regions
//! with holes (and adjacent regions) between them.

use proptest::prelude::*;
use viommu::GuestRam as _;
use viommu_vm_memory::{GuestRam, HostRange};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vtd_regs::{MemError, PhysAddr, PhysMem};

const PAGE: u64 = 0x1000;

/// The model: regions in address order, each its start and contents.
struct Model {
    regions: Vec<(u64, Vec<u8>)>,
}

impl Model {
    /// Region index and offset of `[addr, addr + len)` if it lies in one.
    fn locate(&self, addr: u64, len: u64) -> Option<(usize, usize)> {
        let end = addr.checked_add(len)?;
        self.regions.iter().enumerate().find_map(|(i, (start, bytes))| {
            (addr >= *start && end <= start + bytes.len() as u64)
                .then(|| (i, (addr - start) as usize))
        })
    }

    /// Whether every byte of the range is in some region.
    fn backed(&self, addr: u64, len: u64) -> bool {
        (0..len).all(|i| addr.checked_add(i).is_some_and(|a| self.locate(a, 1).is_some()))
    }

    fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        if !self.backed(addr, len as u64) {
            return None;
        }
        Some((0..len as u64).map(|i| self.byte(addr + i)).collect())
    }

    fn byte(&self, addr: u64) -> u8 {
        let (r, off) = self.locate(addr, 1).unwrap();
        self.regions[r].1[off]
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        if !self.backed(addr, data.len() as u64) {
            return false;
        }
        for (i, b) in data.iter().enumerate() {
            let (r, off) = self.locate(addr + i as u64, 1).unwrap();
            self.regions[r].1[off] = *b;
        }
        true
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write { addr: u64, data: Vec<u8> },
    Read { addr: u64, len: usize },
    WriteU64 { addr: u64, value: u64 },
    ReadU64 { addr: u64 },
    HostRange { addr: u64, len: u64 },
    HostRanges { addr: u64, len: u64 },
    RamFrom { addr: u64 },
}

/// Region layouts: (pages, hole pages before it) for 1-4 regions; a hole of
/// 0 makes two regions adjacent.
fn layout() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((1u64..4, 0u64..3), 1..5)
}

fn op(span: u64) -> impl Strategy<Value = Op> {
    // Addresses near every page boundary, and a few far beyond.
    let addr = prop_oneof![
        8 => (0..span / PAGE + 1, -16i64..16).prop_map(|(p, d)| (p * PAGE).wrapping_add_signed(d)),
        1 => any::<u64>(),
    ];
    let len = prop_oneof![0u64..48, (1u64..3).prop_map(|p| p * PAGE)];
    // Ranges that end just before, at, or just after a page boundary.
    let at_boundary = (1..span / PAGE + 1, 1u64..64, 0u64..3)
        .prop_map(|(p, d, extra)| (p * PAGE - d, d + extra - 1));
    let range = prop_oneof![(addr.clone(), len), at_boundary];
    prop_oneof![
        (addr.clone(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(addr, data)| Op::Write { addr, data }),
        (addr.clone(), 0usize..40).prop_map(|(addr, len)| Op::Read { addr, len }),
        (addr.clone(), any::<u64>()).prop_map(|(addr, value)| Op::WriteU64 { addr, value }),
        addr.clone().prop_map(|addr| Op::ReadU64 { addr }),
        range.clone().prop_map(|(addr, len)| Op::HostRange { addr, len }),
        range.prop_map(|(addr, len)| Op::HostRanges { addr, len }),
        addr.prop_map(|addr| Op::RamFrom { addr }),
    ]
}

fn setup(layout: &[(u64, u64)]) -> (GuestMemoryMmap<()>, Model) {
    let mut at = 0;
    let mut ranges = Vec::new();
    for (pages, hole) in layout {
        at += hole * PAGE;
        ranges.push((GuestAddress(at), (pages * PAGE) as usize));
        at += pages * PAGE;
    }
    let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).unwrap();
    let model = Model { regions: ranges.iter().map(|(a, len)| (a.0, vec![0u8; *len])).collect() };
    (mem, model)
}

fn out_of_range<T>(r: &Result<T, MemError>) -> bool {
    matches!(r, Err(MemError::OutOfRange { .. }))
}

/// The host address vm-memory gives the region holding `gpa`, at `gpa`.
fn hva_of(mem: &GuestMemoryMmap<()>, gpa: u64) -> usize {
    mem.get_host_address(GuestAddress(gpa)).unwrap() as usize
}

proptest! {
    #[test]
    fn guest_ram_matches_the_model(
        layout in layout(),
        ops in prop::collection::vec(op(16 * 7 * PAGE), 1..64),
    ) {
        let (mem, mut model) = setup(&layout);
        let ram = GuestRam::new(&mem);
        for op in ops {
            match op {
                Op::Write { addr, data } => {
                    let ok = model.write(addr, &data);
                    prop_assert_eq!(ram.write_bytes(PhysAddr::new(addr), &data).is_ok(), ok || data.is_empty());
                }
                Op::Read { addr, len } => {
                    let mut buf = vec![0u8; len];
                    let got = ram.read_bytes(PhysAddr::new(addr), &mut buf).map(|()| buf);
                    match model.read(addr, len) {
                        Some(want) => prop_assert_eq!(got, Ok(want)),
                        None if len == 0 => prop_assert!(got.is_ok()),
                        None => prop_assert!(out_of_range(&got), "{:?}", got),
                    }
                }
                Op::WriteU64 { addr, value } => {
                    let got = ram.write_u64(PhysAddr::new(addr), value);
                    if addr % 8 != 0 {
                        prop_assert!(matches!(got, Err(MemError::Misaligned { addr: _ })), "{:?}", got);
                    } else {
                        prop_assert_eq!(got.is_ok(), model.write(addr, &value.to_le_bytes()));
                    }
                }
                Op::ReadU64 { addr } => {
                    let got = ram.read_u64(PhysAddr::new(addr));
                    if addr % 8 != 0 {
                        prop_assert!(matches!(got, Err(MemError::Misaligned { addr: _ })), "{:?}", got);
                    } else {
                        let want = model.read(addr, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
                        prop_assert_eq!(got.ok(), want);
                    }
                }
                Op::HostRange { addr, len } => {
                    let got = ram.host_range(PhysAddr::new(addr), len);
                    match model.locate(addr, len).filter(|_| len > 0) {
                        Some(_) => prop_assert_eq!(
                            got,
                            Ok(HostRange { gpa: PhysAddr::new(addr), hva: hva_of(&mem, addr), len })
                        ),
                        None => prop_assert!(out_of_range(&got), "{:?}", got),
                    }
                }
                Op::RamFrom { addr } => {
                    // The first region ending above `addr`, whole; `ram_at`
                    // is it when it holds `addr`.
                    let want = model
                        .regions
                        .iter()
                        .map(|(start, bytes)| *start..start + bytes.len() as u64)
                        .find(|r| addr < r.end);
                    let as_phys = |r: std::ops::Range<u64>| PhysAddr::new(r.start)..PhysAddr::new(r.end);
                    let gpa = PhysAddr::new(addr);
                    prop_assert_eq!(ram.ram_from(gpa), want.clone().map(as_phys));
                    let at = want.filter(|r| r.start <= addr);
                    prop_assert_eq!(ram.ram_at(gpa), at.clone().map(as_phys));
                    prop_assert_eq!(model.locate(addr, 1).is_some(), at.is_some());
                }
                Op::HostRanges { addr, len } => {
                    let got = ram.host_ranges(PhysAddr::new(addr), len);
                    if len > 0 && model.backed(addr, len) {
                        let got = got.unwrap();
                        // Pieces tile the range, each in one region, each
                        // ending at a region's end or at the range's.
                        let mut at = addr;
                        for piece in &got {
                            prop_assert_eq!(piece.gpa.as_u64(), at);
                            prop_assert!(model.locate(at, piece.len).is_some());
                            prop_assert_eq!(piece.hva, hva_of(&mem, at));
                            at += piece.len;
                            let region = mem.find_region(GuestAddress(at - 1)).unwrap();
                            prop_assert!(at == addr + len || at == region.start_addr().0 + region.len());
                        }
                        prop_assert_eq!(at, addr + len);
                    } else {
                        prop_assert!(out_of_range(&got), "{:?}", got);
                    }
                }
            }
        }
        // Whatever was written is where the model says, byte for byte.
        for (start, bytes) in &model.regions {
            let mut buf = vec![0u8; bytes.len()];
            ram.read_bytes(PhysAddr::new(*start), &mut buf).unwrap();
            prop_assert_eq!(&buf, bytes);
        }
    }
}

/// Regions that are not page-aligned are reported by their whole pages;
/// a region smaller than a page is no RAM region at all; their bytes stay
/// readable.
#[test]
fn partial_pages_are_not_ram_regions() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0x800), 0x2000),    // whole page 0x1000..0x2000 only
        (GuestAddress(0x3000), 0x800),    // less than a page
        (GuestAddress(0x5000), 0x1_0000), // aligned
    ])
    .unwrap();
    let ram = GuestRam::new(&mem);
    let r = |a: u64, b: u64| Some(PhysAddr::new(a)..PhysAddr::new(b));
    assert_eq!(ram.ram_from(PhysAddr::ZERO), r(0x1000, 0x2000));
    assert_eq!(ram.ram_at(PhysAddr::new(0x800)), None);
    assert_eq!(ram.ram_from(PhysAddr::new(0x2000)), r(0x5000, 0x1_5000));
    assert_eq!(ram.ram_at(PhysAddr::new(0x3000)), None);
    assert_eq!(ram.ram_from(PhysAddr::new(u64::MAX)), None);
    assert_eq!(ram.read_u64(PhysAddr::new(0x800)), Ok(0));
    assert_eq!(ram.read_u64(PhysAddr::new(0x3008)), Ok(0));
}
