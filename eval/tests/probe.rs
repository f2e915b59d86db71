//! Runs the guest under KVM when this host has a usable `/dev/kvm`;
//! elsewhere the test says why it skips and passes.

use viommu_eval::{
    abi,
    probe::{self, Error, Execution},
    vm::{Privilege, VmConfig},
};

fn run_or_skip(config: VmConfig) -> Option<probe::ProbeReport> {
    match probe::run(config) {
        Ok(report) => Some(report),
        Err(e @ (Error::NoKvm | Error::Open(_))) => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn guest_times_its_register_accesses() {
    for privilege in [Privilege::Kernel, Privilege::User] {
        let Some(r) = run_or_skip(VmConfig { privilege, pvm_vif: true }) else { return };
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
