//! Which kind of KVM this host offers.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

/// The KVM device node.
pub const KVM_DEV: &str = "/dev/kvm";
/// Environment variable that replaces [`KVM_DEV`] (tests point it at a
/// missing path to exercise the no-KVM exit).
pub const KVM_DEV_ENV: &str = "VIOMMU_EVAL_KVM_DEV";

/// The KVM device node to use: `$VIOMMU_EVAL_KVM_DEV` or [`KVM_DEV`].
#[must_use]
pub fn kvm_dev() -> PathBuf {
    std::env::var_os(KVM_DEV_ENV).map_or_else(|| PathBuf::from(KVM_DEV), PathBuf::from)
}

/// How KVM runs guests on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmKind {
    /// Hardware virtualization with Intel VMX (`kvm_intel`).
    Vmx,
    /// Hardware virtualization with AMD SVM (`kvm_amd`).
    Svm,
    /// Pagetable-based Virtual Machine (`kvm_pvm`): software
    /// virtualization by shadow paging, guest at hardware CPL 3.
    Pvm,
    /// `/dev/kvm` exists but no known vendor module is loaded.
    Unknown,
    /// No `/dev/kvm`.
    None,
}

impl KvmKind {
    /// Detects the KVM flavour from `/dev/kvm` and the loaded modules.
    #[must_use]
    pub fn detect() -> Self {
        if !kvm_dev().exists() {
            return Self::None;
        }
        let loaded = |m: &str| Path::new("/sys/module").join(m).exists();
        if loaded("kvm_intel") {
            Self::Vmx
        } else if loaded("kvm_amd") {
            Self::Svm
        } else if loaded("kvm_pvm") {
            Self::Pvm
        } else {
            Self::Unknown
        }
    }

    /// True when a guest runs on hardware-assisted virtualization.
    #[must_use]
    pub fn hardware_assisted(self) -> bool {
        matches!(self, Self::Vmx | Self::Svm)
    }
}

impl fmt::Display for KvmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vmx => "KVM with Intel VMX (kvm_intel)",
            Self::Svm => "KVM with AMD SVM (kvm_amd)",
            Self::Pvm => "KVM PVM, pagetable-based software virtualization (kvm_pvm)",
            Self::Unknown => "KVM of unknown flavour",
            Self::None => "no KVM",
        })
    }
}

/// Value of a `kvm_pvm` module parameter, if the module is loaded.
#[must_use]
pub fn pvm_param(name: &str) -> Option<String> {
    fs::read_to_string(Path::new("/sys/module/kvm_pvm/parameters").join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// TSC ticks per second, measured against the monotonic clock.
#[must_use]
pub fn tsc_hz() -> f64 {
    let start = std::time::Instant::now();
    let t0 = rdtsc();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let t1 = rdtsc();
    (t1 - t0) as f64 / start.elapsed().as_secs_f64()
}

/// The host's time-stamp counter.
#[must_use]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects and is available on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}
