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
    vm::Privilege,
};

const USAGE: &str = "usage: viommu-eval --probe [--cpl0]
  --probe   detect the KVM flavour, run the guest, print its loop cost and
            the cost of a VT-d register access that exits to the VMM
  --cpl0    start the guest at CPL 0 (default CPL 3; under PVM a CPL 0
            guest without paravirtual setup is instruction-emulated)
exit status: 0 ok, 2 usage, 3 no usable KVM, 1 the guest run failed";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--probe"] => run_probe(Privilege::User),
        ["--probe", "--cpl0"] | ["--cpl0", "--probe"] => run_probe(Privilege::Kernel),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run_probe(privilege: Privilege) -> ExitCode {
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
    match probe::run(privilege) {
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
    println!(
        "  VMM wall time per MMIO exit: {:.2} us (mean over the phase, host noise included)",
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
