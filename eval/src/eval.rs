//! One evaluation run: the driver's workload under one mapping policy and
//! one front end, with what the VMM and the device saw.

use std::{
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use viommu_eval_driver::{
    Doorbell, Driver, DriverMapper, Params, Policy, Report, bringup,
    layout::{self, NIC},
    params::REPORT_WORDS,
    tsc::{self, rdtsc, spin_cycles},
};
use vtd_emu::{Access, EmuConfig, Emulator, mem::HeapMemory};
use vtd_regs::{Iova, Mmio, PhysAddr, PhysMem, PollBudget};

pub use crate::measurement::{OpStats, PREEMPTED_CYCLES, PinCounts, RunResult};
pub use crate::settings::{Job, Settings};
use crate::{
    abi,
    frontend::Frontend,
    guest_viommu::{self, GuestIommu, Mode, Rig},
    measurement::check,
    memory::GuestRam,
    nic::Nic,
    probe::GUEST,
    sidecore::{Polled, Poller, SidecoreStats},
    vm::{ExitHandler, Vm, VmConfig},
};

/// Status reads a wait may take (the guest uses the same).
const BUDGET: PollBudget = PollBudget::new(1 << 30);
/// Longest a KVM run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What a run's parts hand back to be assembled into a [`RunResult`].
struct Measured {
    report: Report,
    nic: Nic,
    exits: u64,
    pins: Option<PinCounts>,
    pinned_peak: Option<u64>,
    sidecore: Option<SidecoreStats>,
    vmm_cycles: Option<u64>,
}

impl Measured {
    /// The run's result: the report checked against `params`, the
    /// samples the driver left in `mem`.
    fn finish<M: PhysMem>(
        self,
        (job, frontend, policy): (Job, Frontend, Policy),
        params: &Params,
        mem: &M,
        started: Instant,
    ) -> Result<RunResult, String> {
        let report = check(self.report, &self.nic.counters, params)?;
        let ops = match params.workload {
            viommu_eval_driver::Workload::Receive => report.buffers,
            viommu_eval_driver::Workload::RequestResponse => report.requests,
        };
        Ok(RunResult {
            job,
            frontend,
            policy,
            report,
            exits: self.exits,
            nic: self.nic.counters,
            sidecore: self.sidecore,
            pins: self.pins,
            pinned_peak: self.pinned_peak,
            vmm_cycles: self.vmm_cycles,
            wall: started.elapsed(),
            samples: OpStats::read(mem, params.workload, ops)?,
        })
    }
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
) -> Result<Poller<'p, Polled<'r, GuestIommu<'a, R>>>, String> {
    let unit = rig.viommu.config();
    let (cap, ecap) = (unit.cap, unit.ecap);
    let fro = cap.fro().byte_offset();
    let records = fro..fro + 16 * usize::from(cap.nfr().count());
    Poller::new(page, Polled(rig.viommu), ecap.iro().iotlb(), records).map_err(|e| e.to_string())
}

/// Runs `job` under `policy` in this process: bare metal (the native
/// driver on the software unit), or, where KVM is missing, on a vIOMMU
/// with every register access charged `settings.modelled_exit_cycles`
/// ([`Frontend::ModelledTrap`]) or through a register page a polling
/// thread serves ([`Frontend::SidecoreNoVm`]), or on a nested vIOMMU with
/// every register access charged ([`Frontend::ModelledNested`]).
pub fn run_in_process(
    settings: &Settings,
    job: Job,
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
            .spawn_scoped(scope, || run_on_this_thread(settings, (job, frontend, policy)))
            .map_err(|e| e.to_string())?
            .join()
            .map_err(|_| "the in-process driver panicked".to_string())?
    })
}

/// Stack of the in-process driver thread.
const DRIVER_STACK: usize = 64 << 20;

/// A run's job, front end and policy.
type Run = (Job, Frontend, Policy);

/// [`run_in_process`] on the calling thread.
fn run_on_this_thread(settings: &Settings, run: Run) -> Result<RunResult, String> {
    let (job, frontend, policy) = run;
    let started = Instant::now();
    let heap = simulated_ram()?;
    let mem = &heap;
    let params = settings.params(job, policy);
    let measured = match frontend {
        Frontend::SidecoreNoVm => run_sidecore_in_process(mem, settings, &params)?,
        Frontend::ModelledTrap | Frontend::ModelledNested => {
            run_modelled_trap(mem, settings, &params, frontend)?
        }
        _ => {
            let emu: Emulator<_> =
                Emulator::new(mem, emu_config(frontend)).map_err(|e| e.to_string())?;
            let mut nic = Nic::new(&params);
            let translate = |iova, access| emu.translate(NIC, iova, access).ok();
            let kick = |bell| nic.doorbell(&mem, &mem, bell, translate);
            let mut report = Report::default();
            drive(&emu, mem, settings, &params, &mut report, kick, || (0, PinCounts::default()))?;
            // Bare metal: register accesses are function calls, not exits;
            // no vIOMMU, nothing pinned.
            Measured {
                report,
                nic,
                exits: 0,
                pins: None,
                pinned_peak: None,
                sidecore: None,
                vmm_cycles: None,
            }
        }
    };
    measured.finish(run, &params, &mem, started)
}

/// Simulated RAM for an in-process run, laid out and warmed up as the
/// guest's.
fn simulated_ram() -> Result<HeapMemory, String> {
    let heap = HeapMemory::new(layout::RAM_SIZE as usize);
    layout::warm_up(&&heap).map_err(|e| e.to_string())?;
    Ok(heap)
}

/// The driver's workload in-process, with registers `regs`: without an
/// IOMMU under policy *none*, else on the unit brought up through `regs`.
/// `snapshot` reads (exits, pins) so that what the workload alone cost
/// comes back (zero without an IOMMU).
fn drive<R: Mmio>(
    regs: R,
    mem: &HeapMemory,
    settings: &Settings,
    params: &Params,
    report: &mut Report,
    kick: impl FnMut(Doorbell),
    snapshot: impl Fn() -> (u64, PinCounts),
) -> Result<(u64, PinCounts), String> {
    let driver_error = |e| format!("driver: {e}");
    let Some(config) = params.mapper_config() else {
        let none: Option<&mut DriverMapper<'_, R, &HeapMemory>> = None;
        viommu_eval_driver::run(none, mem, params, report, kick).map_err(driver_error)?;
        return Ok((0, PinCounts::default()));
    };
    let frames = bringup::frames();
    let clock = tsc::clock(settings.tsc_khz);
    let mut driver = Driver::bring_up(regs, mem, &frames, BUDGET, config, clock)
        .map_err(|e| format!("bring-up: {e}"))?;
    let (exits, pins) = snapshot();
    viommu_eval_driver::run(Some(&mut driver.mapper), mem, params, report, kick)
        .map_err(driver_error)?;
    let (exits_after, pins_after) = snapshot();
    Ok((exits_after - exits, pins_after.since(pins)))
}

/// The NIC's DMA on a vIOMMU: through the physical unit (under the policy
/// *none*, the vIOMMU's pass-through: the guest leaves translation off).
fn vmmu_dma<R: PhysMem>(rig: Rig<'_, '_, R>) -> impl Fn(Iova, Access) -> Option<PhysAddr> {
    move |iova, access| rig.dma(iova, access)
}

/// The guest's vIOMMU for `frontend` under `policy`. The policy *none*
/// leaves translation off: every front end runs it on the shadowing
/// vIOMMU offering pass-through (an identity-mapped host domain over all
/// guest RAM, as a nested host's second stage is); the other policies run
/// on a unit without ECAP.PT, as the seed's, shadowing or nested.
fn mode(frontend: Frontend, policy: Policy) -> Mode {
    match policy {
        Policy::NoIommu => Mode::Shadow { pass_through: true },
        _ if frontend.nested() => Mode::Nested,
        _ => Mode::Shadow { pass_through: false },
    }
}

/// The in-process stand-in for trap & emulate: the driver on `frontend`'s
/// vIOMMU, as in the guest, with every register access charged
/// `settings.modelled_exit_cycles`.
fn run_modelled_trap(
    mem: &HeapMemory,
    settings: &Settings,
    params: &Params,
    frontend: Frontend,
) -> Result<Measured, String> {
    let mode = mode(frontend, params.policy);
    guest_viommu::with_viommu(mem, layout::RAM_SIZE, mode, |rig| {
        let mut nic = Nic::new(params);
        let dma = vmmu_dma(rig);
        let kick = |bell| nic.doorbell(&mem, rig.mem, bell, &dma);
        let exits = Cell::new(0);
        let regs =
            ChargedMmio { inner: rig.viommu, cost: settings.modelled_exit_cycles, exits: &exits };
        let mut report = Report::default();
        let snapshot = || (exits.get(), rig.viommu.pins());
        let (exits, pins) = drive(regs, mem, settings, params, &mut report, kick, snapshot)?;
        Ok(Measured {
            report,
            nic,
            exits,
            pins: Some(pins),
            pinned_peak: Some(rig.viommu.pinned_peak()),
            sidecore: None,
            vmm_cycles: None,
        })
    })?
}

/// The in-process stand-in for the sidecore: the driver's register page is
/// shared memory the same poller serves, forwarding to a vIOMMU as in the
/// guest.
fn run_sidecore_in_process(
    mem: &HeapMemory,
    settings: &Settings,
    params: &Params,
) -> Result<Measured, String> {
    let page = GuestRam::new(0x1000).map_err(|e| e.to_string())?;
    let words = page.atomic_words().map_err(|e| e.to_string())?;
    let mode = mode(Frontend::SidecoreNoVm, params.policy);
    guest_viommu::with_viommu(mem, layout::RAM_SIZE, mode, |rig| {
        let mut poller = poller(&page, rig)?;
        let mut nic = Nic::new(params);
        let mut report = Report::default();
        let stop = AtomicBool::new(false);
        let (result, sidecore) = std::thread::scope(|s| {
            let polling = s.spawn(|| {
                poller.run(&stop);
                poller.stats
            });
            let dma = vmmu_dma(rig);
            let kick = |bell| nic.doorbell(&mem, rig.mem, bell, &dma);
            let snapshot = || (0, rig.viommu.pins());
            let regs = SharedPageMmio { words };
            let result = drive(regs, mem, settings, params, &mut report, kick, snapshot);
            stop.store(true, Ordering::Relaxed);
            (result, polling.join().ok())
        });
        let (_, pins) = result?;
        Ok(Measured {
            report,
            nic,
            exits: 0,
            pins: Some(pins),
            pinned_peak: Some(rig.viommu.pinned_peak()),
            sidecore,
            vmm_cycles: None,
        })
    })?
}

/// The VMM's side of the guest's exits: the VT-d page goes to the guest's
/// vIOMMU, the NIC doorbells to the device model, whose DMA the physical
/// unit translates.
struct VmmHandler<'r, 'a, R: PhysMem> {
    rig: Rig<'r, 'a, R>,
    ram: &'r GuestRam,
    nic: Nic,
    vtd_exits: u64,
    receive_start: u64,
    receive_exits: u64,
    pins_start: PinCounts,
    pins: PinCounts,
    /// TSC cycles spent serving register exits: in all, at the start of
    /// the workload, and during it.
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

    fn nic(&mut self, bell: Doorbell) -> std::io::Result<()> {
        let rig = self.rig;
        self.nic.doorbell(&self.ram, rig.mem, bell, vmmu_dma(rig));
        Ok(())
    }

    fn phase(&mut self, phase: u64) {
        match phase {
            abi::phase::RECEIVE => {
                self.receive_start = self.vtd_exits;
                self.serve_start = self.serve_cycles;
                self.pins_start = self.rig.viommu.pins();
            }
            abi::phase::END => {
                self.receive_exits = self.vtd_exits - self.receive_start;
                self.receive_serve_cycles = self.serve_cycles - self.serve_start;
                self.pins = self.rig.viommu.pins().since(self.pins_start);
            }
            _ => {}
        }
    }
}

/// Runs `job` under `policy` in a KVM guest whose VT-d unit is a vIOMMU
/// over a physical software unit: shadowing, trap-and-emulate
/// ([`Frontend::Trap`]) or with the register page served by a sidecore
/// thread ([`Frontend::Sidecore`]); or nested, trap-and-emulate
/// ([`Frontend::Nested`]).
pub fn run_kvm(
    kvm: &kvm_ioctls::Kvm,
    settings: &Settings,
    job: Job,
    policy: Policy,
    frontend: Frontend,
) -> Result<RunResult, String> {
    let started = Instant::now();
    let sidecore = frontend == Frontend::Sidecore;
    let config = VmConfig { shared_register_page: sidecore, ..VmConfig::default() };
    let mut vm = Vm::new(kvm, GUEST, config).map_err(|e| format!("VM setup: {e}"))?;
    let params = settings.params(job, policy);
    vm.configure_eval(&params.to_words()).map_err(|e| e.to_string())?;
    let ram = vm.ram();
    let page = vm.register_page().filter(|_| sidecore);
    let mut measured =
        guest_viommu::with_viommu(&*ram, layout::RAM_SIZE, mode(frontend, policy), |rig| {
            let mut handler = VmmHandler {
                rig,
                ram: &ram,
                nic: Nic::new(&params),
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
            Ok::<_, String>(Measured {
                report: Report::default(),
                nic: handler.nic,
                exits: handler.receive_exits,
                pins: Some(handler.pins),
                pinned_peak: Some(rig.viommu.pinned_peak()),
                sidecore: side_stats,
                vmm_cycles: (!sidecore).then_some(handler.receive_serve_cycles),
            })
        })??;
    let mut words = [0u64; REPORT_WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        *w = ram.read_u64(abi::EVAL_REPORT + i as u64 * 8).map_err(|e| e.to_string())?;
    }
    measured.report = Report::from_words(&words);
    measured.finish((job, frontend, policy), &params, &*ram, started)
}
