//! [`Machine`]: QEMU (TCG, q35, `intel-iommu` with interrupt remapping, and
//! `edu`) booting a [`Kernel`] with an [`Initramfs`](crate::Initramfs), and
//! [`GuestRun`]: what came back.

use std::env;
use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::initramfs::MARK;
use crate::kernel::Kernel;

/// The PCI address of the `edu` device in the guest (slot 2 of bus 0; the
/// machine has no other PCI device but q35's own).
pub const EDU_ADDRESS: &str = "0000:00:02.0";

/// The QEMU binary.
const QEMU_BINARY: &str = "qemu-system-x86_64";

/// A QEMU machine to boot the guest on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Guest RAM in MiB (default 512).
    pub memory_mib: u32,
    /// Whether the emulated VT-d reports caching mode (CAP.CM), so the guest
    /// kernel invalidates on map too (default off).
    pub caching_mode: bool,
    /// `edu`'s DMA address mask (default all 64 bits; QEMU's own default
    /// masks DMA addresses to 28 bits).
    pub edu_dma_mask: u64,
    /// Whether the guest's clock skips the time its CPU idles (QEMU's
    /// `-icount shift=auto,sleep=off`: instructions pace the clock, and an
    /// idle CPU jumps to the next timer). `edu` finishes a DMA 100 ms of
    /// guest time after it was started: a program that sleeps meanwhile
    /// waits microseconds instead (default off).
    pub skip_idle_time: bool,
    /// The longest the guest may run before QEMU is killed (default 60 s).
    pub timeout: Duration,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            memory_mib: 512,
            caching_mode: false,
            edu_dma_mask: u64::MAX,
            skip_idle_time: false,
            timeout: Duration::from_secs(60),
        }
    }
}

impl Machine {
    /// QEMU's command line for `kernel` with the initramfs at `initrd`.
    fn command(&self, kernel: &Kernel, initrd: &std::path::Path) -> Command {
        let mut iommu = String::from("intel-iommu,intremap=on");
        if self.caching_mode {
            iommu.push_str(",caching-mode=on");
        }
        let mut cmd = Command::new(QEMU_BINARY);
        cmd.args(["-machine", "q35,kernel-irqchip=split", "-accel", "tcg", "-smp", "1"])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"])
            .args(["-device", &iommu])
            .args(if self.skip_idle_time { &["-icount", "shift=auto,sleep=off"][..] } else { &[] })
            .args(["-device", &format!("edu,addr=02.0,dma_mask={:#x}", self.edu_dma_mask)])
            .arg("-kernel")
            .arg(kernel.image())
            .arg("-initrd")
            .arg(initrd)
            // loglevel=3: the console shows only critical messages (a panic),
            // not the program's neighbours; the whole log comes from dmesg.
            .args(["-append", "console=ttyS0 intel_iommu=on iommu.strict=1 panic=-1 loglevel=3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Boots `kernel` with `initramfs` (a [`crate::Initramfs::build`]) and
    /// waits for the guest to power off.
    ///
    /// Fails with [`Error::QemuNotFound`] when QEMU is missing, with
    /// [`Error::Timeout`] (QEMU killed) when the guest runs past
    /// [`timeout`](Self::timeout), and with [`Error::NoResult`] when it ends
    /// without the program's exit status.
    pub fn run(&self, kernel: &Kernel, initramfs: &[u8]) -> Result<GuestRun> {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let initrd = env::temp_dir().join(format!(
            "viommu-linux-guest-{}-{}.cpio",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&initrd, initramfs).map_err(|e| Error::io("writing the initramfs", &e))?;
        let result = self.boot(kernel, &initrd);
        let _ = fs::remove_file(&initrd);
        result
    }

    fn boot(&self, kernel: &Kernel, initrd: &std::path::Path) -> Result<GuestRun> {
        let start = Instant::now();
        let mut child = self.command(kernel, initrd).spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::QemuNotFound,
            _ => Error::io("starting QEMU", &e),
        })?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                String::from_utf8_lossy(&bytes).replace('\r', "")
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let status = loop {
            match child.try_wait().map_err(|e| Error::io("waiting for QEMU", &e))? {
                Some(status) => break Some(status),
                None if start.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        let elapsed = start.elapsed();
        let console = stdout.join().unwrap_or_default();
        let qemu_stderr = stderr.join().unwrap_or_default();
        let Some(status) = status else {
            return Err(Error::Timeout { seconds: self.timeout.as_secs(), console });
        };
        GuestRun::parse(console, qemu_stderr, elapsed).map_err(|(console, stderr)| {
            Error::NoResult { qemu_status: status.code(), console, stderr }
        })
    }
}

/// What a guest run gave back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestRun {
    /// The program's exit status.
    pub exit_code: i32,
    /// What the program printed (standard output and error, on the console).
    pub output: String,
    /// The guest kernel's log (`dmesg` after the program ended).
    pub kernel_log: String,
    /// The whole console.
    pub console: String,
    /// QEMU's standard error (its own VT-d reports translation failures
    /// there).
    pub qemu_stderr: String,
    /// From QEMU's start to its exit.
    pub elapsed: Duration,
}

impl GuestRun {
    /// Splits the console at `/init`'s markers; gives the console and
    /// stderr back when the exit status is not there.
    fn parse(
        console: String,
        qemu_stderr: String,
        elapsed: Duration,
    ) -> core::result::Result<Self, (String, String)> {
        let split = || {
            let (_, rest) = console.split_once(&format!("{MARK}program\n"))?;
            let (output, rest) = rest.split_once(&format!("{MARK}exit "))?;
            let (code, rest) = rest.split_once('\n')?;
            let (kernel_log, _) = rest.split_once(&format!("{MARK}end"))?;
            Some((output.to_owned(), code.trim().parse().ok()?, kernel_log.to_owned()))
        };
        match split() {
            Some((output, exit_code, kernel_log)) => {
                Ok(GuestRun { exit_code, output, kernel_log, console, qemu_stderr, elapsed })
            }
            None => Err((console, qemu_stderr)),
        }
    }

    /// The DMA remapping faults the guest kernel's `intel-iommu` driver
    /// logged (its `DMAR: [DMA Read|Write ...] ... fault addr ...` lines).
    pub fn dmar_faults(&self) -> Vec<DmarFault> {
        self.kernel_log.lines().filter_map(DmarFault::parse).collect()
    }
}

/// One DMA remapping fault, as Linux's `intel-iommu` logs it (VT-d §7.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmarFault {
    /// A write (DMA to memory) rather than a read.
    pub write: bool,
    /// The faulting address (the IOVA, page-aligned by the hardware).
    pub addr: u64,
    /// The VT-d fault reason (§7.1.3 table; 5 = write to a page not
    /// writable, 6 = read of a page not readable).
    pub reason: u8,
}

impl DmarFault {
    /// Parses `DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault
    /// addr 0x1234000 [fault reason 0x05] ...`.
    fn parse(line: &str) -> Option<Self> {
        let (_, rest) = line.split_once("DMAR: [DMA ")?;
        let write = rest.starts_with("Write");
        if !write && !rest.starts_with("Read") {
            return None;
        }
        let hex = |s: &str| {
            let digits: String = s.chars().take_while(char::is_ascii_hexdigit).collect();
            u64::from_str_radix(&digits, 16).ok()
        };
        let addr = hex(rest.split_once("fault addr 0x")?.1)?;
        let reason = hex(rest.split_once("fault reason 0x")?.1)?;
        Some(DmarFault { write, addr, reason: u8::try_from(reason).ok()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_splits_at_the_markers() {
        let console = format!(
            "boot\n{MARK}program\nhello\n{MARK}exit 3\n[ 1.0] DMAR: [DMA Write NO_PASID] Request \
             device [00:02.0] fault addr 0x1234000 [fault reason 0x05] PTE Write access is not \
             set\n[ 1.1] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0xfe000 \
             [fault reason 0x06] PTE Read access is not set\n{MARK}end\n"
        );
        let run = GuestRun::parse(console, String::new(), Duration::ZERO).unwrap();
        assert_eq!((run.exit_code, run.output.as_str()), (3, "hello\n"));
        assert_eq!(
            run.dmar_faults(),
            [
                DmarFault { write: true, addr: 0x1234000, reason: 5 },
                DmarFault { write: false, addr: 0xfe000, reason: 6 }
            ]
        );
        assert!(
            GuestRun::parse(format!("{MARK}program\n"), String::new(), Duration::ZERO).is_err()
        );
    }
}
