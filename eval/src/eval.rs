//! One evaluation run: the driver's receive loop under one mapping policy
//! and one front end, with what the VMM and the device saw.

use std::{
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use viommu_eval_driver::{
    Driver, DriverMapper, Params, Policy, Report,
    bringup::Frames,
    layout::{self, NIC},
    nic_loop,
    params::REPORT_WORDS,
    tsc::{TscClock, spin_cycles},
};
use vtd_emu::{Access, EmuConfig, Emulator, mem::HeapMemory};
use vtd_regs::{Mmio, PhysAddr, PhysMem, PollBudget};

use crate::{
    abi,
    frontend::Frontend,
    memory::GuestRam,
    nic::{self, NicCounters},
    probe::GUEST,
    sidecore::{Poller, SidecoreStats},
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
    /// Wall time of the run, setup included.
    pub wall: Duration,
    /// Per-buffer statistics from the driver's samples.
    pub samples: BufferStats,
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

/// The poller for `emu`'s registers on `page`.
fn poller<'a, M: PhysMem>(
    page: &'a GuestRam,
    emu: &'a Emulator<M>,
) -> Result<Poller<'a, &'a Emulator<M>>, String> {
    let (cap, ecap) = (emu.config().cap, emu.config().ecap);
    let fro = cap.fro().byte_offset();
    let records = fro..fro + 16 * usize::from(cap.nfr().count());
    Poller::new(page, emu, ecap.iro().iotlb(), records).map_err(|e| e.to_string())
}

/// Runs the driver in this process on the software unit: bare metal, or
/// with every register access charged `settings.modelled_exit_cycles`
/// ([`Frontend::ModelledTrap`]), or through a register page a polling
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
    if frontend == Frontend::SidecoreNoVm {
        return run_sidecore_in_process(settings, policy);
    }
    let started = Instant::now();
    let heap = HeapMemory::new(layout::RAM_SIZE as usize);
    let mem = &heap;
    let frames =
        Frames::new(mem, PhysAddr::new(layout::FRAMES_START), PhysAddr::new(layout::FRAMES_END));
    let emu: Emulator<_> = Emulator::new(mem, emu_config(frontend)).map_err(|e| e.to_string())?;
    layout::warm_up(&mem).map_err(|e| e.to_string())?;
    let params = settings.params(policy);
    let mut nic = NicCounters::default();
    let translate = |iova| emu.translate(NIC, iova, Access::Write).ok();
    let kick = |n| nic::receive(&mem, n, &mut nic, translate);
    let exits = Cell::new(0);
    let cost = match frontend {
        Frontend::ModelledTrap => settings.modelled_exit_cycles,
        _ => 0,
    };
    let regs = ChargedMmio { inner: &emu, cost, exits: &exits };
    let clock = TscClock::new(settings.tsc_khz);
    let mut report = Report::default();
    let (result, loop_exits) = match params.mapper_config() {
        None => {
            let none: Option<&mut DriverMapper<'_, &Emulator<&HeapMemory>, &HeapMemory>> = None;
            (nic_loop::run(none, mem, &params, &mut report, kick), 0)
        }
        Some(config) => {
            let mut driver = Driver::bring_up(regs, mem, &frames, BUDGET, config, clock)
                .map_err(|e| format!("bring-up: {e}"))?;
            let before = exits.get();
            let r = nic_loop::run(Some(&mut driver.mapper), mem, &params, &mut report, kick);
            (r, exits.get() - before)
        }
    };
    result.map_err(|e| format!("driver: {e}"))?;
    let report = check(report, &nic, settings)?;
    let exits = if frontend == Frontend::ModelledTrap { loop_exits } else { 0 };
    let samples = buffer_stats(&mem, report.buffers)?;
    Ok(RunResult {
        frontend,
        policy,
        report,
        exits,
        nic,
        sidecore: None,
        wall: started.elapsed(),
        samples,
    })
}

fn run_sidecore_in_process(settings: &Settings, policy: Policy) -> Result<RunResult, String> {
    let started = Instant::now();
    let frontend = Frontend::SidecoreNoVm;
    let heap = HeapMemory::new(layout::RAM_SIZE as usize);
    let mem = &heap;
    let frames =
        Frames::new(mem, PhysAddr::new(layout::FRAMES_START), PhysAddr::new(layout::FRAMES_END));
    let emu: Emulator<_> = Emulator::new(mem, emu_config(frontend)).map_err(|e| e.to_string())?;
    layout::warm_up(&mem).map_err(|e| e.to_string())?;
    let page = GuestRam::new(0x1000).map_err(|e| e.to_string())?;
    let words = page.atomic_words().map_err(|e| e.to_string())?;
    let mut poller = poller(&page, &emu)?;
    let params = settings.params(policy);
    let mut nic = NicCounters::default();
    let mut report = Report::default();
    let stop = AtomicBool::new(false);
    let (result, stats) = std::thread::scope(|s| {
        let polling = s.spawn(|| {
            poller.run(&stop);
            poller.stats
        });
        let translate = |iova| emu.translate(NIC, iova, Access::Write).ok();
        let kick = |n| nic::receive(&mem, n, &mut nic, translate);
        let clock = TscClock::new(settings.tsc_khz);
        let result = match params.mapper_config() {
            None => {
                let none: Option<&mut DriverMapper<'_, SharedPageMmio<'_>, &HeapMemory>> = None;
                nic_loop::run(none, mem, &params, &mut report, kick)
                    .map_err(|e| format!("driver: {e}"))
            }
            Some(config) => {
                Driver::bring_up(SharedPageMmio { words }, mem, &frames, BUDGET, config, clock)
                    .map_err(|e| format!("bring-up: {e}"))
                    .and_then(|mut d| {
                        nic_loop::run(Some(&mut d.mapper), mem, &params, &mut report, kick)
                            .map_err(|e| format!("driver: {e}"))
                    })
            }
        };
        stop.store(true, Ordering::Relaxed);
        (result, polling.join().ok())
    });
    result?;
    let report = check(report, &nic, settings)?;
    let samples = buffer_stats(&mem, report.buffers)?;
    Ok(RunResult {
        frontend,
        policy,
        report,
        exits: 0,
        nic,
        sidecore: stats,
        wall: started.elapsed(),
        samples,
    })
}

/// The VMM's side of the guest's exits: the VT-d page goes to the
/// emulator, the NIC doorbell to the device model.
struct VmmHandler<'a> {
    emu: &'a Emulator<&'a GuestRam>,
    ram: &'a GuestRam,
    nic: NicCounters,
    vtd_exits: u64,
    receive_start: u64,
    receive_exits: u64,
}

impl ExitHandler for VmmHandler<'_> {
    fn vtd_read(&mut self, offset: u64, data: &mut [u8]) {
        self.vtd_exits += 1;
        let Ok(off) = usize::try_from(offset) else { return data.fill(0xff) };
        let regs = self.emu;
        match data.len() {
            4 => data.copy_from_slice(&regs.read32(off).to_le_bytes()),
            8 => data.copy_from_slice(&regs.read64(off).to_le_bytes()),
            _ => data.fill(0xff),
        }
    }

    fn vtd_write(&mut self, offset: u64, data: &[u8]) {
        self.vtd_exits += 1;
        let Ok(off) = usize::try_from(offset) else { return };
        let mut regs = self.emu;
        if let Ok(b) = <[u8; 4]>::try_from(data) {
            regs.write32(off, u32::from_le_bytes(b));
        } else if let Ok(b) = <[u8; 8]>::try_from(data) {
            regs.write64(off, u64::from_le_bytes(b));
        }
    }

    fn nic_kick(&mut self, slots: u64) -> std::io::Result<()> {
        let emu = self.emu;
        nic::receive(&self.ram, slots, &mut self.nic, |iova| {
            emu.translate(NIC, iova, Access::Write).ok()
        });
        Ok(())
    }

    fn phase(&mut self, phase: u64) {
        match phase {
            abi::phase::RECEIVE => self.receive_start = self.vtd_exits,
            abi::phase::END => self.receive_exits = self.vtd_exits - self.receive_start,
            _ => {}
        }
    }
}

/// Runs the driver in a KVM guest: trap-and-emulate, or with the register
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
    let emu: Emulator<&GuestRam> =
        Emulator::new(&*ram, emu_config(frontend)).map_err(|e| e.to_string())?;
    let mut handler = VmmHandler {
        emu: &emu,
        ram: &ram,
        nic: NicCounters::default(),
        vtd_exits: 0,
        receive_start: 0,
        receive_exits: 0,
    };
    let mut side_stats = None;
    let outcome = match vm.register_page() {
        Some(page) if sidecore => {
            let cap = emu.config().cap;
            let ecap = emu.config().ecap;
            let fro = cap.fro().byte_offset();
            let records = fro..fro + 16 * usize::from(cap.nfr().count());
            let mut poller =
                Poller::new(&page, &emu, ecap.iro().iotlb(), records).map_err(|e| e.to_string())?;
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
        _ => vm.run_with(RUN_TIMEOUT, &mut handler),
    };
    outcome.map_err(|e| format!("guest run: {e}"))?;
    let mut words = [0u64; REPORT_WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        *w = ram.read_u64(abi::EVAL_REPORT + i as u64 * 8).map_err(|e| e.to_string())?;
    }
    let report = check(Report::from_words(&words), &handler.nic, settings)?;
    Ok(RunResult {
        frontend,
        policy,
        report,
        exits: handler.receive_exits,
        nic: handler.nic,
        sidecore: side_stats,
        wall: started.elapsed(),
        samples: buffer_stats(&*ram, report.buffers)?,
    })
}
