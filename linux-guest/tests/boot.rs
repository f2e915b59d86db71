//! Boots the cached Debian kernel with edu bound to vfio-pci and checks the
//! VFIO device nodes appear (fails when the kernel cache or QEMU is
//! missing: run scripts/ensure-linux-guest and scripts/ensure-qemu).

use std::time::Duration;

use viommu_linux_guest::{EDU_ADDRESS, Initramfs, Kernel, Machine};

#[test]
fn edu_binds_to_vfio_pci() {
    let kernel = Kernel::from_cache().unwrap_or_else(|e| panic!("{e}"));
    let initramfs = Initramfs::new(&kernel)
        .bind_vfio_pci(EDU_ADDRESS)
        .run(&[
            "ls",
            "/dev/vfio",
            &format!("/sys/bus/pci/devices/{EDU_ADDRESS}/iommu_group/devices"),
        ])
        .build()
        .unwrap();
    let run = Machine::default().run(&kernel, &initramfs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.exit_code, 0, "{}", run.console);
    assert!(run.output.contains("vfio"), "{}", run.output);
    assert!(run.output.contains(EDU_ADDRESS), "edu alone in its group: {}", run.output);
    assert!(run.kernel_log.contains("DMAR"), "intel-iommu on: {}", run.kernel_log);
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
    eprintln!("kernel {} booted and ran in {:?}", kernel.release(), run.elapsed);
}
