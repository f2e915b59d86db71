//! [`Kernel`]: the Debian kernel, its modules and busybox, as
//! `scripts/ensure-linux-guest` leaves them in the cache.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The environment variable that overrides the cache directory (the same one
/// `scripts/ensure-linux-guest` reads).
pub const CACHE_DIR_VAR: &str = "VIOMMU_LINUX_GUEST_DIR";

/// A cached Debian kernel: its image, its module tree, and the busybox the
/// initramfs runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    dir: PathBuf,
    release: String,
}

impl Kernel {
    /// The kernel in the default cache: `$VIOMMU_LINUX_GUEST_DIR`, else
    /// `$XDG_CACHE_HOME/viommu/linux-guest`, else
    /// `$HOME/.cache/viommu/linux-guest`.
    ///
    /// Fails with [`Error::KernelMissing`] (naming the script that fetches
    /// it) when the cache is incomplete: never a silent skip.
    pub fn from_cache() -> Result<Self> {
        Self::open(&default_dir())
    }

    /// The kernel cached in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let missing = |missing| Error::KernelMissing { dir: dir.to_owned(), missing };
        let release = fs::read_to_string(dir.join("release")).map_err(|_| missing("release"))?;
        let release = release.trim().to_owned();
        if release.is_empty() {
            return Err(missing("release"));
        }
        for (file, name) in [("vmlinuz", "vmlinuz"), ("busybox", "busybox"), ("modules", "modules")]
        {
            if !dir.join(file).exists() {
                return Err(missing(name));
            }
        }
        Ok(Kernel { dir: dir.to_owned(), release })
    }

    /// The kernel release, e.g. `6.1.0-57-cloud-amd64`.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The kernel image QEMU boots (`-kernel`).
    pub fn image(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    /// The statically linked busybox.
    pub fn busybox(&self) -> PathBuf {
        self.dir.join("busybox")
    }

    /// The module tree (`lib/modules/<release>/` of the package).
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("modules")
    }

    /// The Debian packages (name and version) the cache came from.
    pub fn packages(&self) -> String {
        fs::read_to_string(self.dir.join("packages")).unwrap_or_default()
    }
}

fn default_dir() -> PathBuf {
    if let Some(dir) = env::var_os(CACHE_DIR_VAR) {
        return PathBuf::from(dir);
    }
    let cache = env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("viommu").join("linux-guest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_cache_names_the_script() {
        let dir = env::temp_dir().join(format!("viommu-linux-guest-empty-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err = Kernel::open(&dir).unwrap_err();
        assert_eq!(err, Error::KernelMissing { dir: dir.clone(), missing: "release" });
        assert!(err.to_string().contains("scripts/ensure-linux-guest"));
        fs::write(dir.join("release"), "6.1.0-test\n").unwrap();
        assert!(matches!(Kernel::open(&dir), Err(Error::KernelMissing { missing: "vmlinuz", .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
