//! The probe: run the guest once and summarize what it measured.

use crate::{
    abi,
    host::{self, KvmKind},
    stats::Summary,
    vm::{Outcome, Privilege, Vm, VmConfig},
};
use std::{fmt, io, time::Duration};

/// The guest image, built by `build.rs` from `guest/`.
pub static GUEST: &[u8] = include_bytes!(env!("VIOMMU_EVAL_GUEST"));

/// Why a probe could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/kvm` does not exist.
    NoKvm,
    /// `/dev/kvm` exists but could not be opened.
    Open(io::Error),
    /// Creating or running the VM failed (KVM error, guest fault, timeout).
    Vm(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKvm => write!(
                f,
                "{} does not exist: this host offers no KVM, so the guest cannot run",
                host::kvm_dev().display()
            ),
            Self::Open(e) => {
                write!(
                    f,
                    "cannot open {}: {e} (needs root or the kvm group)",
                    host::kvm_dev().display()
                )
            }
            Self::Vm(e) => write!(f, "guest run failed: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// How the guest's instructions were executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Execution {
    /// On the CPU (hardware-assisted, or PVM's native mode): KVM emulated
    /// only the instructions that exited.
    Native,
    /// KVM's instruction emulator ran the guest.
    Emulated,
}

/// What one probe run measured. Cycles are TSC ticks read by the guest.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// The host's KVM flavour.
    pub kind: KvmKind,
    /// Privilege level the guest ran at.
    pub privilege: Privilege,
    /// CPL the guest read from its CS selector (3 under PVM native mode
    /// even for a CPL 0 guest, as PVM runs guests at hardware CPL 3).
    pub guest_cpl: u64,
    /// How the guest was executed.
    pub execution: Execution,
    /// Whether the VMM registered a PVM virtual interrupt-flag area.
    pub pvm_vif: bool,
    /// Instructions KVM emulated (KVM binary stats), if readable.
    pub insn_emulated: Option<u64>,
    /// Host TSC frequency, Hz.
    pub tsc_hz: f64,
    /// Back-to-back RDTSC.
    pub rdtsc: Summary,
    /// One round of `abi::LOOP_ITERS` loop iterations.
    pub loop_round: Summary,
    /// 32-bit MMIO write to the VT-d register page (one exit).
    pub mmio_write: Summary,
    /// 32-bit MMIO read of the VT-d register page (one exit).
    pub mmio_read: Summary,
    /// 32-bit port write (one exit, no page fault); `None` where it cannot
    /// run (see [`abi::CONFIG_SKIP_PIO`]).
    pub pio: Option<Summary>,
    /// 32-bit write to a coalesced-MMIO page: the host kernel's part of an
    /// MMIO exit, without the trip to the VMM (`None` if KVM refused the
    /// coalesced zone, as the writes then exit).
    pub coalesced: Option<Summary>,
    /// VMM wall time of the MMIO phase divided by its exits (a mean, so
    /// it includes every preemption of the vCPU thread).
    pub wall_per_exit: Duration,
    /// VMM wall time between consecutive exits of the MMIO phase, in ns
    /// (one round trip each; the median is robust to preemption).
    pub exit_gap_ns: Summary,
    /// Exits the VMM served in total.
    pub exits: u64,
    /// The value the guest read back last (sanity check of the register page).
    pub last_read: u64,
}

impl ProbeReport {
    /// Median cycles per loop iteration.
    #[must_use]
    pub fn loop_iteration_cycles(&self) -> f64 {
        self.loop_round.median as f64 / abi::LOOP_ITERS as f64
    }

    /// Converts TSC cycles to nanoseconds.
    #[must_use]
    pub fn ns(&self, cycles: u64) -> f64 {
        cycles as f64 * 1e9 / self.tsc_hz
    }
}

/// Opens KVM, runs the guest as `config` says and summarizes its samples.
pub fn run(config: VmConfig) -> Result<ProbeReport, Error> {
    let privilege = config.privilege;
    let kind = KvmKind::detect();
    if kind == KvmKind::None {
        return Err(Error::NoKvm);
    }
    let dev = std::ffi::CString::new(host::kvm_dev().into_os_string().into_encoded_bytes())
        .map_err(|e| Error::Open(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let kvm = kvm_ioctls::Kvm::new_with_path(&dev).map_err(|e| Error::Open(e.into()))?;
    let tsc_hz = host::tsc_hz();
    let mut vm = Vm::new(&kvm, GUEST, config).map_err(Error::Vm)?;
    let outcome = vm.run(Duration::from_secs(60)).map_err(Error::Vm)?;
    let insn_emulated = vm.vcpu_stat("insn_emulation");
    let mut report = summarize(kind, privilege, tsc_hz, insn_emulated, &outcome);
    report.pvm_vif = vm.pvm_vif_registered();
    report.coalesced = vm.coalesced_mmio().then(|| Summary::of(&outcome.coalesced));
    Ok(report)
}

fn summarize(
    kind: KvmKind,
    privilege: Privilege,
    tsc_hz: f64,
    insn_emulated: Option<u64>,
    o: &Outcome,
) -> ProbeReport {
    let mmio_phase = o.phases.iter().find(|p| p.phase == abi::phase::MMIO);
    let wall_per_exit = mmio_phase
        .map(|p| p.wall / u32::try_from(p.exits.max(1)).unwrap_or(u32::MAX))
        .unwrap_or_default();
    let loop_round = Summary::of(&o.loops);
    // The loop alone is LOOP_ROUNDS * LOOP_ITERS * LOOP_INSNS instructions;
    // emulating it shows in KVM's counter, and in the loop's cost.
    let loop_insns = abi::LOOP_ROUNDS * abi::LOOP_ITERS * abi::LOOP_INSNS;
    let emulated = match insn_emulated {
        Some(n) => n >= loop_insns,
        None => loop_round.median / abi::LOOP_ITERS > 100,
    };
    ProbeReport {
        kind,
        privilege,
        guest_cpl: o.results.cpl3,
        execution: if emulated { Execution::Emulated } else { Execution::Native },
        pvm_vif: false,
        insn_emulated,
        tsc_hz,
        rdtsc: Summary::of(&o.rdtsc),
        loop_round,
        mmio_write: Summary::of(&o.mmio_write),
        mmio_read: Summary::of(&o.mmio_read),
        pio: (!o.pio.is_empty()).then(|| Summary::of(&o.pio)),
        coalesced: None,
        wall_per_exit,
        exit_gap_ns: Summary::of(mmio_phase.map_or(&[][..], |p| &p.gaps_ns)),
        exits: o.total_exits,
        last_read: o.results.last_read,
    }
}
