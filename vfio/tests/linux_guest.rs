//! The VFIO backend on a real kernel: boots Debian's kernel under QEMU (TCG)
//! with intel-iommu and edu, binds edu to vfio-pci, and runs a program in
//! the guest (a static build of an example) that plays a VMM:
//!
//! - `edu_dma`: the container alone: guest RAM from vm-memory mapped at
//!   chosen IOVAs, edu's DMA in both directions, partial and whole unmaps,
//!   ioctl counts;
//! - `viommu_guest`: a `viommu::Viommu` on the VFIO backend, a guest driver
//!   (`vtd_dma::DmaDomain`) mapping buffers, a hostile guest, the
//!   conformance checks with real DMA, and map + unmap timed beside the
//!   native backend.
//!
//! Then checks, from the guest kernel's log, that the DMAs the program
//! expected to be blocked raised DMAR faults at those IOVAs.
//!
//! Fails (never skips) when the kernel cache or QEMU is missing: run
//! `scripts/ensure-linux-guest` and `scripts/ensure-qemu` (`scripts/test`
//! does).

use std::path::Path;
use std::time::{Duration, Instant};

use viommu_linux_guest::{EDU_ADDRESS, GuestRun, Initramfs, Kernel, Machine, build_static_example};

/// Builds example `example` with `features`, boots it in the guest, and
/// checks it passed within 30 s of QEMU time.
fn run_in_guest(example: &str, features: &[&str]) -> GuestRun {
    let start = Instant::now();
    let kernel = Kernel::from_cache().unwrap_or_else(|e| panic!("{e}"));
    let program = build_static_example(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        example,
        features,
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("linux-guest"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let built = start.elapsed();
    let initramfs = Initramfs::new(&kernel)
        .bind_vfio_pci(EDU_ADDRESS)
        .binary(example, &program)
        .run(&[example, EDU_ADDRESS])
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // edu completes a DMA 100 ms of guest time after it starts: the
    // programs sleep meanwhile, and an idle guest's clock jumps ahead.
    let machine = Machine { skip_idle_time: true, ..Machine::default() };
    let run = machine.run(&kernel, &initramfs).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "kernel {} ({}): build {:?}, QEMU start to exit {:?}\n{}",
        kernel.release(),
        kernel.packages().trim().replace('\n', ", "),
        built,
        run.elapsed,
        run.output
    );
    assert_eq!(
        run.exit_code, 0,
        "{example} failed:\n{}\nkernel log:\n{}",
        run.output, run.kernel_log
    );
    assert!(run.output.contains("all checks passed"), "{}", run.output);
    assert!(run.elapsed < Duration::from_secs(30), "QEMU ran {:?}", run.elapsed);
    run
}

/// The pages the program announced (`expect-fault write <iova>`) before
/// each DMA the kernel had to block.
fn announced(run: &GuestRun) -> Vec<u64> {
    run.output
        .lines()
        .filter_map(|l| l.strip_prefix("expect-fault write 0x"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap() & !0xfff)
        .collect()
}

#[test]
fn edu_dma_through_vfio_on_linux() {
    let run = run_in_guest("edu_dma", &["vm-memory"]);
    // Every blocked DMA the program announced raised a fault event in the
    // guest kernel (one "handling fault status" line each), and each fault
    // record the kernel printed is a DMAR write fault at the announced page,
    // in order. Linux's dmar_fault() shares one ratelimit (10 per 5 s)
    // between the event line, each record and the loop's final empty-record
    // check: three tokens per fault, so within 5 s the fourth fault's record
    // is not printed; at least the first three are.
    let expected = announced(&run);
    assert_eq!(expected.len(), 4, "{}", run.output);
    let events = run.kernel_log.matches("DMAR: DRHD: handling fault status reg").count();
    assert_eq!(events, expected.len(), "fault events:\n{}", run.kernel_log);
    let faults = run.dmar_faults();
    assert!((3..=expected.len()).contains(&faults.len()), "{faults:x?}\n{}", run.kernel_log);
    for (fault, page) in faults.iter().zip(&expected) {
        assert!(
            fault.write && fault.addr == *page && fault.reason == 5,
            "{fault:x?}, expected a write fault at {page:#x}"
        );
    }
}

#[test]
fn viommu_on_the_vfio_backend_on_linux() {
    let run = run_in_guest("viommu_guest", &["viommu"]);
    // The driver's and the hostile guest's blocked DMAs come first, each
    // after 5 s of guest time: the kernel logged a DMAR write fault at
    // each announced page, in order (the conformance checks' faults
    // follow).
    let expected = announced(&run);
    assert_eq!(expected.len(), 3, "{}", run.output);
    let faults = run.dmar_faults();
    assert!(faults.len() >= expected.len(), "{faults:x?}\n{}", run.kernel_log);
    for (fault, page) in faults.iter().zip(&expected) {
        assert!(
            fault.write && fault.addr == *page,
            "{fault:x?}, expected a write fault at {page:#x}"
        );
    }
    // Every conformance check passed (a host that lets the device read
    // write-only pages says so through the harness's enforces_write_only).
    let checks: Vec<&str> = run.output.lines().filter(|l| l.starts_with("conformance ")).collect();
    assert_eq!(checks.len(), 11, "{}", run.output);
    for line in checks {
        assert!(line.ends_with(": ok"), "{line}");
    }
    assert!(run.output.contains("bench vfio") && run.output.contains("bench native"));
}
