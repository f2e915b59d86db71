//! Test support: a stock Debian Linux kernel booted under QEMU (TCG, q35,
//! `intel-iommu` with interrupt remapping, and `edu`), running one test
//! program from an initramfs, as a real host for VFIO.
//!
//! KVM here cannot boot a stock kernel, but TCG boots Debian's cloud kernel
//! to user space in about two seconds. Inside, Linux's own `intel-iommu`
//! driver runs on QEMU's VT-d, so a program in the guest meets the real
//! host-side interfaces a Linux-hosted VMM uses: VFIO type1 with `edu`
//! bound to `vfio-pci`.
//!
//! - [`Kernel`]: the kernel, its modules and busybox, cached by
//!   `scripts/ensure-linux-guest` from Debian's packages. A missing cache is
//!   [`Error::KernelMissing`], never a skip.
//! - [`Initramfs`]: busybox, the modules in dependency order, the program,
//!   and an `/init` that binds devices to `vfio-pci`, runs the program,
//!   prints its exit status and the kernel log, and powers off.
//! - [`Machine`]: QEMU's command line; [`Machine::run`] boots and returns a
//!   [`GuestRun`]: the program's exit status and output, the kernel log and
//!   its [`DmarFault`]s, QEMU's stderr and the time taken.
//! - [`build_static_example`]: the program, linked statically.
//!
//! ```no_run
//! use viommu_linux_guest::{EDU_ADDRESS, Initramfs, Kernel, Machine};
//!
//! let kernel = Kernel::from_cache()?;
//! let initramfs = Initramfs::new(&kernel)
//!     .bind_vfio_pci(EDU_ADDRESS)
//!     .run(&["ls", "/dev/vfio"])
//!     .build()?;
//! let run = Machine::default().run(&kernel, &initramfs)?;
//! assert_eq!(run.exit_code, 0, "{}", run.console);
//! assert!(run.output.contains("vfio"));
//! # Ok::<(), viommu_linux_guest::Error>(())
//! ```
#![forbid(unsafe_code)]

mod build;
mod cpio;
mod error;
mod initramfs;
mod kernel;
mod machine;
mod modules;

pub use build::build_static_example;
pub use error::{ENSURE_SCRIPT, Error, Result};
pub use initramfs::{Initramfs, VFIO_MODULES};
pub use kernel::{CACHE_DIR_VAR, Kernel};
pub use machine::{DmarFault, EDU_ADDRESS, GuestRun, Machine};
pub use modules::{Module, ModuleTree};
