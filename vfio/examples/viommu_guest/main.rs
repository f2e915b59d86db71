//! Runs inside a Linux guest (see `tests/linux_guest.rs`) with QEMU's `edu`
//! bound to `vfio-pci`, and plays a VMM whose guest has a vIOMMU: a
//! `viommu::Viommu` with the VFIO backend (`VfioBackend`) over guest RAM
//! from vm-memory (regions with a hole), the guest's driver the workspace's
//! own DMA API (`vtd_dma::DmaDomain`) programming the vIOMMU's registers,
//! and edu doing real DMA at the guest's IOVAs through the kernel's IOMMU.
//!
//! 1. The guest driver maps buffers (unaligned, page-crossing, across two
//!    regions): edu's DMA lands exactly there, both directions; after the
//!    guest's unmap (strict invalidation) the DMA does not land, and the
//!    guest's unit reports the fault. One map ioctl per region a buffer
//!    spans, one unmap ioctl per guest invalidation.
//! 2. A hostile guest maps pages it does not own (the hole, above its
//!    RAM): nothing is mapped, the DMA is blocked, the VMM's own memory is
//!    untouched.
//! 3. `viommu::conformance::run_all` on the VFIO backend, each DMA a real
//!    edu transfer ([`harness`]).
//! 4. Map + unmap through the vIOMMU, VFIO backend beside the native one
//!    (over the software VT-d as the host unit), timed.
//!
//! Prints `expect-fault write <iova>` before each DMA the kernel must
//! block with a DMAR fault (after 5 s of guest time, so the kernel's fault
//! log ratelimit lets it through), `ioctls <step> map=<n> unmap=<n>` and
//! `bench ...` lines; exits non-zero on the first check that fails. Usage:
//! `viommu_guest <pci-address>`.

#[path = "../edu_dma/edu.rs"]
mod edu;
mod harness;

use std::ops::Range;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edu::Edu;
use harness::{EduHarness, Ram, mark};
use viommu::{Assignment, GuestRam as _, Viommu, ViommuConfig};
use viommu_vfio::{IoctlCounts, SharedContainer, VfioBackend};
use viommu_vm_memory::GuestRam;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vtd_dma::{Direction, DmaConfig, DmaDomain, Mmio, Platform, StdClock};
use vtd_emu::SimFrameAllocator;
use vtd_regs::{Iova, PhysAddr, PhysMem, SourceId};
use vtd_tables::Access;

pub(crate) const PAGE: u64 = 0x1000;
const MIB: u64 = 1 << 20;
/// Guest RAM: 1 MiB, a 1 MiB hole, then two adjacent regions of 3 MiB.
pub(crate) const REGIONS: [(u64, usize); 3] =
    [(0, MIB as usize), (2 * MIB, 3 * MIB as usize), (5 * MIB, 3 * MIB as usize)];
/// Where the guest builds its tables and queue.
pub(crate) const TABLES: Range<u64> = 0..MIB;
/// Where the guest's buffers are.
pub(crate) const DATA: Range<u64> = 2 * MIB..8 * MIB;
/// edu: 00:02.0 on the host (as the kernel sees it), 00:03.0 in the guest.
const HOST_DEV: SourceId = SourceId::from_raw(0x10);
const GUEST_DEV: SourceId = SourceId::from_raw(0x18);

fn main() -> ExitCode {
    let address = std::env::args().nth(1).unwrap_or_else(|| "0000:00:02.0".into());
    match run(&address) {
        Ok(()) => {
            println!("viommu_guest: all checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("viommu_guest: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn s<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

pub(crate) fn ioctls_of(c: IoctlCounts) -> String {
    format!("map={} unmap={} other={}", c.map, c.unmap, c.other)
}

type Vmm<'m> = Viommu<Ram<'m>, harness::Backend<'m>>;

/// The vIOMMU of a guest with `mem` and edu, over `container`.
fn vmm<'m>(mem: &'m GuestMemoryMmap<()>, container: &SharedContainer) -> Result<Vmm<'m>, String> {
    // SAFETY: guest RAM of `mem`, reached only through vm-memory, alive
    // for as long as the backend ('m).
    let mut backend = unsafe { VfioBackend::new(GuestRam::new(mem)) };
    backend.add_container(Arc::clone(container), &[HOST_DEV]).map_err(s)?;
    let devices = [Assignment { guest: GUEST_DEV, host: HOST_DEV }];
    Viommu::new(GuestRam::new(mem), backend, &devices, ViommuConfig::qemu()).map_err(s)
}

/// The guest's table frames, zeroed.
fn table_frames(ram: Ram<'_>) -> Result<SimFrameAllocator<Ram<'_>>, String> {
    for f in TABLES.step_by(PAGE as usize) {
        ram.zero_frame(PhysAddr::new(f)).map_err(s)?;
    }
    Ok(SimFrameAllocator::new(ram, PhysAddr::new(TABLES.start), PhysAddr::new(TABLES.end)))
}

/// The guest driver's configuration: strict invalidation (an unmap returns
/// after its invalidation completed), IOVAs below 4 GiB (edu's address
/// registers keep 32 bits when written through vfio-pci).
fn driver_config() -> DmaConfig {
    let mut config = DmaConfig::strict();
    config.dma_limit = Iova::new(0xffff_ffff);
    config
}

/// Lets 5 s of guest time pass, so the kernel's DMAR fault log (10
/// messages per 5 s) prints the next fault; free under `-icount sleep=off`.
fn announce_fault(iova: u64) {
    std::thread::sleep(Duration::from_millis(5100));
    println!("expect-fault write {:#x}", iova & !(PAGE - 1));
}

/// `len` bytes at `gpa`.
fn peek(ram: &Ram<'_>, gpa: u64, len: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len as usize];
    ram.read_bytes(PhysAddr::new(gpa), &mut buf).map_err(s)?;
    Ok(buf)
}

/// A pattern that differs for every `seed` and byte.
fn pattern(seed: u8, len: u64) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8).wrapping_mul(7) | 1).collect()
}

/// The ioctls `f` cost, checked against `(map, unmap)`.
fn step<T>(
    v: &Vmm<'_>,
    name: &str,
    want: (u64, u64),
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let before = v.with_backend(|b| b.ioctl_counts());
    let out = f()?;
    let d = v.with_backend(|b| b.ioctl_counts()).since(before);
    println!("ioctls {name} map={} unmap={}", d.map, d.unmap);
    if (d.map, d.unmap) != want {
        return Err(format!("{name}: ioctls {d:?}, expected (map, unmap) {want:?}"));
    }
    Ok(out)
}

fn run(address: &str) -> Result<(), String> {
    let ranges: Vec<_> = REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(s)?;
    // The VMM's own memory: never guest RAM.
    let own = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), PAGE as usize)]).map_err(s)?;
    mark(&GuestRam::new(&mem))?;
    let (container, dev) = harness::shared_container(address)?;
    let edu = Edu::new(&dev)?;

    driver(&mem, &container, &edu)?;
    hostile(&mem, &own, &container, &edu)?;

    mark(&GuestRam::new(&mem))?;
    let device = Assignment { guest: GUEST_DEV, host: HOST_DEV };
    let mut h = EduHarness::new(&mem, Arc::clone(&container), device, &edu, &own)?;
    h.write_only_readable = h.write_only_is_readable()?;
    println!("probe: a write-only VFIO mapping is readable by edu: {}", h.write_only_readable);
    conformance(&mut h)?;
    println!("conformance: {} edu DMAs", h.dmas);
    drop(h);

    bench(&mem, &container)
}

/// `viommu::conformance`'s checks, each on its own (a failed check does
/// not stop the others). Whether the host stops reads of write-only pages
/// is the harness's `enforces_write_only` (the probe above, without the
/// vIOMMU); every check must pass.
fn conformance<H: viommu::conformance::Harness>(h: &mut H) -> Result<(), String> {
    let start = Instant::now();
    let mut failed = Vec::new();
    for (name, check) in viommu::conformance::checks() {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(h)));
        let message = |e: Box<dyn std::any::Any + Send>| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
        };
        match result.map_err(message) {
            Ok(()) => println!("conformance {name}: ok"),
            Err(m) => {
                let m = m.unwrap_or_default().replace('\n', " ");
                println!("conformance {name}: FAILED: {m}");
                failed.push(name);
            }
        }
    }
    println!("conformance: {:?} of guest time", start.elapsed());
    if failed.is_empty() { Ok(()) } else { Err(format!("conformance checks failed: {failed:?}")) }
}

/// The guest's driver maps buffers; edu's DMA lands exactly there, and
/// not once they are unmapped.
fn driver(
    mem: &GuestMemoryMmap<()>,
    container: &SharedContainer,
    edu: &Edu<'_>,
) -> Result<(), String> {
    let ram = GuestRam::new(mem);
    let frames = table_frames(ram.clone())?;
    let v = vmm(mem, container)?;
    let mut dma =
        DmaDomain::new((ram.clone(), &frames, StdClock::new()), &v, driver_config()).map_err(s)?;
    dma.attach(GUEST_DEV).map_err(s)?;

    // The source ends 0x3e bytes into the region after the 5 MiB boundary:
    // two pages, two regions, two map ioctls for one guest map.
    let len = 0x61;
    let src = 5 * MIB - 0x23;
    let src_iova = step(&v, "map-src", (2, 0), || {
        dma.map(PhysAddr::new(src), len, Direction::ToDevice).map_err(s)
    })?;
    // The destination crosses a page boundary at an odd offset.
    let dst = 3 * MIB + PAGE - 0x35;
    let dst_iova = step(&v, "map-dst", (1, 0), || {
        dma.map(PhysAddr::new(dst), len, Direction::FromDevice).map_err(s)
    })?;
    let data = pattern(1, len);
    ram.write_bytes(PhysAddr::new(src), &data).map_err(s)?;
    let around = |ram: &Ram<'_>| peek(ram, dst - 64, len + 128);
    let before = around(&ram)?;
    edu.read_memory(src_iova.as_u64(), 0x11, len as usize)?;
    edu.write_memory(0x11, dst_iova.as_u64(), len as usize)?;
    let mut want = before.clone();
    want[64..64 + len as usize].copy_from_slice(&data);
    if around(&ram)? != want {
        return Err(format!(
            "the DMA through {src_iova:?} -> {dst_iova:?} did not land exactly at {dst:#x}"
        ));
    }
    ram.write_bytes(PhysAddr::new(dst - 64), &before).map_err(s)?;

    // Unmapped (one guest invalidation, one unmap ioctl): the device's
    // write does not land, the kernel logs a DMAR fault, and the guest's
    // unit reports it once the VMM passes it on.
    step(&v, "unmap-dst", (0, 1), || dma.unmap(dst_iova, len).map_err(s))?;
    announce_fault(dst_iova.as_u64());
    edu.write_memory(0x11, dst_iova.as_u64(), len as usize)?;
    if around(&ram)? != before {
        return Err(format!("a DMA to {dst_iova:?} landed after the guest unmapped it"));
    }
    v.report_host_fault(HOST_DEV, dst_iova, Access::Write).ok_or("no fault for the guest")?;
    let record = dma.unit().drain_faults().next().ok_or("the guest's unit recorded no fault")?;
    if record.fault_info != dst_iova.as_u64() & !(PAGE - 1) || record.source != GUEST_DEV {
        return Err(format!("the guest saw {record:?}"));
    }
    // Two host mappings contiguous in IOVA: one unmap ioctl.
    step(&v, "unmap-src", (0, 1), || dma.unmap(src_iova, len).map_err(s))?;
    let c = v.counters();
    println!(
        "driver: {} guest invalidations shadowed, {} map calls, {} unmap calls, {} completions",
        c.invalidations_shadowed, c.map_calls, c.unmap_calls, c.completions
    );
    Ok(())
}

/// A guest maps pages it does not own: its vIOMMU maps none of them, the
/// device's DMA to them is blocked, and the VMM's own memory is untouched.
fn hostile(
    mem: &GuestMemoryMmap<()>,
    own: &GuestMemoryMmap<()>,
    container: &SharedContainer,
    edu: &Edu<'_>,
) -> Result<(), String> {
    let ram = GuestRam::new(mem);
    let own = GuestRam::new(own);
    own.write_bytes(PhysAddr::ZERO, &pattern(9, PAGE)).map_err(s)?;
    let frames = table_frames(ram.clone())?;
    let v = vmm(mem, container)?;
    let mut dma =
        DmaDomain::new((ram.clone(), &frames, StdClock::new()), &v, driver_config()).map_err(s)?;
    dma.attach(GUEST_DEV).map_err(s)?;
    // The hole between the first two regions, and far above the RAM.
    for (name, gpa) in [("hole", MIB + 0x8000), ("above-ram", 1 << 32)] {
        if ram.ram_at(PhysAddr::new(gpa)).is_some() {
            return Err(format!("{gpa:#x} is guest RAM"));
        }
        let iova = step(&v, &format!("map-{name}"), (0, 0), || {
            dma.map(PhysAddr::new(gpa), PAGE, Direction::Bidirectional).map_err(s)
        })?;
        announce_fault(iova.as_u64());
        edu.write_memory(0, iova.as_u64(), 64)?;
    }
    if peek(&own, 0, PAGE)? != pattern(9, PAGE) {
        return Err("the VMM's own memory changed".into());
    }
    let c = v.counters();
    if c.outside_ram != 2 || c.map_calls != 0 {
        return Err(format!("mapping pages the guest does not own: {c:?}"));
    }
    println!("hostile: {} pages outside guest RAM refused, none mapped", c.outside_ram);
    Ok(())
}

/// Map + unmap pairs of one page through a guest driver on `v`, strict.
fn pairs<P: Platform, R: Mmio>(dma: &mut DmaDomain<P, R>, n: u64) -> Result<Duration, String> {
    let start = Instant::now();
    for i in 0..n {
        let phys = PhysAddr::new(DATA.start + (i % 64) * PAGE);
        let iova = dma.map(phys, PAGE, Direction::Bidirectional).map_err(s)?;
        dma.unmap(iova, PAGE).map_err(s)?;
    }
    Ok(start.elapsed())
}

const PAIRS: u64 = 500;

/// The guest driver's map + unmap through the vIOMMU: the VFIO backend,
/// then the native one (the software VT-d standing for the host's unit),
/// in this guest.
fn bench(mem: &GuestMemoryMmap<()>, container: &SharedContainer) -> Result<(), String> {
    let ram = GuestRam::new(mem);
    let frames = table_frames(ram.clone())?;
    let v = vmm(mem, container)?;
    let mut dma =
        DmaDomain::new((ram.clone(), &frames, StdClock::new()), &v, driver_config()).map_err(s)?;
    dma.attach(GUEST_DEV).map_err(s)?;
    let (c0, i0) = (v.counters(), v.with_backend(|b| b.ioctl_counts()));
    let t = pairs(&mut dma, PAIRS)?;
    let (c, i) = (v.counters(), v.with_backend(|b| b.ioctl_counts()).since(i0));
    let invalidations = c.invalidations_shadowed - c0.invalidations_shadowed;
    println!(
        "bench vfio: {PAIRS} map+unmap pairs, {:.1} us per pair; {invalidations} guest invalidations, \
         {:.2} map and {:.2} unmap ioctls per invalidation",
        t.as_secs_f64() * 1e6 / PAIRS as f64,
        i.map as f64 / invalidations as f64,
        i.unmap as f64 / invalidations as f64,
    );
    if i.map != PAIRS || i.unmap != PAIRS {
        return Err(format!("{PAIRS} pairs took {i:?}"));
    }
    drop(dma);
    drop(v);
    let t = native::pairs(PAIRS)?;
    println!(
        "bench native: {PAIRS} map+unmap pairs, {:.1} us per pair",
        t.as_secs_f64() * 1e6 / PAIRS as f64
    );
    Ok(())
}

mod native {
    //! The native backend in the same guest: the software VT-d over heap
    //! memory as the host's unit, the guest's RAM a window of it.

    use std::sync::Arc;
    use std::time::Duration;

    use invalidation::QueuedInvalidator;
    use viommu::{Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Native, Viommu};
    use vtd_dma::{DmaDomain, StdClock};
    use vtd_emu::mem::HeapMemory;
    use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
    use vtd_regs::regs::QueueSize;
    use vtd_regs::{DomainId, PhysAddr, RemappingUnit};
    use vtd_tables::{ContextManager, TableConfig};

    use super::{GUEST_DEV, HOST_DEV, MIB, driver_config, s};

    pub(super) fn pairs(n: u64) -> Result<Duration, String> {
        let ram = HeapMemory::new((32 * MIB) as usize);
        let frames = SimFrameAllocator::new(&ram, PhysAddr::new(16 * MIB), PhysAddr::new(32 * MIB));
        let hw = Emulator::<_>::new(&ram, EmuConfig::qemu()).map_err(s)?;
        let unit = RemappingUnit::new(&hw).map_err(s)?;
        let tables = TableConfig::from_cap(unit.cap(), 39).map_err(s)?;
        let contexts = ContextManager::new(&ram, &frames).map_err(s)?;
        let qs = QueueSize::from_order(0).ok_or("queue size")?;
        let inv =
            QueuedInvalidator::enable_remapping(unit, contexts.root_table(), &ram, &frames, qs)
                .map_err(|r| s(r.error))?;
        let host = Arc::new(Host::new(&ram, &frames, contexts, inv, tables, DomainId::new(1)));
        // Guest RAM: 8 MiB at host 8 MiB; the same guest layout of tables
        // (first MiB) and data (from 2 MiB) as the VFIO run.
        let layout = GuestLayout::new(PhysAddr::new(8 * MIB), 8 * MIB);
        let guest_ram = GuestMemory::new(&ram, layout);
        let backend = Native::new(host, GuestPinner::new(layout));
        let devices = [Assignment { guest: GUEST_DEV, host: HOST_DEV }];
        let v =
            Viommu::new(guest_ram, backend, &devices, viommu::ViommuConfig::qemu()).map_err(s)?;
        let gframes = SimFrameAllocator::new(guest_ram, PhysAddr::ZERO, PhysAddr::new(MIB));
        let mut dma = DmaDomain::new((guest_ram, &gframes, StdClock::new()), &v, driver_config())
            .map_err(s)?;
        dma.attach(GUEST_DEV).map_err(s)?;
        super::pairs(&mut dma, n)
    }
}
