//! One evaluation run: the driver's receive loop under one mapping policy
//! and one front end, with what the VMM and the device saw.

use std::{
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use viommu::ViommuCounters;
use viommu_eval_driver::{
    Driver, DriverMapper, Params, Policy, Report, bringup,
    layout::{self, NIC},
    nic_loop,
    params::REPORT_WORDS,
    tsc::{self, rdtsc, spin_cycles},
};
use vtd_emu::{Access, EmuConfig, Emulator, mem::HeapMemory};
use vtd_regs::{Iova, Mmio, PhysAddr, PhysMem, PollBudget};

use crate::{
    abi,
    frontend::Frontend,
    guest_viommu::{self, Rig, Vmmu},
    memory::GuestRam,
    nic::{self, NicCounters},
    probe::GUEST,
    sidecore::{Polled, Poller, SidecoreStats},
    stats::Summary,
    vm::{ExitHandler, Vm, VmConfig},
};

/// Status reads a wait may take (the guest uses the same).
const BUDGET: PollBudget = PollBudget::new(1 << 30);
/// Longest a KVM run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What every run of an evaluation shares.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Buffers per run.
    pub buffers: u64,
    /// Buffers per doorbell.
    pub batch: u64,
    /// Optimistic teardown quota.
    pub quota: u64,
    /// Optimistic teardown time limit, microseconds.
    pub time_limit_us: u64,
    /// Protocol work per buffer, TSC cycles.
    pub work_cycles: u64,
    /// TSC frequency, kHz.
    pub tsc_khz: u64,
    /// Cycles charged per register access by the modelled front end.
    pub modelled_exit_cycles: u64,
}

impl Settings {
    /// The driver's parameters for `policy`.
    #[must_use]
    pub fn params(&self, policy: Policy) -> Params {
        Params {
            policy,
            buffers: self.buffers,
            batch: self.batch,
            quota: self.quota,
            time_limit_us: self.time_limit_us,
            work_cycles: self.work_cycles,
            tsc_khz: self.tsc_khz,
        }
    }
}

/// The result of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    /// Front end.
    pub frontend: Frontend,
    /// Policy.
    pub policy: Policy,
    /// What the driver measured.
    pub report: Report,
    /// Register accesses that reached the VMM (exits) or were charged
    /// (modelled) during the receive loop.
    pub exits: u64,
    /// What the device did.
    pub nic: NicCounters,
    /// The sidecore's work, for sidecore runs.
    pub sidecore: Option<SidecoreStats>,
    /// Pins and unpins of guest pages by the vIOMMU during the receive
    /// loop, for runs on a vIOMMU.
    pub pins: Option<PinCounts>,
    /// TSC cycles the VMM spent serving register exits (the vIOMMU's
    /// emulation and shadowing, not the exit itself) during the receive
    /// loop, for trap-and-emulate runs in a VM.
    pub vmm_cycles: Option<u64>,
    /// Wall time of the run, setup included.
    pub wall: Duration,
    /// Per-buffer statistics from the driver's samples.
    pub samples: BufferStats,
}

/// Guest pages the vIOMMU pinned and unpinned (its `GuestPinner`'s work,
/// as `viommu::ViommuCounters` counts it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinCounts {
    /// Pins taken.
    pub pins: u64,
    /// Pins dropped (each after the physical unit's invalidation).
    pub unpins: u64,
}

impl PinCounts {
    fn of(c: ViommuCounters) -> Self {
        Self { pins: c.pins, unpins: c.unpins }
    }

    fn since(self, start: Self) -> Self {
        Self {
            pins: self.pins.saturating_sub(start.pins),
            unpins: self.unpins.saturating_sub(start.unpins),
        }
    }
}

/// Statistics of the per-buffer samples the driver leaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct BufferStats {
    /// Median cycles of one map and of one unmap.
    pub median: (u64, u64),
    /// Mean cycles per buffer (map + completion to end of unmap) over the
    /// buffers not taken as preempted.
    pub cycles_per_buffer: f64,
    /// Buffers whose cycles exceeded [`PREEMPTED_CYCLES`] and were dropped
    /// from `cycles_per_buffer`.
    pub preempted: u64,
}

/// A buffer that took longer than this many TSC cycles (385 us at 2.6 GHz)
/// is taken as preempted: longer than any batched flush or reclaim these
/// runs do (a few exits, under 300,000 cycles), shorter than a scheduler
/// time slice. The host's CPUs are shared, so the vCPU (or the sidecore)
/// loses the CPU now and then; those buffers would measure the scheduler.
pub const PREEMPTED_CYCLES: u64 = 1_000_000;

impl RunResult {
    fn per_buffer(&self, x: u64) -> f64 {
        x as f64 / self.report.buffers.max(1) as f64
    }
    /// Median cycles per map.
    #[must_use]
    pub fn map_median(&self) -> u64 {
        self.samples.median.0
    }
    /// Median cycles per unmap.
    #[must_use]
    pub fn unmap_median(&self) -> u64 {
        self.samples.median.1
    }
    /// Mean cycles per map.
    #[must_use]
    pub fn map_cycles(&self) -> f64 {
        self.per_buffer(self.report.map_cycles)
    }
    /// Mean cycles per unmap.
    #[must_use]
    pub fn unmap_cycles(&self) -> f64 {
        self.per_buffer(self.report.unmap_cycles)
    }
    /// Mean driver cycles per buffer, preempted buffers dropped (see
    /// [`PREEMPTED_CYCLES`]).
    #[must_use]
    pub fn cycles_per_buffer(&self) -> f64 {
        self.samples.cycles_per_buffer
    }
    /// Mean loop cycles per buffer, doorbells excluded, preemption included.
    #[must_use]
    pub fn loop_cycles_per_buffer(&self) -> f64 {
        self.per_buffer(self.report.loop_cycles)
    }
    /// VMM cycles per register exit serving it (trap & emulate in a VM).
    #[must_use]
    pub fn vmm_cycles_per_exit(&self) -> Option<f64> {
        self.vmm_cycles.map(|c| c as f64 / self.exits.max(1) as f64)
    }
    /// Exits (or charged accesses) per buffer.
    #[must_use]
    pub fn exits_per_buffer(&self) -> f64 {
        self.per_buffer(self.exits)
    }
    /// IQT writes per buffer.
    #[must_use]
    pub fn iqt_per_buffer(&self) -> f64 {
        self.per_buffer(self.report.iqt_writes)
    }
    /// Guest pages pinned and unpinned by the vIOMMU per buffer, for runs
    /// on a vIOMMU.
    #[must_use]
    pub fn pins_per_buffer(&self) -> Option<(f64, f64)> {
        self.pins.map(|p| (self.per_buffer(p.pins), self.per_buffer(p.unpins)))
    }
}

/// Statistics of the per-buffer samples the driver left.
fn buffer_stats<M: PhysMem>(mem: &M, buffers: u64) -> Result<BufferStats, String> {
    let n = buffers.min(layout::MAX_SAMPLES);
    let (mut map, mut unmap) = (Vec::new(), Vec::new());
    let (mut kept, mut sum, mut preempted) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let at = |w: u64| PhysAddr::new(layout::SAMPLES + i * layout::SAMPLE_BYTES + w * 8);
        let read = |w| mem.read_u64(at(w)).map_err(|e| e.to_string());
        let (m, u, rest) = (read(0)?, read(1)?, read(2)?);
        map.push(m);
        unmap.push(u);
        let total = m.saturating_add(rest);
        if total > PREEMPTED_CYCLES {
            preempted += 1;
        } else {
            kept += 1;
            sum += total;
        }
    }
    Ok(BufferStats {
        median: (Summary::of(&map).median, Summary::of(&unmap).median),
        cycles_per_buffer: sum as f64 / kept.max(1) as f64,
        preempted,
    })
}

fn check(report: Report, nic: &NicCounters, settings: &Settings) -> Result<Report, String> {
    if report.error != 0 {
        let what = match report.error {
            1 => "remapping unit",
            2 => "tables",
            3 => {
                "invalidation (detail: 1 queue full, 2 timeout, 3 unsupported, 4 out of frames, 5 memory, 6 unit, 7 descriptor, 8 queue error)"
            }
            4 => "queue setup",
            5 => "mapping",
            6 => "memory",
            7 => "device did not complete (detail: buffer)",
            8 => "wrong data (detail: buffer)",
            _ => "unknown",
        };
        return Err(format!(
            "driver error {} [{what}], detail {} (device: {nic:?})",
            report.error, report.error_seq
        ));
    }
    if report.buffers != settings.buffers || nic.frames != settings.buffers {
        return Err(format!(
            "received {} of {} buffers (device wrote {})",
            report.buffers, settings.buffers, nic.frames
        ));
    }
    Ok(report)
}

/// Register access charged a modelled exit cost: the in-process stand-in
/// for a trapped access where KVM is missing. 64-bit accesses are one
/// exit, as the guest's `VolatileMmio` makes them.
struct ChargedMmio<'a, R> {
    inner: R,
    cost: u64,
    exits: &'a Cell<u64>,
}

impl<R: Mmio> ChargedMmio<'_, R> {
    fn charge(&self) {
        self.exits.set(self.exits.get() + 1);
        spin_cycles(self.cost);
    }
}

impl<R: Mmio> Mmio for ChargedMmio<'_, R> {
    fn read32(&self, offset: usize) -> u32 {
        self.charge();
        self.inner.read32(offset)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.charge();
        self.inner.write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.charge();
        self.inner.read64(offset)
    }
    fn write64(&mut self, offset: usize, value: u64) {
        self.charge();
        self.inner.write64(offset, value);
    }
}

fn emu_config(frontend: Frontend) -> EmuConfig {
    EmuConfig::qemu().with_caching_mode(frontend.virtual_unit())
}

/// Register access to a page of shared memory (the in-process sidecore's
/// register page), by atomic 32-bit accesses. A 64-bit write stores the
/// high half first, so that a poller that sees the low half (IQT's tail)
/// change sees the whole value.
struct SharedPageMmio<'a> {
    words: &'a [AtomicU32],
}

impl Mmio for SharedPageMmio<'_> {
    fn read32(&self, offset: usize) -> u32 {
        self.words.get(offset / 4).map_or(u32::MAX, |w| w.load(Ordering::Acquire))
    }
    fn write32(&mut self, offset: usize, value: u32) {
        if let Some(w) = self.words.get(offset / 4) {
            w.store(value, Ordering::Release);
        }
    }
    fn write64(&mut self, offset: usize, value: u64) {
        self.write32(offset + 4, (value >> 32) as u32);
        self.write32(offset, value as u32);
    }
}

/// The poller for the vIOMMU's registers on `page`.
fn poller<'p, 'r, 'a, R: PhysMem>(
    page: &'p GuestRam,
    rig: Rig<'r, 'a, R>,
) -> Result<Poller<'p, Polled<'r, Vmmu<'a, R>>>, String> {
    let unit = rig.viommu.unit().config();
    let (cap, ecap) = (unit.cap, unit.ecap);
    let fro = cap.fro().byte_offset();
    let records = fro..fro + 16 * usize::from(cap.nfr().count());
    Poller::new(page, Polled(rig.viommu), ecap.iro().iotlb(), records).map_err(|e| e.to_string())
}

/// Runs the driver in this process: bare metal (the native driver on the
/// software unit), or, where KVM is missing, on a vIOMMU with every
/// register access charged `settings.modelled_exit_cycles`
/// ([`Frontend::ModelledTrap`]) or through a register page a polling
/// thread serves ([`Frontend::SidecoreNoVm`]).
pub fn run_in_process(
    settings: &Settings,
    policy: Policy,
    frontend: Frontend,
) -> Result<RunResult, String> {
    // The driver keeps its tables, IOVA tree and mapper inline (no heap, as
    // in the guest): tens of KiB per value, which an unoptimised build
    // copies between stack frames. A thread with a large stack runs it the
    // same way in every profile.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("bare-metal driver".into())
            .stack_size(DRIVER_STACK)
            .spawn_scoped(scope, || run_on_this_thread(settings, policy, frontend))
            .map_err(|e| e.to_string())?
            .join()
            .map_err(|_| "the in-process driver panicked".to_string())?
    })
}

/// Stack of the in-process driver thread.
const DRIVER_STACK: usize = 64 << 20;

/// [`run_in_process`] on the calling thread.
fn run_on_this_thread(
    settings: &Settings,
    policy: Policy,
    frontend: Frontend,
) -> Result<RunResult, String> {
    match frontend {
        Frontend::SidecoreNoVm => return run_sidecore_in_process(settings, policy),
        Frontend::ModelledTrap => return run_modelled_trap(settings, policy),
        _ => {}
    }
    let started = Instant::now();
    let heap = simulated_ram()?;
    let mem = &heap;
    let emu: Emulator<_> = Emulator::new(mem, emu_config(frontend)).map_err(|e| e.to_string())?;
    let params = settings.params(policy);
    let mut nic = NicCounters::default();
    let translate = |iova| emu.translate(NIC, iova, Access::Write).ok();
    let kick = |n| nic::receive(&mem, &mem, n, &mut nic, translate);
    let mut report = Report::default();
    drive(&emu, mem, settings, &params, &mut report, kick, || (0, PinCounts::default()))?;
    let report = check(report, &nic, settings)?;
    // Bare metal: register accesses are function calls, not exits.
    let exits = 0;
    let samples = buffer_stats(&mem, report.buffers)?;
    Ok(RunResult {
        frontend,
        policy,
        report,
        exits,
        nic,
        sidecore: None,
        pins: None,
        vmm_cycles: None,
        wall: started.elapsed(),
        samples,
    })
}

/// Simulated RAM for an in-process run, laid out and warmed up as the
/// guest's.
fn simulated_ram() -> Result<HeapMemory, String> {
    let heap = HeapMemory::new(layout::RAM_SIZE as usize);
    layout::warm_up(&&heap).map_err(|e| e.to_string())?;
    Ok(heap)
}

/// The driver's receive loop in-process, with registers `regs`: without an
/// IOMMU under policy *none*, else on the unit brought up through `regs`.
/// `snapshot` reads (exits, pins) so that what the receive loop alone cost
/// comes back (zero without an IOMMU).
fn drive<R: Mmio>(
    regs: R,
    mem: &HeapMemory,
    settings: &Settings,
    params: &Params,
    report: &mut Report,
    kick: impl FnMut(u64),
    snapshot: impl Fn() -> (u64, PinCounts),
) -> Result<(u64, PinCounts), String> {
    let driver_error = |e| format!("driver: {e}");
    let Some(config) = params.mapper_config() else {
        let none: Option<&mut DriverMapper<'_, R, &HeapMemory>> = None;
        nic_loop::run(none, mem, params, report, kick).map_err(driver_error)?;
        return Ok((0, PinCounts::default()));
    };
    let frames = bringup::frames();
    let clock = tsc::clock(settings.tsc_khz);
    let mut driver = Driver::bring_up(regs, mem, &frames, BUDGET, config, clock)
        .map_err(|e| format!("bring-up: {e}"))?;
    let (exits, pins) = snapshot();
    nic_loop::run(Some(&mut driver.mapper), mem, params, report, kick).map_err(driver_error)?;
    let (exits_after, pins_after) = snapshot();
    Ok((exits_after - exits, pins_after.since(pins)))
}

/// The NIC's DMA on a vIOMMU: through the physical unit, or (policy
/// *none*) at the host address of the guest-physical one.
fn vmmu_dma<R: PhysMem>(rig: Rig<'_, '_, R>, policy: Policy) -> impl Fn(Iova) -> Option<PhysAddr> {
    move |iova| if policy == Policy::NoIommu { rig.untranslated(iova) } else { rig.dma(iova) }
}

/// The in-process stand-in for trap & emulate: the driver on a vIOMMU, as in
/// the guest, with every register access charged
/// `settings.modelled_exit_cycles`.
fn run_modelled_trap(settings: &Settings, policy: Policy) -> Result<RunResult, String> {
    let started = Instant::now();
    let frontend = Frontend::ModelledTrap;
    let heap = simulated_ram()?;
    let mem = &heap;
    let params = settings.params(policy);
    let (report, nic, exits, pins) = guest_viommu::with_viommu(mem, layout::RAM_SIZE, |rig| {
        let mut nic = NicCounters::default();
        let dma = vmmu_dma(rig, policy);
        let kick = |n| nic::receive(&mem, rig.mem, n, &mut nic, &dma);
        let exits = Cell::new(0);
        let regs =
            ChargedMmio { inner: rig.viommu, cost: settings.modelled_exit_cycles, exits: &exits };
        let mut report = Report::default();
        let snapshot = || (exits.get(), PinCounts::of(rig.viommu.counters()));
        let (loop_exits, pins) = drive(regs, mem, settings, &params, &mut report, kick, snapshot)?;
        Ok::<_, String>((report, nic, loop_exits, pins))
    })??;
    let report = check(report, &nic, settings)?;
    let samples = buffer_stats(&mem, report.buffers)?;
    Ok(RunResult {
        frontend,
        policy,
        report,
        exits,
        nic,
        sidecore: None,
        pins: Some(pins),
        vmm_cycles: None,
        wall: started.elapsed(),
        samples,
    })
}

/// The in-process stand-in for the sidecore: the driver's register page is
/// shared memory the same poller serves, forwarding to a vIOMMU as in the
/// guest.
fn run_sidecore_in_process(settings: &Settings, policy: Policy) -> Result<RunResult, String> {
    let started = Instant::now();
    let frontend = Frontend::SidecoreNoVm;
    let heap = simulated_ram()?;
    let mem = &heap;
    let page = GuestRam::new(0x1000).map_err(|e| e.to_string())?;
    let words = page.atomic_words().map_err(|e| e.to_string())?;
    let params = settings.params(policy);
    let (report, nic, pins, stats) = guest_viommu::with_viommu(mem, layout::RAM_SIZE, |rig| {
        let mut poller = poller(&page, rig)?;
        let mut nic = NicCounters::default();
        let mut report = Report::default();
        let stop = AtomicBool::new(false);
        let (result, stats) = std::thread::scope(|s| {
            let polling = s.spawn(|| {
                poller.run(&stop);
                poller.stats
            });
            let dma = vmmu_dma(rig, policy);
            let kick = |n| nic::receive(&mem, rig.mem, n, &mut nic, &dma);
            let snapshot = || (0, PinCounts::of(rig.viommu.counters()));
            let regs = SharedPageMmio { words };
            let result = drive(regs, mem, settings, &params, &mut report, kick, snapshot);
            stop.store(true, Ordering::Relaxed);
            (result, polling.join().ok())
        });
        let (_, pins) = result?;
        Ok::<_, String>((report, nic, pins, stats))
    })??;
    let report = check(report, &nic, settings)?;
    let samples = buffer_stats(&mem, report.buffers)?;
    Ok(RunResult {
        frontend,
        policy,
        report,
        exits: 0,
        nic,
        sidecore: stats,
        pins: Some(pins),
        vmm_cycles: None,
        wall: started.elapsed(),
        samples,
    })
}

/// The VMM's side of the guest's exits: the VT-d page goes to the guest's
/// vIOMMU, the NIC doorbell to the device model, whose DMA the physical
/// unit translates.
struct VmmHandler<'r, 'a, R: PhysMem> {
    rig: Rig<'r, 'a, R>,
    ram: &'r GuestRam,
    /// The policy *none*: the NIC is assigned without an IOMMU.
    untranslated: bool,
    nic: NicCounters,
    vtd_exits: u64,
    receive_start: u64,
    receive_exits: u64,
    pins_start: PinCounts,
    pins: PinCounts,
    /// TSC cycles spent serving register exits: in all, at the start of
    /// the receive loop, and during it.
    serve_cycles: u64,
    serve_start: u64,
    receive_serve_cycles: u64,
}

impl<R: PhysMem> ExitHandler for VmmHandler<'_, '_, R> {
    fn vtd_read(&mut self, offset: u64, data: &mut [u8]) {
        self.vtd_exits += 1;
        let t0 = rdtsc();
        let regs = self.rig.viommu;
        match (usize::try_from(offset), data.len()) {
            (Ok(off), 4) => data.copy_from_slice(&regs.read32(off).to_le_bytes()),
            (Ok(off), 8) => data.copy_from_slice(&regs.read64(off).to_le_bytes()),
            _ => data.fill(0xff),
        }
        self.serve_cycles += rdtsc().saturating_sub(t0);
    }

    fn vtd_write(&mut self, offset: u64, data: &[u8]) {
        self.vtd_exits += 1;
        let t0 = rdtsc();
        let mut regs = self.rig.viommu;
        if let Ok(off) = usize::try_from(offset) {
            if let Ok(b) = <[u8; 4]>::try_from(data) {
                regs.write32(off, u32::from_le_bytes(b));
            } else if let Ok(b) = <[u8; 8]>::try_from(data) {
                regs.write64(off, u64::from_le_bytes(b));
            }
        }
        self.serve_cycles += rdtsc().saturating_sub(t0);
    }

    fn nic_kick(&mut self, slots: u64) -> std::io::Result<()> {
        let (rig, untranslated) = (self.rig, self.untranslated);
        nic::receive(&self.ram, rig.mem, slots, &mut self.nic, |iova| {
            if untranslated { rig.untranslated(iova) } else { rig.dma(iova) }
        });
        Ok(())
    }

    fn phase(&mut self, phase: u64) {
        match phase {
            abi::phase::RECEIVE => {
                self.receive_start = self.vtd_exits;
                self.serve_start = self.serve_cycles;
                self.pins_start = PinCounts::of(self.rig.viommu.counters());
            }
            abi::phase::END => {
                self.receive_exits = self.vtd_exits - self.receive_start;
                self.receive_serve_cycles = self.serve_cycles - self.serve_start;
                self.pins = PinCounts::of(self.rig.viommu.counters()).since(self.pins_start);
            }
            _ => {}
        }
    }
}

/// Runs the driver in a KVM guest whose VT-d unit is a vIOMMU shadowing
/// into a physical software unit: trap-and-emulate, or with the register
/// page served by a sidecore thread.
pub fn run_kvm(
    kvm: &kvm_ioctls::Kvm,
    settings: &Settings,
    policy: Policy,
    frontend: Frontend,
) -> Result<RunResult, String> {
    let started = Instant::now();
    let sidecore = frontend == Frontend::Sidecore;
    let config = VmConfig { shared_register_page: sidecore, ..VmConfig::default() };
    let mut vm = Vm::new(kvm, GUEST, config).map_err(|e| format!("VM setup: {e}"))?;
    let params = settings.params(policy);
    vm.configure_eval(&params.to_words()).map_err(|e| e.to_string())?;
    let ram = vm.ram();
    let page = vm.register_page().filter(|_| sidecore);
    let (nic, receive_exits, pins, serve_cycles, side_stats) =
        guest_viommu::with_viommu(&*ram, layout::RAM_SIZE, |rig| {
            let mut handler = VmmHandler {
                rig,
                ram: &ram,
                untranslated: policy == Policy::NoIommu,
                nic: NicCounters::default(),
                vtd_exits: 0,
                receive_start: 0,
                receive_exits: 0,
                pins_start: PinCounts::default(),
                pins: PinCounts::default(),
                serve_cycles: 0,
                serve_start: 0,
                receive_serve_cycles: 0,
            };
            let mut side_stats = None;
            let outcome = match &page {
                Some(page) => {
                    let mut poller = poller(page, rig)?;
                    let stop = AtomicBool::new(false);
                    std::thread::scope(|s| {
                        let poll = s.spawn(|| {
                            poller.run(&stop);
                            poller.stats
                        });
                        let outcome = vm.run_with(RUN_TIMEOUT, &mut handler);
                        stop.store(true, Ordering::Relaxed);
                        side_stats = poll.join().ok();
                        outcome
                    })
                }
                None => vm.run_with(RUN_TIMEOUT, &mut handler),
            };
            outcome.map_err(|e| format!("guest run: {e}"))?;
            let serve = handler.receive_serve_cycles;
            Ok::<_, String>((handler.nic, handler.receive_exits, handler.pins, serve, side_stats))
        })??;
    let mut words = [0u64; REPORT_WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        *w = ram.read_u64(abi::EVAL_REPORT + i as u64 * 8).map_err(|e| e.to_string())?;
    }
    let report = check(Report::from_words(&words), &nic, settings)?;
    Ok(RunResult {
        frontend,
        policy,
        report,
        exits: receive_exits,
        nic,
        sidecore: side_stats,
        pins: Some(pins),
        vmm_cycles: (!sidecore).then_some(serve_cycles),
        wall: started.elapsed(),
        samples: buffer_stats(&*ram, report.buffers)?,
    })
}
