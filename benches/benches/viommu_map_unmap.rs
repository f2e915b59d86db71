//! `viommu_map_unmap`: a guest maps and unmaps one page (strict
//! invalidation, single-use IOVAs) through its vIOMMU, as in the paper's
//! map/unmap breakdown (Amit et al. 2011, Table 1): `bare_metal` (the same
//! driver on the host's unit directly), `trap` (every register access of
//! the guest calls the vIOMMU synchronously, without the VM exit),
//! `trap_kvm` (the same, each access preceded by a real VM exit and entry:
//! a KVM vCPU runs one MMIO store and exits), and `sidecore` (the guest
//! writes a shared register page; a second thread polls it and shadows).
//! The time is the guest-visible latency of one map+unmap pair. Printed
//! next to it, per pair (from a separate run whose register accesses are
//! timed, so the clock reads stay out of the measured loop): the register
//! accesses the vIOMMU emulated (each a VM exit under trap-and-emulate),
//! the host time spent emulating, the guest invalidations shadowed, the
//! host unit's invalidations and the pages pinned; and the cost of one KVM
//! exit round trip. `bare_metal_kept_tables` and `trap_kept_tables` are
//! `bare_metal` and `trap` with drivers that keep their emptied last-level
//! tables, as Linux's does (see [`KEPT_TABLES`]): the same emulation against
//! a native path without the default driver's table rebuilding.
//! `handshake` is the polling alone, nothing emulated:
//! a tail stored and a status polled back from the other core, twice per
//! pair (the least a sidecore adds to `trap` on the machine).
//!
//! The nested vIOMMU (`viommu::nested`, issue 18) beside them:
//! `nested_trap_kvm` and `nested_sidecore`, the same driver over
//! first-stage tables on a scalable-mode guest unit: a map is table writes
//! only (no register access), an unmap posts one PASID-based IOTLB
//! invalidation and a wait through the queue (one tail write: one exit
//! under trap-and-emulate, none with the sidecore polling the tail), which
//! the vIOMMU forwards to the host unit. Printed beside them: exits per
//! pair, invalidations forwarded, and the pages pinned (all guest RAM,
//! from the start).
#![allow(missing_docs)] // reason: criterion's macros generate undocumented items

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use invalidation::{FlushConfig, Invalidator, NoClock, QueuedInvalidator};
use iommu_platform::Platform;
use iova_alloc::{IovaTree, Node, Window};
use teardown::{Fixed, Mapper, MapperConfig, NoPinning, Reuse};
use viommu::sidecore::{RegisterPage, Registers, Sidecore, SidecoreMmio};
use viommu::{Assignment, GuestLayout, GuestMemory, GuestPinner, Native, Viommu, ViommuConfig};
use viommu_benches::host::{
    Frames, GMem, GUEST_FRAMES, GUEST_RAM, HostInv, Mem, TheHost, host_unit, leak, new_host,
};
use viommu_examples::{DOMAIN, Inv, Testbed};
use vtd_emu::{EmuConfig, SimFrameAllocator};
use vtd_regs::regs::QueueSize;
use vtd_regs::{DomainId, Iova, Mmio, PAGE_SIZE, PhysAddr, PollBudget, RemappingUnit, SourceId};
use vtd_tables::{ContextManager, Perm, SlPageTable, TableConfig};

type Vmmu = Viommu<GMem, Native<Mem, Frames, HostInv, GuestPinner>>;
/// The guest's driver: bare metal's, over the guest's RAM (see
/// [`guest_ram`]) and the guest unit's registers `X`.
type GuestMapper<X> =
    Mapper<(Mem, Frames, NoClock), IovaTree<Vec<Node>>, QueuedInvalidator<X, Mem>, Fixed<1024, 64>>;

const DEVICE: SourceId = SourceId::from_raw(0x0008);
const BUFFER: PhysAddr = PhysAddr::new(0x10_0000);
/// Pairs run to count the host's work.
const COUNTED: u64 = 2000;

/// The host (its unit over its RAM) and a guest vIOMMU in the RAM's first
/// 16 MiB.
fn host_and_viommu() -> (&'static Vmmu, Arc<TheHost>) {
    let (mem, _, _, host) = new_host();
    let layout = GuestLayout::new(PhysAddr::ZERO, GUEST_RAM);
    let dev = Assignment { guest: DEVICE, host: DEVICE };
    let gmem = GuestMemory::new(mem, layout);
    let backend = Native::new(host.clone(), GuestPinner::new(layout));
    let v = Viommu::new(gmem, backend, &[dev], ViommuConfig::qemu());
    (leak(v.expect("vIOMMU")), host)
}

/// The guest's RAM as the guest itself reaches it: its loads and stores go
/// to memory directly (no VMM on the path), and its layout puts
/// guest-physical 0.. at host address 0.., so its driver uses the host's
/// RAM as bare metal's driver does. Only the vIOMMU translates
/// guest-physical addresses (through `GuestMemory`, as a VMM's vIOMMU goes
/// through `vm-memory`).
fn guest_ram(gmem: &GMem) -> Mem {
    assert_eq!(gmem.layout().host_address(PhysAddr::ZERO, GUEST_RAM), Ok(PhysAddr::ZERO));
    gmem.host()
}

/// The guest's RAM (see [`guest_ram`]), the frames its driver builds
/// tables from, and its unit's registers over `mmio`.
fn guest_platform<X: Mmio>(gmem: &GMem, mmio: X) -> (Mem, Frames, RemappingUnit<X>) {
    let mem = guest_ram(gmem);
    let frames: Frames =
        leak(SimFrameAllocator::new(mem, PhysAddr::new(GUEST_FRAMES), PhysAddr::new(GUEST_RAM)));
    // A driver waits as long as it takes (a sidecore may be descheduled).
    let unit = RemappingUnit::with_budget(mmio, PollBudget::new(u32::MAX)).expect("unit");
    (mem, frames, unit)
}

/// The driver every function of the group runs: single-use IOVAs, strict
/// invalidation, in `domain` of `table`.
fn single_use_strict<P: Platform, I: Invalidator>(
    platform: P,
    table: SlPageTable<P::Mem, P::Frames>,
    inv: I,
    domain: DomainId,
) -> Mapper<P, IovaTree<Vec<Node>>, I, Fixed<1024, 64>> {
    let space = IovaTree::new(Window::from_pages(1, (1 << 27) - 1).expect("window"), Vec::new());
    let config = MapperConfig {
        reuse: Reuse::SingleUse,
        flush: FlushConfig::strict(),
        domain,
        dma_limit: Iova::new(1 << 39),
    };
    Mapper::with_capacity(platform, table, space, inv, NoPinning, config, Fixed).expect("config")
}

/// The guest's driver over `mmio`.
fn guest<X: Mmio>(v: &'static Vmmu, mmio: X) -> GuestMapper<X> {
    guest_keeping(v, mmio, 0)
}

/// [`guest`], its table keeping up to `kept` emptied last-level tables
/// (see [`KEPT_TABLES`]).
fn guest_keeping<X: Mmio>(v: &'static Vmmu, mmio: X, kept: usize) -> GuestMapper<X> {
    let (mem, frames, unit) = guest_platform(v.unit().memory(), mmio);
    let mut table =
        SlPageTable::new(mem, frames, TableConfig::from_cap(unit.cap(), 39).expect("39-bit"))
            .expect("frames");
    table.keep_empty_tables(kept);
    let mut contexts = ContextManager::new(mem, frames).expect("frames");
    let _ = contexts.attach(DEVICE, DomainId::new(1), &table).expect("attach");
    let qs = QueueSize::from_order(0).expect("1 page");
    let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, qs)
        .expect("remapping on");
    single_use_strict((mem, frames, NoClock), table, inv, DomainId::new(1))
}

/// Times the emulation the vIOMMU does (the host's work).
struct Timed {
    v: &'static Vmmu,
    ns: AtomicU64,
}

impl Timed {
    fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
}

impl Mmio for &Timed {
    fn read32(&self, off: usize) -> u32 {
        self.time(|| self.v.read_register(off))
    }
    fn write32(&mut self, off: usize, value: u32) {
        self.time(|| self.v.write_register(off, value))
    }
    fn read64(&self, off: usize) -> u64 {
        self.time(|| self.v.read_register64(off))
    }
    fn write64(&mut self, off: usize, value: u64) {
        self.time(|| self.v.write_register64(off, value))
    }
}

impl Registers for Timed {
    fn read(&self, off: usize) -> u32 {
        self.v.read(off)
    }
    fn write(&self, off: usize, value: u32) {
        self.time(|| self.v.write(off, value))
    }
    fn read_into(&self, offs: &[usize], out: &mut [u32]) {
        self.v.read_into(offs, out)
    }
}

trait MapUnmap {
    fn pair(&mut self);
}

impl<P: Platform, I: Invalidator> MapUnmap for Mapper<P, IovaTree<Vec<Node>>, I, Fixed<1024, 64>> {
    fn pair(&mut self) {
        let iova = self.map(BUFFER, PAGE_SIZE, Perm::READ_WRITE).expect("map");
        self.unmap(iova, PAGE_SIZE).expect("unmap");
    }
}

/// Runs [`COUNTED`] pairs and prints the host's work per pair.
fn report<M: MapUnmap>(name: &str, m: &mut M, v: &Vmmu, host: &TheHost, timed: &Timed) {
    let (c0, h0, t0) = (v.counters(), host.invalidations(), timed.ns.load(Ordering::Relaxed));
    let start = Instant::now();
    for _ in 0..COUNTED {
        m.pair();
    }
    let wall = start.elapsed().as_nanos() as u64;
    let (c1, h1, t1) = (v.counters(), host.invalidations(), timed.ns.load(Ordering::Relaxed));
    let per = |a: u64, b: u64| (b - a) as f64 / COUNTED as f64;
    println!(
        "viommu_map_unmap/{name}: per pair {:.0} ns guest-visible, {:.0} ns host emulation, \
         {:.1} register accesses emulated, {:.1} guest invalidations shadowed, \
         {:.1} host invalidations, {:.1} pins",
        wall as f64 / COUNTED as f64,
        per(t0, t1),
        per(c0.register_accesses, c1.register_accesses),
        per(c0.invalidations_shadowed, c1.invalidations_shadowed),
        per(h0, h1),
        per(c0.pins, c1.pins),
    );
}

/// A KVM vCPU whose guest code stores to an MMIO address in a loop: each
/// `KVM_RUN` is one VM entry and one MMIO exit, the cost a trapped register
/// access pays before it is emulated.
struct VmExit {
    vcpu: std::cell::RefCell<kvm_ioctls::VcpuFd>,
    _vm: kvm_ioctls::VmFd,
    _code: &'static mut [u8],
}

impl VmExit {
    /// `None` without a usable /dev/kvm.
    fn new() -> Option<Self> {
        use kvm_bindings::kvm_userspace_memory_region;
        let kvm = kvm_ioctls::Kvm::new().ok()?;
        let vm = kvm.create_vm().ok()?;
        let layout = std::alloc::Layout::from_size_align(0x1000, 0x1000).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: `ptr` is a fresh, zeroed, 4 KiB allocation, leaked (never
        // freed) so the VM may use it for the program's lifetime.
        let code: &'static mut [u8] = unsafe { std::slice::from_raw_parts_mut(ptr, 0x1000) };
        // Real mode at 0x1000: `movb $0, (0x8000)` (an MMIO exit: no memory
        // there), then `jmp` back to it.
        code[..7].copy_from_slice(&[0xc6, 0x06, 0x00, 0x80, 0x00, 0xeb, 0xf9]);
        let region = kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: 0x1000,
            memory_size: 0x1000,
            userspace_addr: code.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region is a valid, leaked allocation of its size.
        unsafe { vm.set_user_memory_region(region).ok()? };
        let vcpu = vm.create_vcpu(0).ok()?;
        let mut sregs = vcpu.get_sregs().ok()?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu.set_sregs(&sregs).ok()?;
        let mut regs = vcpu.get_regs().ok()?;
        regs.rip = 0x1000;
        regs.rflags = 2;
        vcpu.set_regs(&regs).ok()?;
        let exit = VmExit { vcpu: std::cell::RefCell::new(vcpu), _vm: vm, _code: code };
        exit.round_trip().then_some(exit)
    }

    /// One VM entry and MMIO exit; `false` if the exit was not the store.
    fn round_trip(&self) -> bool {
        let mut vcpu = self.vcpu.borrow_mut();
        matches!(vcpu.run(), Ok(kvm_ioctls::VcpuExit::MmioWrite(0x8000, _)))
    }
}

/// Trap-and-emulate with a real VM exit per register access.
struct KvmTrap {
    exit: VmExit,
    timed: &'static Timed,
}

/// A 64-bit access (the driver's IQT write) is one store, one exit.
impl Mmio for &KvmTrap {
    fn read32(&self, off: usize) -> u32 {
        self.exit.round_trip();
        self.timed.time(|| self.timed.v.read_register(off))
    }
    fn write32(&mut self, off: usize, value: u32) {
        self.exit.round_trip();
        self.timed.time(|| self.timed.v.write_register(off, value))
    }
    fn read64(&self, off: usize) -> u64 {
        self.exit.round_trip();
        self.timed.time(|| self.timed.v.read_register64(off))
    }
    fn write64(&mut self, off: usize, value: u64) {
        self.exit.round_trip();
        self.timed.time(|| self.timed.v.write_register64(off, value))
    }
}

/// Emptied last-level tables the `*_kept_tables` drivers keep linked, as
/// Linux's driver does (it frees a table only when an unmap covers all of
/// it): the unmap of the only page in a table clears one leaf, and the
/// next map writes one, where the default driver detaches the table and
/// the next map zeroes a new one (a third of `bare_metal`'s time).
const KEPT_TABLES: usize = 8;

type BareMapper =
    Mapper<viommu_examples::Platform<NoClock>, IovaTree<Vec<Node>>, Inv, Fixed<1024, 64>>;

/// Bare metal: the same driver on the host's unit, keeping up to `kept`
/// emptied last-level tables.
fn bare_metal(kept: usize) -> BareMapper {
    let mut bed = Testbed::new(EmuConfig::qemu());
    bed.table.keep_empty_tables(kept);
    single_use_strict(bed.platform(NoClock), bed.table, bed.inv, DOMAIN)
}

fn viommu_map_unmap(c: &mut Criterion) {
    let mut group = c.benchmark_group("viommu_map_unmap");

    let mut native = bare_metal(0);
    group.bench_function("bare_metal", |b| b.iter(|| native.pair()));

    // Trap-and-emulate: the guest's register accesses call the vIOMMU.
    // Measured without the timing wrapper (two clock reads per access);
    // the host time is counted in a separate run of the same guest.
    let (v, _host) = host_and_viommu();
    let mut trap = guest(v, v);
    group.bench_function("trap", |b| b.iter(|| trap.pair()));
    // The two again with drivers that keep their emptied tables, as
    // Linux's does: the emulation's cost against a cheaper native path.
    let mut native = bare_metal(KEPT_TABLES);
    group.bench_function("bare_metal_kept_tables", |b| b.iter(|| native.pair()));
    let (v, _host) = host_and_viommu();
    let mut trap = guest_keeping(v, v, KEPT_TABLES);
    group.bench_function("trap_kept_tables", |b| b.iter(|| trap.pair()));
    let (v, host) = host_and_viommu();
    let timed: &'static Timed = leak(Timed { v, ns: AtomicU64::new(0) });
    report("trap", &mut guest(v, timed), v, &host, timed);

    // Trap-and-emulate with real VM exits.
    match VmExit::new() {
        Some(exit) => {
            let start = Instant::now();
            for _ in 0..COUNTED {
                exit.round_trip();
            }
            let ns = start.elapsed().as_nanos() as f64 / COUNTED as f64;
            println!("viommu_map_unmap: one KVM MMIO exit round trip {ns:.0} ns");
            let (v, host) = host_and_viommu();
            let timed: &'static Timed = leak(Timed { v, ns: AtomicU64::new(0) });
            let kvm: &'static KvmTrap = leak(KvmTrap { exit, timed });
            let mut trap_kvm = guest(v, kvm);
            group.bench_function("trap_kvm", |b| b.iter(|| trap_kvm.pair()));
            report("trap_kvm", &mut trap_kvm, v, &host, timed);
        }
        None => println!("viommu_map_unmap/trap_kvm: skipped, no usable /dev/kvm"),
    }

    // Sidecore: a second thread serves the shared page; measured with the
    // vIOMMU itself behind the page, the host time counted in a separate
    // run through the timing wrapper.
    let (v, _) = host_and_viommu();
    with_sidecore(v, v, |side| {
        group.bench_function("sidecore", |b| b.iter(|| side.pair()));
    });
    let (v, host) = host_and_viommu();
    let timed: &'static Timed = leak(Timed { v, ns: AtomicU64::new(0) });
    with_sidecore(v, timed, |side| report("sidecore", side, v, &host, timed));

    // The polling handshake alone: what any sidecore adds to `trap`.
    let floor = Handshake::default();
    floor.serve(|guest| {
        group.bench_function("handshake", |b| b.iter(|| guest.pair()));
    });
    group.finish();
}

/// A word alone in its cache line (the guest's and the poller's words must
/// not share one, or every store would move both).
#[derive(Default)]
#[repr(align(128))]
struct Line(AtomicU64);

/// The polling handshake with nothing emulated: the guest stores a tail, a
/// thread polling it on the other core stores it back as the status the
/// guest polls. A pair is two of them, as a strict map+unmap pair is two
/// queued invalidations (a caching-mode map's and the unmap's), each a tail
/// write and a wait for its status: the least a sidecore adds to `trap`
/// on this machine, two cross-core round trips, with no descriptor, table
/// or register page to fetch.
#[derive(Default)]
struct Handshake {
    tail: Line,
    status: Line,
}

/// The guest's side of [`Handshake`].
struct HandshakeGuest<'a> {
    shake: &'a Handshake,
    tail: u64,
}

impl Handshake {
    /// Runs `f` with the guest's side while a second thread polls.
    fn serve(&self, f: impl FnOnce(&mut HandshakeGuest<'_>)) {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut seen = 0;
                while !stop.load(Ordering::Acquire) {
                    let tail = self.tail.0.load(Ordering::Acquire);
                    if tail != seen {
                        seen = tail;
                        self.status.0.store(tail, Ordering::Release);
                    } else {
                        std::hint::spin_loop();
                    }
                }
            });
            f(&mut HandshakeGuest { shake: self, tail: 0 });
            stop.store(true, Ordering::Release);
        });
    }
}

impl HandshakeGuest<'_> {
    /// One tail write and the wait for its status.
    fn invalidate(&mut self) {
        self.tail += 1;
        self.shake.tail.0.store(self.tail, Ordering::Release);
        while self.shake.status.0.load(Ordering::Acquire) != self.tail {
            std::hint::spin_loop();
        }
    }
}

impl MapUnmap for HandshakeGuest<'_> {
    fn pair(&mut self) {
        self.invalidate();
        self.invalidate();
    }
}

/// Runs `f` with a guest of `v` whose register page a sidecore thread
/// serves, forwarding to `regs`.
fn with_sidecore<R: Registers + Sync>(
    v: &'static Vmmu,
    regs: &'static R,
    f: impl FnOnce(&mut GuestMapper<SidecoreMmio<'static, RegisterPage, R>>),
) {
    let page: &'static RegisterPage = leak(RegisterPage::new());
    let cfg = v.unit().config();
    let mut sidecore = Sidecore::new(page, regs, &cfg);
    let stop = AtomicBool::new(false);
    // The sidecore spins on a dedicated core; where cores are shared (as on
    // a CI machine), `VIOMMU_SIDECORE_YIELD=1` makes it yield when idle.
    let yield_idle = std::env::var_os("VIOMMU_SIDECORE_YIELD").is_some();
    std::thread::scope(|s| {
        s.spawn(|| {
            if yield_idle {
                sidecore.run_with(regs, &stop, std::thread::yield_now)
            } else {
                sidecore.run(regs, &stop)
            }
        });
        f(&mut guest(v, SidecoreMmio::new(page, regs, &cfg)));
        stop.store(true, Ordering::Release);
    });
}

criterion_group!(benches, viommu_map_unmap, nested_map_unmap);
criterion_main!(benches);

type NestedBackend = viommu::nested::NativeNested<Mem, Frames, HostInv, GuestPinner>;
type NestedVmmu = viommu::nested::NestedViommu<GMem, NestedBackend>;

/// A host in scalable mode with nesting and a nested vIOMMU whose guest
/// has the RAM's first 16 MiB (all of it pinned and mapped in the host's
/// second stage at once).
fn host_and_nested() -> &'static NestedVmmu {
    use viommu::nested::{NativeNested, NestedConfig, NestedHost, NestedViommu};
    use vtd_regs::regs::rtaddr::TranslationTableMode;
    let (mem, frames, emu) = host_unit(EmuConfig::scalable());
    let unit = RemappingUnit::new(emu).expect("unit");
    let tables = TableConfig::from_cap(unit.cap(), 39).expect("39-bit");
    let qs = QueueSize::from_order(0).expect("1 page");
    let mut inv = QueuedInvalidator::new(unit, mem, frames, qs).map_err(|r| r.error).expect("QI");
    let contexts = vtd_tables::ScalableContextManager::new(mem, frames).expect("frames");
    inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).expect("SRTP");
    inv.unit().enable_translation().expect("TE");
    let host = Arc::new(NestedHost::new(mem, frames, contexts, inv, tables, DOMAIN));
    let layout = GuestLayout::new(PhysAddr::ZERO, GUEST_RAM);
    let ram = [PhysAddr::ZERO..PhysAddr::new(GUEST_RAM)];
    let backend = NativeNested::new(host, GuestPinner::new(layout), ram).expect("all guest RAM");
    let dev = Assignment { guest: DEVICE, host: DEVICE };
    let gmem = GuestMemory::new(mem, layout);
    leak(NestedViommu::new(gmem, backend, &[dev], NestedConfig::new()).expect("vIOMMU"))
}

/// The guest's driver over `mmio`, on a scalable-mode unit: RID_PASID's
/// entry first-stage over the mapper's table.
fn nested_guest<X: Mmio>(v: &'static NestedVmmu, mmio: X) -> GuestMapper<X> {
    use invalidation::{Invalidation, Invalidator};
    use vtd_regs::desc::Pasid;
    use vtd_regs::regs::rtaddr::TranslationTableMode;
    use vtd_tables::{PasidAttachment, PasidTable, ScalableContextManager};
    let (mem, frames, unit) = guest_platform(v.unit().memory(), mmio);
    let qs = QueueSize::from_order(0).expect("1 page");
    let mut inv = QueuedInvalidator::new(unit, mem, frames, qs).map_err(|r| r.error).expect("QI");
    let cfg = TableConfig::first_stage(false, true, 39, true).expect("first stage");
    let table = SlPageTable::new(mem, frames, cfg).expect("frames");
    let mut pasids = PasidTable::new(mem, frames).expect("frames");
    let domain = DomainId::new(1);
    let _ = pasids.set(Pasid::default(), PasidAttachment::table(domain, &table)).expect("entry");
    let mut contexts = ScalableContextManager::new(mem, frames).expect("frames");
    let change = contexts.attach(DEVICE, &pasids, Pasid::default(), true).expect("attach");
    inv.unit().set_root_table(contexts.root_table(), TranslationTableMode::Scalable).expect("SRTP");
    inv.invalidate(Invalidation::scalable_context_changed(change.sid)).expect("invalidate");
    inv.unit().enable_translation().expect("TE");
    // The unit walks the guest's tables for as long as the bench runs.
    let _ = leak((contexts, pasids));
    single_use_strict((mem, frames, NoClock), table, inv, domain)
}

/// Trap-and-emulate of the nested vIOMMU with a real VM exit per register
/// access.
struct NestedKvmTrap {
    exit: VmExit,
    v: &'static NestedVmmu,
}

impl Mmio for &NestedKvmTrap {
    fn read32(&self, off: usize) -> u32 {
        self.exit.round_trip();
        self.v.read_register(off)
    }
    fn write32(&mut self, off: usize, value: u32) {
        self.exit.round_trip();
        self.v.write_register(off, value)
    }
    fn read64(&self, off: usize) -> u64 {
        self.exit.round_trip();
        self.v.read_register64(off)
    }
    fn write64(&mut self, off: usize, value: u64) {
        self.exit.round_trip();
        self.v.write_register64(off, value)
    }
}

/// Runs [`COUNTED`] pairs and prints the nested vIOMMU's work per pair.
fn report_nested<M: MapUnmap>(name: &str, m: &mut M, v: &NestedVmmu) {
    let c0 = v.counters();
    let start = Instant::now();
    for _ in 0..COUNTED {
        m.pair();
    }
    let wall = start.elapsed().as_nanos() as u64;
    let c1 = v.counters();
    let per = |a: u64, b: u64| (b - a) as f64 / COUNTED as f64;
    let pinned = v.with_backend(|b| viommu::nested::NestedIommu::pinned_pages(b));
    println!(
        "viommu_map_unmap/{name}: per pair {:.0} ns guest-visible, \
         {:.1} register accesses emulated (exits under trap-and-emulate), \
         {:.1} invalidations forwarded, 0 pins per pair, {pinned} pages pinned (all guest RAM)",
        wall as f64 / COUNTED as f64,
        per(c0.register_accesses, c1.register_accesses),
        per(c0.forwarded, c1.forwarded),
    );
}

fn nested_map_unmap(c: &mut Criterion) {
    let mut group = c.benchmark_group("viommu_map_unmap");
    match VmExit::new() {
        Some(exit) => {
            let v = host_and_nested();
            let kvm: &'static NestedKvmTrap = leak(NestedKvmTrap { exit, v });
            let mut trap = nested_guest(v, kvm);
            group.bench_function("nested_trap_kvm", |b| b.iter(|| trap.pair()));
            report_nested("nested_trap_kvm", &mut trap, v);
        }
        None => println!("viommu_map_unmap/nested_trap_kvm: skipped, no usable /dev/kvm"),
    }
    let v = host_and_nested();
    with_nested_sidecore(v, |side| {
        group.bench_function("nested_sidecore", |b| b.iter(|| side.pair()));
        report_nested("nested_sidecore", side, v);
    });
    group.finish();
}

/// Runs `f` with a guest of the nested `v` whose register page a sidecore
/// thread serves.
fn with_nested_sidecore(
    v: &'static NestedVmmu,
    f: impl FnOnce(&mut GuestMapper<SidecoreMmio<'static, RegisterPage, NestedVmmu>>),
) {
    let page: &'static RegisterPage = leak(RegisterPage::new());
    let cfg = v.unit().config();
    let mut sidecore = Sidecore::new(page, v, &cfg);
    let stop = AtomicBool::new(false);
    let yield_idle = std::env::var_os("VIOMMU_SIDECORE_YIELD").is_some();
    std::thread::scope(|s| {
        s.spawn(|| {
            if yield_idle {
                sidecore.run_with(v, &stop, std::thread::yield_now)
            } else {
                sidecore.run(v, &stop)
            }
        });
        f(&mut nested_guest(v, SidecoreMmio::new(page, v, &cfg)));
        stop.store(true, Ordering::Release);
    });
}
