//! Runs inside a Linux guest (see `tests/linux_guest.rs`) with QEMU's `edu`
//! bound to `vfio-pci`: plays the host side of a VMM. Guest RAM is a
//! vm-memory `GuestMemoryMmap` of several regions with a hole; ranges of it
//! are mapped through the VFIO container at chosen IOVAs, and edu's DMA
//! must land exactly where they are mapped, and nowhere once unmapped.
//!
//! Prints `expect-fault write <iova>` for each DMA that must be blocked and
//! `ioctls <step> map=<n> unmap=<n>` per step; exits non-zero on the first
//! check that fails. Usage: `edu_dma <pci-address>`.

mod edu;

use std::process::ExitCode;

use edu::{BUFFER_SIZE, Edu};
use viommu_vfio::{Container, DmaMapping, Perm};
use viommu_vm_memory::GuestRam;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vtd_regs::{PhysAddr, PhysMem};

const PAGE: u64 = 0x1000;
const RW: Perm = Perm::READ.union(Perm::WRITE);
/// Guest RAM: two adjacent regions (1 MiB each), a hole, one more region.
const REGIONS: [(u64, usize); 3] = [(0, 0x10_0000), (0x10_0000, 0x10_0000), (0x100_0000, 0x1_0000)];
/// What untouched guest RAM holds.
const FILL: u8 = 0xa5;
/// IOVAs above edu's default 28-bit DMA mask and below 4 GiB: an 8-byte
/// `pwrite` to a BAR through vfio-pci (Linux 6.1) reaches edu as a 4-byte
/// write of the low half, so its address registers keep 32 bits.
const IOVA_BASE: u64 = 0xa000_0000;

fn main() -> ExitCode {
    let address = std::env::args().nth(1).unwrap_or_else(|| "0000:00:02.0".into());
    match run(&address) {
        Ok(()) => {
            println!("edu_dma: all checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("edu_dma: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

type Ram<'m> = GuestRam<&'m GuestMemoryMmap<()>>;

/// The bytes at `gpa`.
fn peek(ram: &Ram<'_>, gpa: u64, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    ram.read_bytes(PhysAddr::new(gpa), &mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

fn poke(ram: &Ram<'_>, gpa: u64, data: &[u8]) -> Result<(), String> {
    ram.write_bytes(PhysAddr::new(gpa), data).map_err(|e| e.to_string())
}

/// A pattern that differs for every `seed` and byte.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8).wrapping_mul(7) | 1).collect()
}

/// Checks that guest RAM holds `want` at `gpa` and [`FILL`] in the 64 bytes
/// on either side.
fn check_landed(ram: &Ram<'_>, gpa: u64, want: &[u8], what: &str) -> Result<(), String> {
    let got = peek(ram, gpa, want.len())?;
    if got != want {
        return Err(format!("{what}: data at {gpa:#x} is {got:02x?}, expected {want:02x?}"));
    }
    let before = peek(ram, gpa - 64, 64)?;
    let after = peek(ram, gpa + want.len() as u64, 64)?;
    if before.iter().chain(&after).any(|&b| b != FILL) {
        return Err(format!("{what}: bytes around {gpa:#x} changed"));
    }
    Ok(())
}

/// Checks that `len` bytes at `gpa` still hold [`FILL`].
fn check_untouched(ram: &Ram<'_>, gpa: u64, len: usize, what: &str) -> Result<(), String> {
    if peek(ram, gpa, len)?.iter().any(|&b| b != FILL) {
        return Err(format!("{what}: DMA landed at {gpa:#x}"));
    }
    Ok(())
}

fn run(address: &str) -> Result<(), String> {
    let ranges: Vec<(GuestAddress, usize)> =
        REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(|e| e.to_string())?;
    let ram = GuestRam::new(&mem);
    for &(start, len) in &REGIONS {
        poke(&ram, start, &vec![FILL; len])?;
    }

    let e = |e: viommu_vfio::Error| e.to_string();
    let mut container = Container::new().map_err(e)?;
    let dev = container.open_device(address).map_err(e)?;
    dev.enable_dma().map_err(e)?;
    let edu = Edu::new(&dev)?;
    println!("page sizes {:#x}", container.page_sizes().map_err(e)?);
    let counts = container.ioctl_counts();
    println!("ioctls setup map={} unmap={} other={}", counts.map, counts.unmap, counts.other);

    // A: 4 pages across the boundary of the two adjacent regions
    // (GPA 0xfe000..0x102000), at IOVA_BASE: one map ioctl per region piece.
    let (a_iova, a_gpa, a_len) = (IOVA_BASE, 0xf_e000, 4 * PAGE);
    // B: 4 pages of the region past the hole, at IOVA_BASE + 1 MiB.
    let (b_iova, b_gpa, b_len) = (IOVA_BASE + 0x10_0000, 0x100_4000, 4 * PAGE);
    // C: one page read-only, at IOVA_BASE + 2 MiB.
    let (c_iova, c_gpa) = (IOVA_BASE + 0x20_0000, 0x100_9000);
    let before = container.ioctl_counts();
    // SAFETY: guest RAM in `mem`, alive until the container is dropped, and
    // only reached through vm-memory's volatile copies.
    unsafe {
        container.map_guest(&ram, a_iova, a_gpa, a_len, RW).map_err(e)?;
        container.map_guest(&ram, b_iova, b_gpa, b_len, RW).map_err(e)?;
        container.map_guest(&ram, c_iova, c_gpa, PAGE, Perm::READ).map_err(e)?;
    }
    let d = container.ioctl_counts().since(before);
    println!("ioctls map3 map={} unmap={}", d.map, d.unmap);
    if d.map > 4 || d.unmap != 0 {
        return Err(format!("three maps (one spanning two regions) took {d:?}"));
    }
    if container.map_guest_outside(&ram).is_ok() {
        return Err("a map reaching into the hole was accepted".into());
    }
    // A batch whose second run overlaps B maps nothing: its first run is
    // mapped, then unmapped again.
    let mapped: Vec<_> = container.mappings().copied().collect();
    let before = container.ioctl_counts();
    let free = DmaMapping { iova: IOVA_BASE + 0x30_0000, hva: 0, len: PAGE, perm: RW };
    let clash = DmaMapping { iova: b_iova + PAGE, ..free };
    let hva =
        |gpa| ram.host_range(PhysAddr::new(gpa), PAGE).map(|r| r.hva).map_err(|e| e.to_string());
    let batch = [
        DmaMapping { hva: hva(0x100_c000)?, ..free },
        DmaMapping { hva: hva(0x100_d000)?, ..clash },
    ];
    // SAFETY: guest RAM in `mem`, as above.
    let result = unsafe { container.map_batch(&batch) };
    let d = container.ioctl_counts().since(before);
    println!("ioctls failed-batch map={} unmap={}", d.map, d.unmap);
    if result != Err(viommu_vfio::Error::Overlap { iova: clash.iova, len: PAGE })
        || (d.map, d.unmap) != (1, 1)
        || container.mappings().copied().collect::<Vec<_>>() != mapped
    {
        return Err(format!("an overlapping batch gave {result:?} with {d:?}"));
    }

    // Device reads memory (unaligned, page-crossing, across two regions),
    // then writes it elsewhere (unaligned, page-crossing).
    let data = pattern(1, 0x61);
    let src_gpa = 0x10_0000 - 0x23; // 0x23 bytes before the region boundary
    poke(&ram, src_gpa, &data)?;
    edu.read_memory(a_iova + (src_gpa - a_gpa), 0x11, data.len())?;
    let dst_gpa = b_gpa + PAGE - 0x35;
    edu.write_memory(0x11, b_iova + (dst_gpa - b_gpa), data.len())?;
    check_landed(&ram, dst_gpa, &data, "read then write through the IOMMU")?;
    poke(&ram, src_gpa, &vec![FILL; data.len()])?;
    poke(&ram, dst_gpa, &vec![FILL; data.len()])?;

    // A large transfer: most of edu's buffer, from B into A.
    let big = pattern(2, BUFFER_SIZE - 3);
    let big_src = b_gpa + 3;
    poke(&ram, big_src, &big)?;
    edu.read_memory(b_iova + 3, 0, big.len())?;
    let big_dst = a_gpa + 0x7f9;
    edu.write_memory(0, a_iova + 0x7f9, big.len())?;
    check_landed(&ram, big_dst, &big, "a 4 KiB transfer across pages and regions")?;
    poke(&ram, big_src, &vec![FILL; big.len()])?;
    poke(&ram, big_dst, &vec![FILL; big.len()])?;

    // Read-only mapping: the device reads it, its write is blocked.
    let ro = pattern(3, 0x20);
    poke(&ram, c_gpa + 0x100, &ro)?;
    edu.read_memory(c_iova + 0x100, 0x200, ro.len())?;
    edu.write_memory(0x200, b_iova + 0x40, ro.len())?;
    check_landed(&ram, b_gpa + 0x40, &ro, "read of a read-only mapping")?;
    poke(&ram, b_gpa + 0x40, &vec![FILL; ro.len()])?;
    poke(&ram, c_gpa + 0x100, &vec![FILL; ro.len()])?;
    let probe = pattern(4, 0x20);
    poke(&ram, b_gpa + 0x80, &probe)?;
    edu.read_memory(b_iova + 0x80, 0x300, probe.len())?;
    // QEMU's VT-d blocks a write through a present read-only entry without
    // recording a fault (it records only failed translations): no DMAR log.
    println!("expect-blocked write {:#x}", c_iova + 0x300);
    edu.write_memory(0x300, c_iova + 0x300, probe.len())?;
    check_untouched(&ram, c_gpa + 0x300, probe.len(), "write to a read-only mapping")?;

    // Partial unmaps. The second page of A, whose map is two pieces (one
    // per region, pages 0-1 and 2-3): one unmap ioctl of the first piece,
    // one re-map of its page 0. The second page of B (one map of 4 pages):
    // one unmap ioctl of all of B, two re-maps (page 0, pages 2-3).
    for (name, iova, gpa, ioctls) in [("A", a_iova, a_gpa, (1, 1)), ("B", b_iova, b_gpa, (2, 1))] {
        let before = container.ioctl_counts();
        container.unmap(iova + PAGE, PAGE).map_err(e)?;
        let d = container.ioctl_counts().since(before);
        println!("ioctls partial-unmap-{name} map={} unmap={}", d.map, d.unmap);
        if (d.map, d.unmap) != ioctls {
            return Err(format!(
                "a partial unmap of {name} took {d:?}, expected (map, unmap) {ioctls:?}"
            ));
        }
        let hole_iova = iova + PAGE + 0x10;
        println!("expect-fault write {hole_iova:#x}");
        edu.write_memory(0x300, hole_iova, probe.len())?;
        check_untouched(&ram, gpa + PAGE + 0x10, probe.len(), "write to an unmapped page")?;
        for page in [0, 2, 3] {
            let off = page * PAGE + 0x10;
            edu.write_memory(0x300, iova + off, probe.len())?;
            check_landed(&ram, gpa + off, &probe, "write to a page mapped again")?;
            poke(&ram, gpa + off, &vec![FILL; probe.len()])?;
        }
    }
    // The source of the probe, in B's page 0, is still there.
    poke(&ram, b_gpa + 0x80, &probe)?;

    // Whole unmap of what is left of B (two maps) and of C in one batch:
    // ranges that touch merge, B and C do not: two unmap ioctls. Then
    // their IOVAs are dead.
    let before = container.ioctl_counts();
    container.unmap_batch(&[(b_iova, b_len), (c_iova, PAGE), (b_iova + b_len, PAGE)]).map_err(e)?;
    let d = container.ioctl_counts().since(before);
    println!("ioctls unmap-batch map={} unmap={}", d.map, d.unmap);
    if (d.map, d.unmap) != (0, 2) {
        return Err(format!("unmapping B and C took {d:?}, expected 2 unmaps"));
    }
    println!("expect-fault write {:#x}", b_iova + 0x80);
    edu.write_memory(0x300, b_iova + 0x80, probe.len())?;
    poke(&ram, b_gpa + 0x80, &vec![FILL; probe.len()])?; // the source copy
    check_untouched(&ram, b_gpa, b_len as usize, "write to unmapped B")?;

    // The rest of A, as the guest would: one batch, three pieces that merge
    // into one contiguous range: one unmap ioctl.
    let before = container.ioctl_counts();
    container
        .unmap_batch(&[(a_iova, PAGE), (a_iova + 2 * PAGE, 2 * PAGE), (a_iova + PAGE, PAGE)])
        .map_err(e)?;
    let d = container.ioctl_counts().since(before);
    println!("ioctls unmap-rest map={} unmap={}", d.map, d.unmap);
    if (d.map, d.unmap) != (0, 1) || container.mappings().next().is_some() {
        return Err(format!("unmapping the rest of A took {d:?}"));
    }
    println!("expect-fault write {:#x}", a_iova + 3 * PAGE);
    edu.write_memory(0x300, a_iova + 3 * PAGE, probe.len())?;
    check_untouched(&ram, a_gpa + 3 * PAGE, PAGE as usize, "write to unmapped A")?;

    // Tear-down of the whole domain: two maps, one ioctl.
    // SAFETY: as above.
    unsafe {
        container.map_guest(&ram, a_iova, a_gpa, a_len, RW).map_err(e)?;
        container.map_guest(&ram, b_iova, b_gpa, b_len, RW).map_err(e)?;
    }
    let before = container.ioctl_counts();
    container.unmap_all().map_err(e)?;
    let d = container.ioctl_counts().since(before);
    println!("ioctls unmap-all map={} unmap={}", d.map, d.unmap);
    if (d.map, d.unmap) != (0, 1) || container.mappings().next().is_some() {
        return Err(format!("unmap_all took {d:?}"));
    }
    let counts = container.ioctl_counts();
    println!("ioctls total map={} unmap={} other={}", counts.map, counts.unmap, counts.other);
    Ok(())
}

/// A probe that must fail: a map that reaches from guest RAM into the hole.
trait Outside {
    fn map_guest_outside(&mut self, ram: &Ram<'_>) -> Result<(), viommu_vfio::Error>;
}

impl Outside for Container {
    fn map_guest_outside(&mut self, ram: &Ram<'_>) -> Result<(), viommu_vfio::Error> {
        // SAFETY: as above; the call must fail before any ioctl.
        unsafe { self.map_guest(ram, IOVA_BASE + 0x40_0000, 0x1f_f000, 2 * PAGE, RW) }
    }
}
