//! The VFIO backend's own logic on the host, without `/dev/vfio`: containers
//! over [`FakeType1`], type1v2 modelled in memory (it refuses, and counts,
//! any map of user memory that is not guest RAM).
//!
//! - `viommu::conformance`, every check, with the device's DMA resolved
//!   through what the fake holds;
//! - the container's records against the fake's, and its maps and unmaps
//!   against a page model, under injected ioctl failures (proptest);
//! - the backend's ioctl budget, all-or-nothing maps across containers,
//!   pending unmaps kept across a failed completion, group rules.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use viommu::conformance::{self, Harness};
use viommu::{Assignment, HostIommu, Placed};
use viommu_vfio::fake::FakeType1;
use viommu_vfio::{
    Container, DmaMapping, Error, Op, PAGE_SIZE, Perm, SharedContainer, Type1, VfioBackend,
};
use viommu_vm_memory::GuestRam;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};
use vtd_regs::{Iova, PhysAddr, SourceId};
use vtd_tables::Access;

const MIB: u64 = 1 << 20;
/// Guest RAM: tables, a hole, then data in two regions (not contiguous in
/// the VMM's address space), then a last small region.
const REGIONS: [(u64, usize); 4] = [
    (0, MIB as usize),
    (2 * MIB, 2 * MIB as usize),
    (4 * MIB, 4 * MIB as usize),
    (9 * MIB, MIB as usize),
];
const TABLES: Range<u64> = 0..MIB;
const DATA: Range<u64> = 2 * MIB..8 * MIB;

type Mem = &'static GuestMemoryMmap<()>;
type Backend = VfioBackend<Mem, SharedContainer<FakeType1>>;

fn guest_memory() -> Mem {
    let ranges: Vec<_> = REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    Box::leak(Box::new(GuestMemoryMmap::from_ranges(&ranges).expect("anonymous guest RAM")))
}

/// The guest-physical address of user address `hva`, if it is guest RAM.
fn gpa_of(mem: Mem, hva: usize) -> Option<PhysAddr> {
    mem.iter().find_map(|r| {
        let start = r.get_host_address(MemoryRegionAddress(0)).ok()? as usize;
        let offset = hva.checked_sub(start).filter(|&o| (o as u64) < r.len())?;
        Some(PhysAddr::new(r.start_addr().0 + offset as u64))
    })
}

/// A VMM with one assigned device in its own container, over the fake.
struct FakeHarness {
    mem: Mem,
    kernel: FakeType1,
    container: SharedContainer<FakeType1>,
    device: Assignment,
}

impl FakeHarness {
    fn new() -> Self {
        let mem = guest_memory();
        let kernel = FakeType1::for_guest_memory(mem);
        let container = Arc::new(Mutex::new(Container::over(kernel.clone())));
        let device = Assignment {
            guest: SourceId::new(0, 2, 0).unwrap(),
            host: SourceId::new(0x3b, 0, 0).unwrap(),
        };
        FakeHarness { mem, kernel, container, device }
    }
}

/// After every check: nothing but guest RAM was ever offered to the
/// kernel.
impl Drop for FakeHarness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(self.kernel.outside_attempts(), 0, "a map of memory that is not guest RAM");
        }
    }
}

impl Harness for FakeHarness {
    type Ram = GuestRam<Mem>;
    type Backend = Backend;

    fn ram(&self) -> GuestRam<Mem> {
        GuestRam::new(self.mem)
    }

    fn backend(&mut self) -> Backend {
        // SAFETY: nothing reaches guest RAM through the fake; it is leaked,
        // so it outlives the backend.
        let mut b = unsafe { VfioBackend::new(GuestRam::new(self.mem)) };
        b.add_container(Arc::clone(&self.container), &[self.device.host]).expect("one container");
        b
    }

    fn device(&self) -> Assignment {
        self.device
    }

    fn table_frames(&self) -> Range<PhysAddr> {
        PhysAddr::new(TABLES.start)..PhysAddr::new(TABLES.end)
    }

    fn data(&self) -> Range<PhysAddr> {
        PhysAddr::new(DATA.start)..PhysAddr::new(DATA.end)
    }

    fn dma(&mut self, iova: Iova, access: Access) -> Option<PhysAddr> {
        let (hva, perm) = self.kernel.translate(iova.as_u64())?;
        let allowed = match access {
            Access::Read => Perm::READ,
            Access::Write => Perm::WRITE,
        };
        let gpa = gpa_of(self.mem, hva);
        assert!(gpa.is_some(), "the device reaches {hva:#x}, not guest RAM");
        gpa.filter(|_| perm.contains(allowed))
    }
}

viommu::conformance_tests!(FakeHarness::new());

/// Every check on one container, one vIOMMU after the other: each leaves
/// the container empty (the device blocked).
#[test]
fn all_on_one_container() {
    let mut h = FakeHarness::new();
    conformance::run_all(&mut h);
    assert!(h.kernel.mappings().is_empty(), "{:#x?}", h.kernel.mappings());
}

/// The user address of guest-physical `gpa`.
fn hva(mem: Mem, gpa: u64) -> usize {
    viommu_vm_memory::host_range_in(mem, PhysAddr::new(gpa), PAGE_SIZE).expect("guest RAM").hva
}

fn placed(iova: u64, gpa: u64, pages: u64) -> Placed {
    Placed {
        iova: Iova::new(iova),
        gpa: PhysAddr::new(gpa),
        len: pages * PAGE_SIZE,
        perm: vtd_tables::Perm::READ_WRITE,
    }
}

/// A backend over `containers` fakes of one guest's RAM, device `i` (host
/// 0x3b:i.0) alone in container `i`.
fn backend(containers: usize) -> (Backend, Vec<FakeType1>, Mem) {
    let mem = guest_memory();
    // SAFETY: as in `FakeHarness::backend`.
    let mut b = unsafe { VfioBackend::new(GuestRam::new(mem)) };
    let kernels: Vec<FakeType1> =
        (0..containers).map(|_| FakeType1::for_guest_memory(mem)).collect();
    for (i, k) in kernels.iter().enumerate() {
        let container = Arc::new(Mutex::new(Container::over(k.clone())));
        b.add_container(container, &[host_device(i)]).unwrap();
    }
    (b, kernels, mem)
}

fn host_device(i: usize) -> SourceId {
    SourceId::new(0x3b, i as u8, 0).unwrap()
}

#[test]
fn a_completion_costs_one_unmap_per_contiguous_range() {
    let (mut b, kernels, _) = backend(1);
    let mut d = b.create_domain().unwrap();
    b.attach(&mut d, host_device(0)).unwrap();
    // 8 pages mapped one by one; pages 1-3 and 5 unmapped.
    for p in 0..8 {
        b.map(&mut d, placed(0x10_0000 + p * PAGE_SIZE, DATA.start + p * PAGE_SIZE, 1)).unwrap();
    }
    let before = b.ioctl_counts();
    for p in [1, 2, 3, 5] {
        b.unmap(&mut d, placed(0x10_0000 + p * PAGE_SIZE, 0, 1)).unwrap();
    }
    assert_eq!(b.ioctl_counts(), before, "an unmap is recorded until the completion");
    assert!(kernels[0].translate(0x10_1000).is_some());
    b.complete(&mut d).unwrap();
    // The pages were mapped as 8 separate mappings: no re-map needed.
    assert_eq!(b.ioctl_counts().since(before).unmap, 2);
    assert_eq!(b.ioctl_counts().since(before).map, 0);
    let reachable: Vec<u64> =
        (0..8).filter(|p| kernels[0].translate(0x10_0000 + p * PAGE_SIZE).is_some()).collect();
    assert_eq!(reachable, [0, 4, 6, 7]);
}

#[test]
fn a_failed_completion_keeps_its_unmaps_pending() {
    let (mut b, kernels, _) = backend(1);
    let mut d = b.create_domain().unwrap();
    b.attach(&mut d, host_device(0)).unwrap();
    b.map(&mut d, placed(0x20_0000, DATA.start, 4)).unwrap();
    b.unmap(&mut d, placed(0x20_1000, 0, 1)).unwrap();
    kernels[0].fail_next(Op::UnmapDma, libc::EIO);
    assert_eq!(b.complete(&mut d), Err(Error::Os { op: Op::UnmapDma, errno: libc::EIO }));
    assert!(d.has_pending_unmaps());
    assert!(kernels[0].translate(0x20_1000).is_some(), "the kernel refused: still mapped");
    b.complete(&mut d).unwrap();
    assert!(!d.has_pending_unmaps());
    assert_eq!(kernels[0].translate(0x20_1000), None);
    for p in [0, 2, 3] {
        assert!(kernels[0].translate(0x20_0000 + p * PAGE_SIZE).is_some(), "page {p}");
    }
}

/// A map in a domain installed in two containers lands in both or in
/// neither; a rollback the kernel refuses is unmapped by the next
/// completion, which fails until it succeeds.
#[test]
fn a_map_is_all_or_nothing_across_containers() {
    let (mut b, kernels, _) = backend(2);
    let mut d = b.create_domain().unwrap();
    b.attach(&mut d, host_device(0)).unwrap();
    b.attach(&mut d, host_device(1)).unwrap();
    kernels[1].fail_next(Op::MapDma, libc::ENOMEM);
    assert!(b.map(&mut d, placed(0x30_0000, DATA.start, 2)).is_err());
    assert!(kernels.iter().all(|k| k.mappings().is_empty()));
    assert_eq!(d.mappings().count(), 0);

    kernels[1].fail_next(Op::MapDma, libc::ENOMEM);
    kernels[0].fail_next(Op::UnmapDma, libc::EIO);
    assert!(b.map(&mut d, placed(0x30_0000, DATA.start, 2)).is_err());
    assert!(kernels[0].translate(0x30_0000).is_some(), "the rollback failed");
    assert!(d.has_pending_unmaps(), "what the rollback left is owed");
    b.complete(&mut d).unwrap();
    assert!(kernels.iter().all(|k| k.mappings().is_empty()));
}

#[test]
fn attach_installs_the_domain_and_detach_blocks() {
    let (mut b, kernels, mem) = backend(2);
    let mut d = b.create_domain().unwrap();
    b.attach(&mut d, host_device(0)).unwrap();
    b.map(&mut d, placed(0x40_0000, DATA.start, 3)).unwrap();
    b.map(&mut d, placed(0x40_3000, DATA.start + 3 * PAGE_SIZE, 1)).unwrap();
    let before = b.ioctl_counts();
    b.attach(&mut d, host_device(1)).unwrap();
    // Contiguous in IOVA and in the VMM's address space: one map.
    assert_eq!(b.ioctl_counts().since(before).map, 1);
    assert_eq!(
        kernels[1].translate(0x40_3000),
        Some((hva(mem, DATA.start + 3 * PAGE_SIZE), Perm::READ | Perm::WRITE))
    );
    b.detach(host_device(1)).unwrap();
    assert!(kernels[1].mappings().is_empty());
    assert_eq!(kernels[0].mappings().len(), 2);
    // Another domain: the device's container is emptied first.
    let mut other = b.create_domain().unwrap();
    b.attach(&mut other, host_device(0)).unwrap();
    assert!(kernels[0].mappings().is_empty());
}

#[test]
fn devices_of_one_group_share_a_domain() {
    let mem = guest_memory();
    // SAFETY: as in `FakeHarness::backend`.
    let mut b: Backend = unsafe { VfioBackend::new(GuestRam::new(mem)) };
    let k = FakeType1::for_guest_memory(mem);
    let group = [host_device(0), host_device(1)];
    b.add_container(Arc::new(Mutex::new(Container::over(k.clone()))), &group).unwrap();
    let again = Arc::new(Mutex::new(Container::over(k)));
    assert_eq!(
        b.add_container(again, &[host_device(1)]),
        Err(Error::DuplicateDevice { source_id: host_device(1).raw() })
    );
    let (mut d1, mut d2) = (b.create_domain().unwrap(), b.create_domain().unwrap());
    b.attach(&mut d1, group[0]).unwrap();
    assert_eq!(b.attach(&mut d2, group[1]), Err(Error::SharedGroup { source_id: group[1].raw() }));
    b.attach(&mut d1, group[1]).unwrap();
    assert_eq!(b.detach(group[1]), Err(Error::SharedGroup { source_id: group[1].raw() }));
    assert_eq!(
        b.attach(&mut d1, host_device(7)),
        Err(Error::UnknownDevice { source_id: host_device(7).raw() })
    );
}

#[test]
fn guest_addresses_outside_ram_map_nothing() {
    let (mut b, kernels, _) = backend(1);
    let mut d = b.create_domain().unwrap();
    b.attach(&mut d, host_device(0)).unwrap();
    // The hole, across the end of a region, above RAM.
    for (gpa, pages) in [(MIB, 1), (DATA.end - PAGE_SIZE, 2), (10 * MIB, 1), (1 << 40, 1)] {
        assert!(matches!(
            b.map(&mut d, placed(0x50_0000, gpa, pages)),
            Err(Error::OutsideGuestRam { .. })
        ));
    }
    assert!(kernels[0].mappings().is_empty());
    assert_eq!(kernels[0].ioctl_counts().map, 0);
    assert_eq!(kernels[0].outside_attempts(), 0);
}

/// Host pages: the VMM's user address space, as the fake sees it, is
/// `PAGES` pages from the first data region's start.
const PAGES: u64 = 64;

#[derive(Clone, Debug)]
enum Step {
    /// `pages` pages from `iova`; host pages from `page`, every other one
    /// when `scattered` (then each page is a run of its own).
    Map {
        iova: u64,
        page: u64,
        pages: u64,
        write: bool,
        scattered: bool,
    },
    Unmap {
        iova: u64,
        pages: u64,
    },
    UnmapAll,
    Fail(Op),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..32u64, 0..PAGES - 12, 1..6u64, any::<bool>(), any::<bool>()).prop_map(
            |(iova, page, pages, write, scattered)| Step::Map { iova, page, pages, write, scattered }
        ),
        4 => (0..32u64, 1..8u64).prop_map(|(iova, pages)| Step::Unmap { iova, pages }),
        1 => Just(Step::UnmapAll),
        2 => prop_oneof![Just(Op::MapDma), Just(Op::UnmapDma)].prop_map(Step::Fail),
    ]
}

/// Page `iova` -> (host page, permission), as the container promises.
type Model = std::collections::BTreeMap<u64, (u64, Perm)>;

fn translations(k: &FakeType1, base: usize) -> Model {
    (0..40)
        .filter_map(|p| {
            let (hva, perm) = k.translate(p * PAGE_SIZE)?;
            Some((p, (((hva - base) as u64) / PAGE_SIZE, perm)))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The container's records are what the kernel holds, after every step
    /// whether it failed or not; a map or unmap that succeeded did exactly
    /// what it says; one that failed never gave the device more than it had.
    #[test]
    fn the_container_follows_the_kernel(steps in prop::collection::vec(step(), 1..40)) {
        let mem = guest_memory();
        let base = hva(mem, DATA.start);
        let k = FakeType1::new(std::iter::once(base..base + (PAGES * PAGE_SIZE) as usize));
        let mut c = Container::over(k.clone());
        let mut model = Model::new();
        for s in steps {
            let before = translations(&k, base);
            let armed = k.pending_failures(Op::UnmapDma);
            let result = match s {
                Step::Map { iova, page, pages, write, scattered } => {
                    let stride = if scattered { 2 } else { 1 };
                    let perm = if write { Perm::READ | Perm::WRITE } else { Perm::READ };
                    // Page by page: the container coalesces what continues.
                    let batch: Vec<DmaMapping> = (0..pages).map(|i| DmaMapping {
                        iova: (iova + i) * PAGE_SIZE,
                        hva: base + ((page + stride * i) * PAGE_SIZE) as usize,
                        len: PAGE_SIZE,
                        perm,
                    }).collect();
                    // SAFETY: nothing reaches memory through the fake.
                    let r = unsafe { c.map_batch(&batch) };
                    if r.is_ok() {
                        for i in 0..pages {
                            model.insert(iova + i, (page + stride * i, perm));
                        }
                    }
                    r.map_err(|e| (e, Some(iova..iova + pages)))
                }
                Step::Unmap { iova, pages } => {
                    let r = c.unmap(iova * PAGE_SIZE, pages * PAGE_SIZE);
                    if r.is_ok() {
                        model.retain(|p, _| !(iova..iova + pages).contains(p));
                    }
                    r.map_err(|e| (e, None))
                }
                Step::UnmapAll => {
                    let r = c.unmap_all();
                    if r.is_ok() {
                        model.clear();
                    }
                    r.map_err(|e| (e, None))
                }
                Step::Fail(op) => {
                    k.fail_next(op, libc::EIO);
                    Ok(())
                }
            };
            let after = translations(&k, base);
            prop_assert_eq!(c.mappings().copied().collect::<Vec<_>>(), k.mappings());
            match result {
                Ok(()) => prop_assert_eq!(&after, &model),
                Err((_, failed_map)) => {
                    // Nothing gained: every translation left was there
                    // before, but for what a failed map's rollback could
                    // not unmap (recorded, as the first check shows).
                    let rollback_refused = k.pending_failures(Op::UnmapDma) < armed;
                    for (p, t) in &after {
                        let kept = before.get(p) == Some(t);
                        let owed = rollback_refused && failed_map.as_ref().is_some_and(|r| r.contains(p));
                        prop_assert!(kept || owed, "page {} gained {:?}", p, t);
                    }
                    model = after;
                }
            }
        }
        prop_assert_eq!(k.outside_attempts(), 0);
    }
}
