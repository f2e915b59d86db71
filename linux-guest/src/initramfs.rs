//! [`Initramfs`]: the guest's whole user space: busybox, kernel modules, the
//! test program, and an `/init` that sets the machine up, runs the program,
//! prints its exit status and the kernel log between markers, and powers
//! off.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cpio::Cpio;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::modules::ModuleTree;

/// The modules VFIO type1 with `vfio-pci` needs (their dependencies are
/// added in order): `vfio_pci` does not pull in the type1 IOMMU driver.
pub const VFIO_MODULES: [&str; 2] = ["vfio_iommu_type1", "vfio_pci"];

/// What every marker line `/init` prints starts with.
pub(crate) const MARK: &str = "@@viommu-linux-guest:";

/// An initramfs being described; [`build`](Self::build) packs it.
#[derive(Clone, Debug)]
pub struct Initramfs {
    kernel: Kernel,
    modules: Vec<(String, String)>,
    vfio_devices: Vec<String>,
    binaries: Vec<(String, PathBuf)>,
    program: Vec<String>,
}

impl Initramfs {
    /// Busybox from `kernel`'s cache and an `/init` that mounts `/proc`,
    /// `/sys` and `/dev`.
    pub fn new(kernel: &Kernel) -> Self {
        Initramfs {
            kernel: kernel.clone(),
            modules: Vec::new(),
            vfio_devices: Vec::new(),
            binaries: Vec::new(),
            program: Vec::new(),
        }
    }

    /// Loads module `name` (after the modules it depends on) with
    /// `options` (`key=value` words; busybox `insmod` does not read module
    /// options from the kernel command line).
    #[must_use]
    pub fn module(mut self, name: &str, options: &str) -> Self {
        self.modules.push((name.to_owned(), options.to_owned()));
        self
    }

    /// Loads [`VFIO_MODULES`] and binds the PCI function `address`
    /// (`0000:00:02.0`) to `vfio-pci`: `/dev/vfio/vfio` and
    /// `/dev/vfio/<group>` appear.
    #[must_use]
    pub fn bind_vfio_pci(mut self, address: &str) -> Self {
        for m in VFIO_MODULES {
            if !self.modules.iter().any(|(name, _)| name == m) {
                self.modules.push((m.to_owned(), String::new()));
            }
        }
        self.vfio_devices.push(address.to_owned());
        self
    }

    /// Copies the host file `path` (a static executable) to `/bin/<name>`.
    #[must_use]
    pub fn binary(mut self, name: &str, path: &Path) -> Self {
        self.binaries.push((name.to_owned(), path.to_owned()));
        self
    }

    /// The program `/init` runs, with its arguments (`argv[0]` first, a name
    /// under `/bin`).
    #[must_use]
    pub fn run<S: AsRef<str>>(mut self, argv: &[S]) -> Self {
        self.program = argv.iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// The packed archive (uncompressed newc cpio: nothing to inflate under
    /// TCG).
    pub fn build(&self) -> Result<Vec<u8>> {
        let tree = ModuleTree::scan(&self.kernel.modules_dir())?;
        let names: Vec<&str> = self.modules.iter().map(|(n, _)| n.as_str()).collect();
        let order = tree.load_order(&names)?;
        let mut cpio = Cpio::default();
        for dir in ["bin", "dev", "lib", "lib/modules", "proc", "sys", "tmp"] {
            cpio.dir(dir);
        }
        cpio.char_dev("dev/console", 5, 1);
        cpio.file("bin/busybox", 0o755, &read(&self.kernel.busybox())?);
        cpio.symlink("bin/sh", "busybox");
        let mut insmods = String::new();
        for module in &order {
            let file = format!("lib/modules/{}.ko", module.name);
            cpio.file(&file, 0o644, &read(&module.path)?);
            let options = self
                .modules
                .iter()
                .find(|(n, _)| n.replace('-', "_") == module.name)
                .map_or("", |(_, o)| o.as_str());
            insmods.push_str(&format!("step insmod /{file} {}\n", shell_words(options)?));
        }
        for (name, path) in &self.binaries {
            cpio.file(&format!("bin/{}", shell_word(name)?), 0o755, &read(path)?);
        }
        let mut binds = String::new();
        for dev in &self.vfio_devices {
            let dev = shell_word(dev)?;
            binds.push_str(&format!(
                "step sh -c 'echo vfio-pci > /sys/bus/pci/devices/{dev}/driver_override'\n\
                 step sh -c 'echo {dev} > /sys/bus/pci/drivers_probe'\n"
            ));
        }
        let program =
            self.program.iter().map(|a| shell_word(a)).collect::<Result<Vec<_>>>()?.join(" ");
        if program.is_empty() {
            return Err(Error::InvalidArgument { what: "the initramfs runs no program".into() });
        }
        let init = format!(
            "#!/bin/busybox sh\n\
             /bin/busybox --install -s /bin\n\
             export PATH=/bin\n\
             step() {{ \"$@\" || {{ echo \"{MARK}setup-failed $*\"; dmesg; poweroff -f; }}; }}\n\
             step mount -t proc proc /proc\n\
             step mount -t sysfs sysfs /sys\n\
             step mount -t devtmpfs devtmpfs /dev\n\
             {insmods}{binds}\
             echo \"{MARK}program\"\n\
             /bin/{program}\n\
             echo \"{MARK}exit $?\"\n\
             dmesg\n\
             echo \"{MARK}end\"\n\
             poweroff -f\n"
        );
        cpio.file("init", 0o755, init.as_bytes());
        Ok(cpio.finish())
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), &e))
}

/// `word` if the shell of `/init` takes it as one word with no quoting.
fn shell_word(word: &str) -> Result<&str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:=/+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        Ok(word)
    } else {
        Err(Error::InvalidArgument { what: format!("{word:?} is not a plain shell word") })
    }
}

/// `words` (space-separated plain words).
fn shell_words(words: &str) -> Result<&str> {
    words.split_whitespace().try_for_each(|w| shell_word(w).map(|_| ()))?;
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_words_reach_the_shell() {
        assert_eq!(shell_word("0000:00:02.0"), Ok("0000:00:02.0"));
        assert_eq!(
            shell_words("allow_unsafe_interrupts=1 x=2"),
            Ok("allow_unsafe_interrupts=1 x=2")
        );
        for bad in ["", "a b", "$(reboot)", "a;b", "'", "a\nb"] {
            assert!(shell_word(bad).is_err(), "{bad:?}");
        }
        assert!(shell_words("ok; reboot").is_err());
    }
}
