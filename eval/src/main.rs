//! `viommu-eval` command line. See the library docs and `eval/README.md`.
//!
//! `cargo run --release -p viommu-eval -- --probe` prints the KVM flavour,
//! the guest's loop cost and the MMIO exit round-trip cost.

use std::process::ExitCode;
use viommu_eval::{
    abi, host,
    host::KvmKind,
    probe::{self, Execution, ProbeReport},
    stats::Summary,
    vm::{Privilege, VmConfig},
};

const USAGE: &str = "usage: viommu-eval --probe [--cpl3 | --no-pvm-vif]
  --probe       detect the KVM flavour, run the guest, print its loop cost
                and the cost of a VT-d register access that exits to the VMM
  --cpl3        start the guest at CPL 3 instead of CPL 0
  --no-pvm-vif  under PVM, do not register the virtual interrupt-flag area
                that lets a CPL 0 guest run natively (KVM then emulates it)
exit status: 0 ok, 2 usage, 3 no usable KVM, 1 the guest run failed";

fn main() -> ExitCode {
    let mut config = VmConfig::default();
    let (mut probe, mut bad) = (false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--probe" => probe = true,
            "--cpl3" => config.privilege = Privilege::User,
            "--no-pvm-vif" => config.pvm_vif = false,
            _ => bad = true,
        }
    }
    if !probe || bad {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    run_probe(config)
}

fn run_probe(config: VmConfig) -> ExitCode {
    let kind = KvmKind::detect();
    println!("host: {kind}");
    if kind == KvmKind::Pvm {
        let p = |n| host::pvm_param(n).unwrap_or_else(|| "?".into());
        println!(
            "  kvm_pvm parameters: pvm_native={} pvm_emul_batch={}",
            p("pvm_native"),
            p("pvm_emul_batch")
        );
    }
    match probe::run(config) {
        Ok(report) => {
            print_report(&report);
            ExitCode::SUCCESS
        }
        Err(e @ (probe::Error::NoKvm | probe::Error::Open(_))) => {
            eprintln!("error: {e}; a modelled fallback is not implemented yet");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(r: &ProbeReport) {
    let execution = match (r.execution, r.kind) {
        (Execution::Native, KvmKind::Pvm) => "natively (PVM, hardware CPL 3)",
        (Execution::Native, _) => "natively",
        (Execution::Emulated, _) => "by KVM's instruction emulator",
    };
    println!(
        "guest: started at {:?} privilege (reads CPL {}), executed {execution}",
        r.privilege, r.guest_cpl
    );
    if r.pvm_vif {
        println!("  PVM virtual interrupt-flag area registered (lets CPL 0 run natively)");
    }
    if let Some(n) = r.insn_emulated {
        println!("  KVM emulated {n} instructions; the VMM served {} exits", r.exits);
    }
    println!("  host TSC {:.3} GHz; guest-measured TSC cycles:", r.tsc_hz / 1e9);
    let line = |name: &str, s: &Summary| {
        println!("  {name:<24} {s}  = {:.2} us (median)", r.ns(s.median) / 1e3);
    };
    line("rdtsc back-to-back", &r.rdtsc);
    line("loop round", &r.loop_round);
    let per_iter = r.loop_iteration_cycles();
    println!(
        "  loop iteration ({} insns): {per_iter:.2} cycles ({:.2} per instruction)",
        abi::LOOP_INSNS,
        per_iter / abi::LOOP_INSNS as f64
    );
    line("MMIO write32 (1 exit)", &r.mmio_write);
    line("MMIO read32 (1 exit)", &r.mmio_read);
    match &r.pio {
        Some(p) => line("port write32 (1 exit)", p),
        None => println!("  port write32: skipped (PVM native CPL 0 cannot emulate `out` here)"),
    }
    match &r.coalesced {
        Some(c) => line("coalesced MMIO write32", c),
        None => println!("  coalesced MMIO: refused by KVM"),
    }
    println!(
        "  VMM wall time per MMIO exit: median {:.2} us (exit to exit), mean {:.2} us (phase / exits, preemption included)",
        r.exit_gap_ns.median as f64 / 1e3,
        r.wall_per_exit.as_secs_f64() * 1e6
    );
    if r.last_read != abi::SAMPLES - 1 {
        println!(
            "warning: register read back {:#x}, expected {:#x}",
            r.last_read,
            abi::SAMPLES - 1
        );
    }
}
