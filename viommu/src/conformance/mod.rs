//! The vIOMMU's guarantees, checked against any backend (feature
//! `conformance`): a test suite a backend's crate runs on its own host
//! side by implementing [`Harness`] and calling [`run_all`] (or each check
//! from its own `#[test]`).
//!
//! What every backend must give, whatever its host IOMMU:
//! - a guest page is reachable by its device only while the guest maps it,
//!   with the guest's permission ([`map_and_unmap`], [`partial_unmap`],
//!   [`superpage`]);
//! - the guest's wait completes only after the host translation is gone
//!   ([`wait_follows_the_host`], [`a_failed_unmap_fails_closed`]);
//! - nothing outside the guest's RAM is ever mapped
//!   ([`nothing_outside_ram`], [`hostile_queue_and_context`]);
//! - contiguous pages cost one map and one unmap ([`one_call_per_range`]);
//! - the guest is decoded once, as hardware decodes it
//!   ([`queue_address_above_the_host_width`],
//!   [`descriptor_rewritten_while_the_unit_runs`],
//!   [`linux_in_caching_mode`]).
//!
//! Each check builds its own vIOMMU (a fresh backend from the harness), a
//! guest driver ([`Guest`]) with tables in the harness's table frames, and
//! observes the device through [`Harness::dma`]. A check panics on the
//! first guarantee broken.

mod guest;
mod wrappers;

use core::ops::Range;

use vtd_emu::SimFrameAllocator;
use vtd_regs::FrameAllocator;
use vtd_regs::desc::{ContextCacheInv, Descriptor, IecInv, IecScope, IotlbInv, RawDescriptor};
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{GlobalBits, Iqa, Iqt, Irta, Rtaddr};
use vtd_regs::{
    ContextScope, Drain, FunctionMask, IotlbScope, Iova, Mmio, PAGE_SIZE, PageSize, PhysAddr,
    PhysMem,
};
use vtd_tables::{Access, ContextEntry, Perm, TranslationType};

pub use guest::{GUEST_DOMAIN, Guest};
pub use wrappers::{Flaky, RacyRam};

use crate::config::{Assignment, ViommuConfig};
use crate::guest_mem::GuestRam;
use crate::host::HostIommu;
use crate::viommu::Viommu;

/// A host side the checks run on: a backend, the guest's RAM, and a way to
/// see where the assigned device's DMA lands.
pub trait Harness {
    /// The guest's RAM.
    type Ram: GuestRam + Clone;
    /// The backend.
    type Backend: HostIommu;

    /// The guest's RAM (one guest per harness; each check zeroes what it
    /// uses).
    fn ram(&self) -> Self::Ram;

    /// A fresh backend for a new vIOMMU: no domain, the device blocked.
    fn backend(&mut self) -> Self::Backend;

    /// The assigned device.
    fn device(&self) -> Assignment;

    /// Guest-physical RAM the checks build tables and queues in: at least
    /// 512 KiB, page-aligned, not overlapping [`data`](Self::data).
    fn table_frames(&self) -> Range<PhysAddr>;

    /// Guest-physical RAM the checks map for DMA: at least 4 MiB from a
    /// 2 MiB boundary.
    fn data(&self) -> Range<PhysAddr>;

    /// The device's DMA `access` at `iova` through the host IOMMU: the
    /// guest-physical address it reached, or `None` if it was blocked.
    fn dma(&mut self, iova: Iova, access: Access) -> Option<PhysAddr>;

    /// Whether the host IOMMU stops the device reading a page mapped
    /// write-only. VT-d does (a second-stage entry with W and not R,
    /// §9.8), and so does the software VT-d; a host stack that maps
    /// write-only pages readable (VFIO type1 under QEMU 7.2's intel-iommu
    /// with Debian's 6.1 kernel, as the viommu-vfio guest test probes)
    /// answers `false`, and the checks then expect such reads to land
    /// rather than fail on them: the vIOMMU asked for write-only, the host
    /// gave more.
    fn enforces_write_only(&self) -> bool {
        true
    }
}

/// The configuration the checks use: QEMU's unit, the vIOMMU's defaults.
pub fn config() -> ViommuConfig {
    ViommuConfig::qemu()
}

/// Calls `$then!` with the name of every check: the one list of them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    ($then:ident ! ($($args:tt)*)) => {
        $crate::$then! {
            $($args)*; map_and_unmap, partial_unmap, one_call_per_range, superpage,
            nothing_outside_ram, hostile_queue_and_context, wait_follows_the_host,
            a_failed_unmap_fails_closed, queue_address_above_the_host_width,
            descriptor_rewritten_while_the_unit_runs, linux_in_caching_mode
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_list {
    ($h:ty; $($name:ident),*) => {
        [$((stringify!($name), $crate::conformance::$name::<$h> as fn(&mut $h))),*]
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    ($harness:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::$name(&mut $harness);
            }
        )*
    };
}

/// One `#[test]` per check, named after it, each on a fresh harness
/// `$harness` (an expression evaluated once per test). A backend's crate
/// writes, in a test file:
///
/// ```ignore
/// viommu::conformance_tests!(MyHarness::new());
/// ```
///
/// and a failed guarantee fails the test named after its check. A harness
/// that checks something of its own after each check does it in its
/// `Drop` (when the thread is not already panicking).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::__conformance_checks!(__conformance_test!($harness));
    };
}

/// Every check, by name: for a harness that reports each on its own (one
/// that fails does not stop the others when the caller catches its panic).
pub fn checks<H: Harness>() -> impl Iterator<Item = (&'static str, fn(&mut H))> {
    crate::__conformance_checks!(__conformance_list!(H)).into_iter()
}

/// Runs every check.
pub fn run_all<H: Harness>(h: &mut H) {
    checks().for_each(|(_, check)| check(h));
}

/// A fresh vIOMMU for `device` over `ram`, with `backend`.
fn viommu<R: GuestRam, B: HostIommu>(device: Assignment, ram: R, backend: B) -> Viommu<R, B> {
    Viommu::new(ram, backend, &[device], config()).expect("a valid configuration")
}

/// Runs `f` with a fresh vIOMMU of `h` (its backend made by `wrap` from the
/// harness's) and a guest brought up on it ([`Guest::bring_up`]).
fn with_guest<H: Harness, B: HostIommu>(
    h: &mut H,
    wrap: impl FnOnce(H::Backend) -> B,
    f: impl FnOnce(&mut H, &Viommu<H::Ram, B>, &mut Guest<'_, H::Ram, B>),
) {
    let ram = h.ram();
    let frames = frames(h, ram.clone());
    let v = viommu(h.device(), ram.clone(), wrap(h.backend()));
    let mut g = Guest::new(&v, ram, &frames, h.device().guest);
    g.bring_up();
    f(h, &v, &mut g);
}

/// A frame allocator over the harness's table frames, zeroed.
fn frames<H: Harness, R: GuestRam + Clone>(h: &H, ram: R) -> SimFrameAllocator<R> {
    let r = h.table_frames();
    let mut f = r.start;
    while f < r.end {
        ram.zero_frame(f).expect("table frames are RAM");
        f = PhysAddr::new(f.as_u64() + PAGE_SIZE);
    }
    SimFrameAllocator::new(ram, r.start, r.end)
}

/// The `i`th data page.
fn data_page<H: Harness>(h: &H, i: u64) -> PhysAddr {
    PhysAddr::new(h.data().start.as_u64() + i * PAGE_SIZE)
}

/// Asserts the device reaches `gpa` at `iova` for `access`, or nothing.
#[track_caller]
fn expect<H: Harness>(h: &mut H, iova: Iova, access: Access, gpa: Option<PhysAddr>) {
    assert_eq!(h.dma(iova, access), gpa, "{access:?} at {iova:?}");
}

/// The 4 KiB pages of `[iova, iova + len)` reach `[gpa, ...)` with `perm`.
#[track_caller]
fn expect_mapped<H: Harness>(h: &mut H, iova: Iova, gpa: PhysAddr, len: u64, perm: Perm) {
    for off in (0..len).step_by(PAGE_SIZE as usize) {
        let (i, g) = (Iova::new(iova.as_u64() + off + 8), PhysAddr::new(gpa.as_u64() + off + 8));
        for access in [Access::Read, Access::Write] {
            let granted = perm.contains(access.required())
                || (access == Access::Read && perm == Perm::WRITE && !h.enforces_write_only());
            let want = granted.then_some(g);
            expect(h, i, access, want);
        }
    }
}

/// A guest maps buffers of one page and of 16 pages with each
/// permission: its device reaches exactly them; after the unmap and its
/// invalidation completed it reaches nothing, and its blocked request is
/// reported in the guest's unit.
pub fn map_and_unmap<H: Harness>(h: &mut H) {
    with_guest(
        h,
        |b| b,
        |h, v, g| {
            let iova = |i: u64| Iova::new(0x10_0000 + i * 0x10_0000);
            let bufs = [
                (iova(0), data_page(h, 0), PAGE_SIZE, Perm::READ_WRITE),
                (iova(1), data_page(h, 16), 16 * PAGE_SIZE, Perm::READ),
                (iova(2), data_page(h, 40), PAGE_SIZE, Perm::WRITE),
            ];
            for (i, gpa, len, perm) in bufs {
                expect(h, i, Access::Read, None);
                assert!(g.map(i, gpa, len, perm), "map completes");
                expect_mapped(h, i, gpa, len, perm);
            }
            for (i, _, len, _) in bufs {
                assert!(g.unmap(i, len), "unmap completes");
                for off in (0..len).step_by(PAGE_SIZE as usize) {
                    expect(h, Iova::new(i.as_u64() + off), Access::Write, None);
                }
            }
            let host = h.device().host;
            let fault =
                v.report_host_fault(host, iova(0), Access::Read).expect("a fault for the guest");
            assert_eq!(fault.reason, vtd_regs::FaultReason::ReadNotPermitted);
            let c = v.counters();
            assert_eq!((c.pins, c.unpins, c.host_errors), (18, 18, 0));
        },
    );
}

/// Unmapping part of what one map installed keeps the rest reachable.
pub fn partial_unmap<H: Harness>(h: &mut H) {
    with_guest(
        h,
        |b| b,
        |h, v, g| {
            let (iova, gpa) = (Iova::new(0x40_0000), data_page(h, 0));
            assert!(g.map(iova, gpa, 16 * PAGE_SIZE, Perm::READ_WRITE));
            let page = |i: u64| Iova::new(iova.as_u64() + i * PAGE_SIZE);
            assert!(g.unmap(page(4), 4 * PAGE_SIZE));
            expect_mapped(h, iova, gpa, 4 * PAGE_SIZE, Perm::READ_WRITE);
            for i in 4..8 {
                expect(h, page(i), Access::Read, None);
            }
            let rest = PhysAddr::new(gpa.as_u64() + 8 * PAGE_SIZE);
            expect_mapped(h, page(8), rest, 8 * PAGE_SIZE, Perm::READ_WRITE);
            // A page mapped again in the hole, somewhere else.
            let other = data_page(h, 100);
            assert!(g.map(page(5), other, PAGE_SIZE, Perm::READ));
            expect_mapped(h, page(5), other, PAGE_SIZE, Perm::READ);
            assert!(g.unmap(iova, 4 * PAGE_SIZE) && g.unmap(page(5), PAGE_SIZE));
            assert!(g.unmap(page(8), 8 * PAGE_SIZE));
            let c = v.counters();
            assert_eq!((c.pins, c.unpins, c.host_errors), (17, 17, 0));
        },
    );
}

/// 16 contiguous pages are one map and one unmap of the backend; the
/// guest's unmap costs one completion.
pub fn one_call_per_range<H: Harness>(h: &mut H) {
    with_guest(
        h,
        |b| b,
        |h, v, g| {
            let before = v.counters();
            let iova = Iova::new(0x80_0000);
            assert!(g.map(iova, data_page(h, 0), 16 * PAGE_SIZE, Perm::READ_WRITE));
            assert!(g.unmap(iova, 16 * PAGE_SIZE));
            let c = v.counters();
            assert_eq!(c.map_calls - before.map_calls, 1);
            assert_eq!(c.unmap_calls - before.unmap_calls, 1);
            assert_eq!(c.completions - before.completions, 1);
        },
    );
}

/// A guest 2 MiB page: every page of it is reachable, through one map.
pub fn superpage<H: Harness>(h: &mut H) {
    with_guest(
        h,
        |b| b,
        |h, v, g| {
            let start = h.data().start.as_u64();
            let gpa = PhysAddr::new(start.next_multiple_of(2 << 20));
            let iova = Iova::new(0x4000_0000);
            let before = v.counters();
            g.table.map(iova, gpa, PageSize::Size2MiB, Perm::READ_WRITE).expect("guest table");
            assert!(g.submit(&[Guest::<H::Ram, H::Backend>::psi(iova, 512, false)]));
            assert_eq!(v.counters().map_calls - before.map_calls, 1);
            for page in [0, 1, 255, 511] {
                let off = page * PAGE_SIZE;
                let (i, p) = (Iova::new(iova.as_u64() + off), PhysAddr::new(gpa.as_u64() + off));
                expect(h, i, Access::Write, Some(p));
            }
            let token = g.table.unmap(iova, PageSize::Size2MiB).expect("guest table");
            assert!(g.submit(&[Guest::<H::Ram, H::Backend>::psi(iova, 512, true)]));
            g.table.release(token).expect("own table");
            expect(h, iova, Access::Read, None);
            assert_eq!(v.counters().unpins, v.counters().pins);
        },
    );
}

/// Leaves pointing outside the guest's RAM (above it, and into a hole)
/// are never mapped; what is mapped is all RAM.
pub fn nothing_outside_ram<H: Harness>(h: &mut H) {
    with_guest(
        h,
        |b| b,
        |h, v, g| {
            let top = last_ram_end(&g.mem);
            let iova = Iova::new(0x20_0000);
            // The last RAM page and the one after it, in one guest mapping.
            let last = PhysAddr::new(top.as_u64() - PAGE_SIZE);
            assert!(g.map(iova, last, 2 * PAGE_SIZE, Perm::READ));
            expect(h, iova, Access::Read, Some(last));
            expect(h, Iova::new(iova.as_u64() + PAGE_SIZE), Access::Read, None);
            // Far beyond.
            let far = Iova::new(0x30_0000);
            assert!(g.map(far, PhysAddr::new(1 << 38), PAGE_SIZE, Perm::READ_WRITE));
            expect(h, far, Access::Read, None);
            v.for_each_mapping(|m| {
                let end = PhysAddr::new(m.gpa.as_u64() + m.len - 1);
                assert!(g.mem.ram_at(m.gpa).is_some() && g.mem.ram_at(end).is_some(), "{m:?}");
            });
            assert_eq!(v.counters().outside_ram, 2);
        },
    );
}

/// The end of the guest's highest RAM region.
fn last_ram_end<R: GuestRam>(ram: &R) -> PhysAddr {
    let mut at = PhysAddr::ZERO;
    let mut end = PhysAddr::ZERO;
    while let Some(r) = ram.ram_from(at) {
        (at, end) = (r.end, r.end);
    }
    end
}

/// A queue and a context table outside the guest's RAM: queue errors and
/// faults for the guest, nothing for the host to map.
pub fn hostile_queue_and_context<H: Harness>(h: &mut H) {
    with_guest(
        h,
        |b| b,
        |h, v, g| {
            let (iova, gpa) = (Iova::new(0x10_0000), data_page(h, 0));
            assert!(g.map(iova, gpa, PAGE_SIZE, Perm::READ));
            // The context entry now points at a table outside RAM.
            let bad = ContextEntry::translated(
                GUEST_DOMAIN,
                PhysAddr::new(1 << 38),
                vtd_regs::regs::cap::Agaw::Bits39,
                TranslationType::Untranslated,
            );
            let root_entry = g.mem.read_u64(g.contexts.root_table()).expect("root table");
            bad.write(&g.mem, PhysAddr::new(root_entry & !0xfff), h.device().guest)
                .expect("context");
            let context =
                Descriptor::from(ContextCacheInv { scope: ContextScope::Global }).encode();
            assert!(g.submit(&[context]));
            expect(h, iova, Access::Read, None);
            assert_eq!(v.counters().unpins, 1);
            // The queue moved outside RAM: a fetch error, and nothing shadowed.
            g.command(GlobalBits::QIE, false);
            let mut r = v;
            let qs = QueueSize::from_order(0).expect("one page");
            r.write_reg(Iqt(0));
            r.write_reg(Iqa::new(PhysAddr::new(1 << 38), qs, DescriptorWidth::Bits128));
            g.command(GlobalBits::QIE, true);
            let shadowed = v.counters().invalidations_shadowed;
            r.write_reg(Iqt::from_index(1, DescriptorWidth::Bits128));
            assert!(v.unit().fault_status().iqe());
            assert_eq!(v.counters().invalidations_shadowed, shadowed);
            assert_eq!(v.counters().host_errors, 0);
        },
    );
}

/// A backend that does not confirm an unmap holds the guest's wait back:
/// the status stays unwritten while the host may still reach the page;
/// once the backend completes (the unit retried), the wait completes and
/// the page is gone.
pub fn wait_follows_the_host<H: Harness>(h: &mut H) {
    with_guest(h, Flaky::new, |h, v, g| {
        let (iova, gpa) = (Iova::new(0x10_0000), data_page(h, 0));
        assert!(g.map(iova, gpa, PAGE_SIZE, Perm::READ_WRITE));
        v.with_backend(|b| b.fail_completions(2));
        assert!(!g.unmap(iova, PAGE_SIZE), "the wait must not complete");
        assert!(!g.completed());
        assert_eq!(v.counters().unpins, 0, "still pinned");
        v.unit().process();
        assert!(!g.completed(), "still failing");
        v.unit().process();
        assert!(g.completed(), "completes once the backend did");
        expect(h, iova, Access::Read, None);
        assert_eq!(v.counters().unpins, 1);
    });
}

/// A backend unmap that fails (and leaves the range mapped) fails closed:
/// when the guest's invalidation completes its device reaches neither the
/// page it unmapped nor anything through the domain that lost track of
/// it; the device is attached to a fresh domain with the guest's other
/// mappings.
pub fn a_failed_unmap_fails_closed<H: Harness>(h: &mut H) {
    with_guest(h, Flaky::new, |h, v, g| {
        let (a, b) = (Iova::new(0x10_0000), Iova::new(0x20_0000));
        let (ga, gb) = (data_page(h, 0), data_page(h, 1));
        assert!(g.map(a, ga, PAGE_SIZE, Perm::READ_WRITE) && g.map(b, gb, PAGE_SIZE, Perm::READ));
        v.with_backend(|f| f.fail_unmaps(1));
        assert!(g.unmap(a, PAGE_SIZE), "completes once the device is safe");
        expect(h, a, Access::Read, None);
        expect(h, b, Access::Read, Some(gb));
        assert!(v.counters().host_errors > 0);
    });
}

/// A guest whose IQA has address bits above the host address width set
/// (ignored by the unit, §10.4.23) still gets its unmaps shadowed: after
/// its wait completes the device cannot reach the page. (Before the unit
/// was the one decoder, the vIOMMU read the queue at the unmasked address:
/// the page mapped through the first queue stayed reachable after the
/// guest's completed unmap through the second.)
pub fn queue_address_above_the_host_width<H: Harness>(h: &mut H) {
    with_guest(
        h,
        |b| b,
        |h, v, g| {
            let (iova, gpa) = (Iova::new(0x10_0000), data_page(h, 0));
            assert!(g.map(iova, gpa, PAGE_SIZE, Perm::READ_WRITE));
            expect(h, iova, Access::Read, Some(gpa));
            // A new queue, with IQA bit HAW + 1 set.
            g.command(GlobalBits::QIE, false);
            let haw = v.unit().config().host_address_width.bits();
            g.enable_queue(1 << (haw + 1));
            assert!(g.unmap(iova, PAGE_SIZE), "the unit runs the queue");
            expect(h, iova, Access::Read, None);
            assert_eq!(v.counters().unpins, 1);
        },
    );
}

/// A guest vCPU rewrites a descriptor while the unit runs (here: the unit's
/// fetch sees the slot's old contents, a harmless wait, while the guest's
/// new contents invalidate a page it unmapped). The unit fetches once: what
/// the host does matches what the unit executed, whichever it was.
pub fn descriptor_rewritten_while_the_unit_runs<H: Harness>(h: &mut H) {
    let ram = RacyRam::new(h.ram());
    let frames = frames(h, ram.clone());
    let v = viommu(h.device(), ram.clone(), h.backend());
    let mut g = Guest::new(&v, ram.clone(), &frames, h.device().guest);
    g.bring_up();
    let (iova, gpa) = (Iova::new(0x10_0000), data_page(h, 0));
    assert!(g.map(iova, gpa, PAGE_SIZE, Perm::READ_WRITE));
    // The page is unmapped in the guest's table; the slot the invalidation
    // goes to reads, once, as a wait writing a marker.
    let token = g.table.unmap(iova, PageSize::Size4KiB).expect("guest table");
    let marker = PhysAddr::new(h.table_frames().end.as_u64() - 8);
    let stale = vtd_regs::desc::WaitDesc::NONE.with_status_write(marker, 0xbad).expect("aligned");
    ram.stale_once(g.next_slot(), Descriptor::from(stale).encode());
    let completed = g.submit(&[Guest::<H::Ram, H::Backend>::psi(iova, 1, true)]);
    g.table.release(token).expect("own table");
    assert!(completed);
    let executed_stale = ram.read_u32(marker) == Ok(0xbad);
    assert!(executed_stale, "the unit fetched the slot once, and ran what it read");
    // What the unit executed was not the invalidation: the host may keep
    // the page (the guest's race is its own), but never the other way
    // round. Had it executed the invalidation, the page would be gone.
    let reached = h.dma(iova, Access::Read);
    assert!(executed_stale || reached.is_none(), "a completed invalidation left the page");
    // The guest invalidates properly: gone.
    assert!(g.submit(&[Guest::<H::Ram, H::Backend>::psi(iova, 1, true)]));
    expect(h, iova, Access::Read, None);
}

/// A guest that behaves like Linux's `intel-iommu` driver (6.1) on a unit in
/// caching mode: queued invalidation first, interrupt remapping (IRTA,
/// SIRTP, a global IEC flush, IRE), the root table with global context and
/// IOTLB invalidations, translation on, the device's context written and
/// flushed device-selectively with DID 0 then domain-selectively, maps and
/// unmaps each followed by a page-selective invalidation whose address is
/// not aligned to its mask (Linux before 6.9), with IH on unmaps and the
/// drains the unit offers, masks up to MAMV (and a domain-selective
/// invalidation beyond), every batch ending in a wait with a status write,
/// and index-selective IEC flushes. The device's reach is checked after
/// each step.
pub fn linux_in_caching_mode<H: Harness>(h: &mut H) {
    let ram = h.ram();
    let frames = frames(h, ram.clone());
    let v = viommu(h.device(), ram.clone(), h.backend());
    let cfg = v.unit().config();
    let mut g = Guest::new(&v, ram.clone(), &frames, h.device().guest);
    // The context entry is written later, as Linux attaches the device.
    let root_entry = ram.read_u64(g.contexts.root_table()).expect("root table");
    let context_table = PhysAddr::new(root_entry & !0xfff);
    let entry = vtd_tables::ContextEntry::address(context_table, h.device().guest.devfn());
    ram.write_bytes(entry, &[0; 16]).expect("context table");
    let mut r = &v;
    let (iova, gpa) = (Iova::new(0x20_3000), data_page(h, 3));
    // dmar_enable_qi: IQA, IQT = 0, QIE.
    g.enable_queue(0);
    // intel_setup_irq_remapping: IRTA, SIRTP, global IEC, IRE.
    let irt = frames.allocate(0).expect("guest frames");
    r.write_reg(Irta::new(irt, 7, false));
    g.command(GlobalBits::SIRTP, true);
    assert!(g.submit(&[Descriptor::from(IecInv { scope: IecScope::Global }).encode()]));
    g.command(GlobalBits::IRE, true);
    expect(h, iova, Access::Read, None);
    // iommu_set_root_entry, then global context and IOTLB flushes.
    r.write_reg(Rtaddr::new(g.contexts.root_table(), TranslationTableMode::Legacy));
    g.command(GlobalBits::SRTP, true);
    let global_cc = Descriptor::from(ContextCacheInv { scope: ContextScope::Global }).encode();
    let drain = Drain::all();
    let global_tlb = Descriptor::from(IotlbInv { scope: IotlbScope::Global, drain }).encode();
    assert!(g.submit(&[global_cc, global_tlb]));
    g.command(GlobalBits::TE, true);
    expect(h, iova, Access::Read, None);
    // domain_context_mapping_one in caching mode: the entry, then a
    // device-selective flush with DID 0, then the domain's IOTLB.
    let _ = g.contexts.attach(h.device().guest, GUEST_DOMAIN, &g.table).expect("context");
    let device = ContextScope::Device {
        domain: vtd_regs::DomainId::new(0),
        source: h.device().guest,
        function_mask: FunctionMask::None,
    };
    let dsi = Descriptor::from(IotlbInv { scope: IotlbScope::Domain(GUEST_DOMAIN), drain });
    assert!(
        g.submit(&[Descriptor::from(ContextCacheInv { scope: device }).encode(), dsi.encode()])
    );
    expect(h, iova, Access::Read, None);
    // A 2-page map at an odd page, invalidated as Linux 6.1 does: AM 3 (the
    // aligned block that covers both pages) at the unaligned address
    // 0x203000, no IH, drains.
    let with_drains = |d: RawDescriptor| RawDescriptor::new(d.qw0() | 0xc0, d.qw1());
    g.table.map_range(iova, gpa, 2 * PAGE_SIZE, Perm::READ_WRITE).expect("guest table");
    assert!(g.submit(&[with_drains(Guest::<H::Ram, H::Backend>::psi(iova, 2, false))]));
    expect_mapped(h, iova, gpa, 2 * PAGE_SIZE, Perm::READ_WRITE);
    // A map of 3 pages at 0x401000, invalidated with AM 2 (rounded up).
    let (iova3, gpa3) = (Iova::new(0x40_1000), data_page(h, 20));
    g.table.map_range(iova3, gpa3, 3 * PAGE_SIZE, Perm::READ).expect("guest table");
    assert!(g.submit(&[with_drains(Guest::<H::Ram, H::Backend>::psi(iova3, 3, false))]));
    expect_mapped(h, iova3, gpa3, 3 * PAGE_SIZE, Perm::READ);
    // An index-selective IEC flush (an IRTE changed).
    let iec = Descriptor::from(IecInv { scope: IecScope::entries(0x10, 2).expect("aligned") });
    assert!(g.submit(&[iec.encode()]));
    // Unmap the 2 pages: IH set, AM 3 at the unaligned address.
    let token = g.table.unmap_range(iova, 2 * PAGE_SIZE).expect("guest table");
    assert!(g.submit(&[with_drains(Guest::<H::Ram, H::Backend>::psi(iova, 2, true))]));
    g.table.release(token).expect("own table");
    expect(h, iova, Access::Read, None);
    expect(h, Iova::new(iova.as_u64() + PAGE_SIZE), Access::Read, None);
    expect_mapped(h, iova3, gpa3, 3 * PAGE_SIZE, Perm::READ);
    // Unmap the 3 pages with the largest mask the unit takes (MAMV).
    let token = g.table.unmap_range(iova3, 3 * PAGE_SIZE).expect("guest table");
    let mamv = cfg.cap.mamv().max_order();
    let scope = IotlbScope::pages(GUEST_DOMAIN, iova3.align_down(1 << (12 + mamv)), mamv, true);
    let wide = Descriptor::from(IotlbInv { scope: scope.expect("aligned"), drain });
    assert!(g.submit(&[wide.encode()]));
    g.table.release(token).expect("own table");
    expect(h, iova3, Access::Read, None);
    // A map invalidated domain-selectively (the mask would exceed MAMV).
    assert!(g.map(iova, gpa, PAGE_SIZE, Perm::READ));
    let token = g.table.unmap_range(iova, PAGE_SIZE).expect("guest table");
    assert!(g.submit(&[dsi.encode()]));
    g.table.release(token).expect("own table");
    expect(h, iova, Access::Read, None);
    let c = v.counters();
    assert_eq!((c.pins, c.unpins, c.host_errors), (6, 6, 0));
    assert!(!v.unit().fault_status().iqe(), "no descriptor refused");
}
