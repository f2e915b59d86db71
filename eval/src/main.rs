//! `viommu-eval` command line: a minimal KVM VMM for reproducing the vIOMMU paper's
//! evaluation with real VM exits (see the library docs). It runs a `no_std` guest (`guest/`)
//! entered directly in 64-bit mode; the guest's accesses to the emulated
//! VT-d register page at [`abi::VTD_BASE`] exit to this process
//! (`KVM_EXIT_MMIO`) and the guest times itself with RDTSC.
//!
//! `cargo run --release -p viommu-eval -- --probe` prints the KVM flavour,
//! the guest's loop cost and the MMIO exit round-trip cost.

use std::{process::ExitCode, time::Duration};
use viommu_eval::{abi, host, host::KvmKind, stats::Summary, vm};

/// The guest image, built by `build.rs`.
static GUEST: &[u8] = include_bytes!(env!("VIOMMU_EVAL_GUEST"));

const USAGE: &str = "usage: viommu-eval --probe
  --probe   detect the KVM flavour, run the guest, print its loop cost and
            the cost of a VT-d register access that exits to the VMM";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--probe"] => probe(),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn probe() -> ExitCode {
    let kind = KvmKind::detect();
    println!("host: {kind}");
    if kind == KvmKind::Pvm {
        let p = |n| host::pvm_param(n).unwrap_or_else(|| "?".into());
        println!(
            "  kvm_pvm: pvm_native={} pvm_emul_batch={}",
            p("pvm_native"),
            p("pvm_emul_batch")
        );
    }
    if kind == KvmKind::None {
        eprintln!(
            "error: {} does not exist: this host offers no KVM, so the guest cannot run \
             (a modelled fallback is future work)",
            host::KVM_DEV
        );
        return ExitCode::from(3);
    }
    let kvm = match kvm_ioctls::Kvm::new() {
        Ok(kvm) => kvm,
        Err(e) => {
            eprintln!("error: cannot open {}: {e} (it needs root or the kvm group)", host::KVM_DEV);
            return ExitCode::from(3);
        }
    };
    let tsc_hz = host::tsc_hz();
    println!("host TSC: {:.3} GHz", tsc_hz / 1e9);
    let outcome = vm::Vm::new(&kvm, GUEST, if std::env::var_os("EVAL_KERNEL").is_some() { vm::Privilege::Kernel } else { vm::Privilege::User }).and_then(|mut vm| {
        let out = vm.run(Duration::from_secs(60));
        if std::env::var_os("EVAL_STATS").is_some() {
            for (name, v) in vm.vcpu_stats().unwrap_or_default() {
                println!("  stat {name} = {v:?}");
            }
        }
        out
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: guest run failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    report(kind, &outcome, tsc_hz);
    ExitCode::SUCCESS
}

fn report(kind: KvmKind, o: &vm::Outcome, tsc_hz: f64) {
    let ns = |cycles: f64| cycles * 1e9 / tsc_hz;
    let mode = if o.results.cpl3 == 3 {
        "hardware CPL 3 (PVM native)"
    } else if kind.hardware_assisted() {
        "CPL 0, hardware-assisted"
    } else {
        "CPL 0 as set by the VMM (under PVM: instruction-emulated by KVM)"
    };
    println!("guest ran at {mode}; {} exits to the VMM", o.total_exits);
    println!("guest cycles (TSC):");
    let rdtsc = Summary::of(&o.rdtsc);
    println!("  rdtsc back-to-back     {rdtsc}");
    let loops = Summary::of(&o.loops);
    let per_iter = loops.median as f64 / abi::LOOP_ITERS as f64;
    println!("  loop round ({} iters)  {loops}", abi::LOOP_ITERS);
    println!(
        "  loop iteration ({} insns): {per_iter:.2} cycles = {:.2} cycles/insn (median round)",
        abi::LOOP_INSNS,
        per_iter / abi::LOOP_INSNS as f64
    );
    let w = Summary::of(&o.mmio_write);
    let r = Summary::of(&o.mmio_read);
    println!("  MMIO write32 (exit)    {w}  = {:.2} us", ns(w.median as f64) / 1e3);
    println!("  MMIO read32 (exit)     {r}  = {:.2} us", ns(r.median as f64) / 1e3);
    if let Some(p) = o.phases.iter().find(|p| p.phase == abi::phase::MMIO) {
        let per_exit = p.wall.as_secs_f64() * 1e9 / p.exits.max(1) as f64;
        println!(
            "VMM wall time, MMIO phase: {:?} for {} exits = {:.2} us per exit",
            p.wall,
            p.exits,
            per_exit / 1e3
        );
    }
    if o.results.last_read != abi::SAMPLES - 1 {
        println!(
            "warning: register read back {:#x}, expected {:#x}",
            o.results.last_read,
            abi::SAMPLES - 1
        );
    }
}
