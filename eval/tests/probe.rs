//! Runs the guest under KVM. Without a usable `/dev/kvm` these tests FAIL
//! (CI must run them where KVM is): set `VIOMMU_EVAL_ALLOW_NO_KVM=1` to let
//! them pass with a message on a machine without KVM.

use viommu_eval::{
    abi,
    probe::{self, Error, Execution},
    vm::{Privilege, VmConfig},
};

/// Opt-out for local runs on hosts without KVM.
pub const ALLOW_NO_KVM: &str = "VIOMMU_EVAL_ALLOW_NO_KVM";

/// Panics with `why` unless [`ALLOW_NO_KVM`] is set to 1; then the caller
/// skips.
pub fn no_kvm(why: &str) {
    assert!(
        std::env::var(ALLOW_NO_KVM).is_ok_and(|v| v == "1"),
        "no usable KVM: {why}. These tests need /dev/kvm; set {ALLOW_NO_KVM}=1 to skip them locally"
    );
    eprintln!("skipped ({ALLOW_NO_KVM}=1): {why}");
}

fn run_or_skip(config: VmConfig) -> Option<probe::ProbeReport> {
    match probe::run(config) {
        Ok(report) => Some(report),
        Err(e @ (Error::NoKvm | Error::Open(_))) => {
            no_kvm(&e.to_string());
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn guest_times_its_register_accesses() {
    for privilege in [Privilege::Kernel, Privilege::User] {
        let config = VmConfig { privilege, ..VmConfig::default() };
        let Some(r) = run_or_skip(config) else { return };
        // Every MMIO write and read exited and was served by the VMM's
        // register page, which read back the last value written.
        assert_eq!(r.last_read, abi::SAMPLES - 1);
        assert!(r.exits >= 2 * abi::SAMPLES);
        assert!(r.mmio_write.median > r.rdtsc.median);
        assert!(r.mmio_read.median > r.rdtsc.median);
        if r.execution == Execution::Native {
            // A native loop iteration costs a few cycles, not thousands.
            assert!(r.loop_iteration_cycles() < 50.0, "{}", r.loop_iteration_cycles());
        }
    }
}

#[test]
fn missing_kvm_is_a_clear_error_with_exit_status_3() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_viommu-eval"))
        .arg("--probe")
        .env(viommu_eval::host::KVM_DEV_ENV, "/nonexistent/kvm")
        .output()
        .expect("run viommu-eval");
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("host: no KVM"), "{stdout}");
    assert!(stderr.contains("/nonexistent/kvm does not exist"), "{stderr}");
}

#[test]
fn bad_arguments_print_usage_with_exit_status_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_viommu-eval"))
        .args(["--probe", "--bogus"])
        .output()
        .expect("run viommu-eval");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--bogus") && stderr.contains("Usage: viommu-eval"), "{stderr}");
    // A probe flag without --probe, and parameters that do not fit, too.
    for args in [&["--cpl3"][..], &["--concurrency", "64"], &["--batch", "0"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_viommu-eval"))
            .args(args)
            .output()
            .expect("run viommu-eval");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_guest_that_never_exits_times_out() {
    use std::time::{Duration, Instant};
    use viommu_eval::{host::KvmKind, probe::GUEST, vm::Vm};
    if KvmKind::detect() == KvmKind::None {
        return no_kvm("/dev/kvm does not exist");
    }
    let kvm = match kvm_ioctls::Kvm::new() {
        Ok(kvm) => kvm,
        Err(e) => return no_kvm(&format!("cannot open /dev/kvm: {e}")),
    };
    let mut vm = Vm::new(&kvm, GUEST, VmConfig::default()).expect("vm");
    vm.run(Duration::from_secs(60)).expect("first run");
    // After DONE the guest spins without exiting: only the watchdog's
    // signal gets KVM_RUN back.
    let started = Instant::now();
    let err = vm.run(Duration::from_millis(300)).expect_err("must time out");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
