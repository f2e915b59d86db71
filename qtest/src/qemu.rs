//! Starting and stopping QEMU: a q35 machine with an `intel-iommu` and an
//! `edu` device, no firmware, driven over qtest on its standard streams.
//!
//! The machine has a real TCG vCPU (Debian's QEMU has no `qtest`
//! accelerator), which must run no firmware: SeaBIOS would program PCI and do
//! DMA of its own. The BIOS image is 64 KiB of `0xFF` with `cli; hlt; jmp
//! back to the hlt` at the reset vector. `-icount shift=0,sleep=off` lets
//! virtual time jump to the next timer while the vCPU idles, so the edu
//! device's 100 ms DMA timer fires at once (qtest's `clock_step` needs the
//! qtest accelerator and is refused); `pit=off` keeps that idle loop from
//! spinning a host core.

use std::cell::RefCell;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use vtd_regs::PhysAddr;

use crate::client::Qtest;
use crate::error::{Error, Result};

/// The QEMU binary, looked up on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// Guest RAM size: `[0, RAM_SIZE)` is RAM (with the legacy VGA/ROM window at
/// 0xA0000..0x100000, which tests leave alone).
pub const RAM_SIZE: u64 = 256 << 20;

/// Where q35 puts the `intel-iommu` register page (DMAR unit 0).
pub const VTD_BASE: PhysAddr = PhysAddr::new(0xFED9_0000);

/// How long one qtest answer may take: generous, because the first answer
/// waits for QEMU's start-up on a loaded machine.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// The reset vector's offset in the 64 KiB BIOS image (it is mapped below
/// 4 GiB, so the CPU starts at 0xFFFF_FFF0).
const RESET_VECTOR: usize = 0xFFF0;
/// `cli; hlt; jmp $-1` (back to the `hlt`).
const HALT_CODE: [u8; 4] = [0xFA, 0xF4, 0xEB, 0xFD];
/// Size of the BIOS image.
const BIOS_SIZE: usize = 64 * 1024;

/// The trace log in QEMU's directory (see [`Qemu::trace_log`]).
const TRACE_LOG: &str = "trace.log";

/// How much of QEMU's stderr an error message quotes.
const STDERR_TAIL: usize = 2000;

/// Options of QEMU's `intel-iommu` device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuOptions {
    /// `aw-bits`: the guest address width, 39 (3-level tables) or 48.
    pub aw_bits: u8,
    /// `caching-mode`: sets CAP.CM, so software must invalidate after a map.
    pub caching_mode: bool,
    /// `device-iotlb`: sets ECAP.DT (ATS support).
    pub device_iotlb: bool,
    /// `intremap`: interrupt remapping (ECAP.IR); QEMU's default under TCG is on.
    pub intremap: bool,
    /// `x-scalable-mode`: scalable mode (ECAP.SMTS, SLTS, SRS; QEMU 7.2:
    /// second-stage and pass-through PASID entries, 256-bit descriptors).
    pub scalable_mode: bool,
}

impl Default for IommuOptions {
    /// QEMU's defaults: 39-bit, no caching mode, no device-IOTLB, interrupt
    /// remapping on.
    fn default() -> Self {
        IommuOptions {
            aw_bits: 39,
            caching_mode: false,
            device_iotlb: false,
            intremap: true,
            scalable_mode: false,
        }
    }
}

impl IommuOptions {
    /// The `-device` argument.
    fn device_arg(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "intel-iommu,aw-bits={},caching-mode={},device-iotlb={},intremap={}{}",
            self.aw_bits,
            on(self.caching_mode),
            on(self.device_iotlb),
            on(self.intremap),
            if self.scalable_mode { ",x-scalable-mode=on" } else { "" }
        )
    }
}

/// A running QEMU, killed on drop.
pub struct Qemu {
    qtest: Qtest,
    child: Child,
    dir: PathBuf,
    noted: RefCell<Option<Error>>,
}

impl Qemu {
    /// Starts QEMU with an `intel-iommu` configured by `iommu` and an `edu`
    /// device (00:01.0, source id 0x0008) whose DMA addresses are not masked.
    ///
    /// Fails with [`Error::QemuNotFound`] when the binary is missing.
    pub fn start(iommu: &IommuOptions) -> Result<Self> {
        Self::start_binary(QEMU_BINARY, iommu)
    }

    fn start_binary(binary: &'static str, iommu: &IommuOptions) -> Result<Self> {
        let dir = make_temp_dir()?;
        let (child, qtest) = match Self::spawn(binary, iommu, &dir) {
            Ok(spawned) => spawned,
            Err(e) => {
                // Best effort: the directory only holds the BIOS image.
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here on, dropping `qemu` kills QEMU and removes the directory.
        let qemu = Qemu { qtest, child, dir, noted: RefCell::new(None) };
        qemu.handshake()?;
        Ok(qemu)
    }

    /// Waits for QEMU to answer its first command, so that a QEMU that
    /// refused its options fails here, with its stderr.
    fn handshake(&self) -> Result<()> {
        const COMMAND: &str = "endianness";
        let answer = self.qtest.command(COMMAND)?;
        if answer == "little" {
            Ok(())
        } else {
            Err(Error::BadAnswer { command: COMMAND.to_owned(), answer })
        }
    }

    fn spawn(binary: &'static str, iommu: &IommuOptions, dir: &Path) -> Result<(Child, Qtest)> {
        let bios = dir.join("halt.bin");
        fs::write(&bios, halt_image()).map_err(|e| Error::io("writing the BIOS image", &e))?;
        let stderr_path = dir.join("stderr.log");
        let stderr =
            fs::File::create(&stderr_path).map_err(|e| Error::io("creating stderr.log", &e))?;
        let mut child = Command::new(binary)
            .args(["-machine", "q35,pit=off", "-accel", "tcg"])
            .args(["-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none"])
            .args(["-m", &format!("{}M", RAM_SIZE >> 20)])
            .arg("-bios")
            .arg(&bios)
            .args(["-icount", "shift=0,sleep=off"])
            .args(["-device", &iommu.device_arg()])
            .args(["-device", "edu,dma_mask=0xffffffffffffffff"])
            // Interrupts delivered, and QEMU's interrupt remapping, as trace
            // events in a log (qtest itself does not see MSIs).
            .args(["-trace", "apic_deliver_irq", "-trace", "vtd_ir*", "-D"])
            .arg(dir.join(TRACE_LOG))
            .args(["-qtest", "stdio", "-qtest-log", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::QemuNotFound { binary },
                _ => Error::io("starting QEMU", &e),
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Io { op: "opening QEMU's pipes", kind: std::io::ErrorKind::Other });
        };
        let (tx, rx) = channel();
        // The reader ends at EOF, when QEMU exits or is killed.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let diagnose = Box::new(move || stderr_tail(&stderr_path));
        Ok((child, Qtest::new(Box::new(stdin), rx, ANSWER_TIMEOUT, diagnose)))
    }

    /// The file QEMU writes its trace events to: every interrupt a local
    /// APIC accepts (`apic_deliver_irq`) and the `intel-iommu`'s interrupt
    /// remapping (`vtd_ir_*`); complete up to the last qtest round trip.
    pub fn trace_log(&self) -> PathBuf {
        self.dir.join(TRACE_LOG)
    }

    /// The qtest connection.
    pub fn qtest(&self) -> &Qtest {
        &self.qtest
    }

    /// Records an error met by an adapter whose trait cannot return it
    /// ([`Mmio`](vtd_regs::Mmio), [`PhysMem`](vtd_regs::PhysMem)); the first
    /// one is kept for [`check`](Self::check).
    pub(crate) fn note(&self, e: Error) {
        let mut noted = self.noted.borrow_mut();
        if noted.is_none() {
            *noted = Some(e);
        }
    }

    /// The first error an adapter could not report through its trait (an MMIO
    /// read then returned all ones, a memory access `MemError::OutOfRange`).
    /// Tests call it at the end to be sure nothing was lost.
    pub fn check(&self) -> Result<()> {
        match self.noted.borrow().as_ref() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // QEMU ignores EOF on stdin while icount keeps it busy: kill and reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The 64 KiB BIOS image: 0xFF everywhere, a halt loop at the reset vector.
fn halt_image() -> Vec<u8> {
    let mut image = vec![0xFF; BIOS_SIZE];
    image[RESET_VECTOR..RESET_VECTOR + HALT_CODE.len()].copy_from_slice(&HALT_CODE);
    image
}

/// A fresh private directory for one QEMU's files.
fn make_temp_dir() -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("viommu-qtest-{}-{n}", std::process::id()));
    // A leftover of an earlier process with the same pid is stale.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).map_err(|e| Error::io("creating a temporary directory", &e))?;
    Ok(dir)
}

/// The last few lines of QEMU's stderr.
fn stderr_tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let start = text.len().saturating_sub(STDERR_TAIL);
            let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text[start..].to_owned()
        }
        Err(e) => format!("(stderr unreadable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_image_has_the_halt_loop_at_the_reset_vector() {
        let image = halt_image();
        assert_eq!(image.len(), 0x10000);
        assert_eq!(&image[0xFFF0..0xFFF4], &[0xFA, 0xF4, 0xEB, 0xFD]);
        assert!(image[..0xFFF0].iter().chain(&image[0xFFF4..]).all(|b| *b == 0xFF));
    }

    #[test]
    fn a_missing_binary_names_the_package_to_install() {
        let Err(e) = Qemu::start_binary("viommu-no-such-qemu", &IommuOptions::default()) else {
            panic!("a missing binary must fail");
        };
        assert_eq!(e, Error::QemuNotFound { binary: "viommu-no-such-qemu" });
        assert!(e.to_string().contains("apt-get install qemu-system-x86"), "{e}");
    }

    #[test]
    fn options_qemu_refuses_fail_at_start_with_its_message() {
        let options = IommuOptions { aw_bits: 40, ..IommuOptions::default() };
        match Qemu::start(&options) {
            Err(Error::Closed { stderr }) => assert!(stderr.contains("aw-bits"), "{stderr}"),
            Err(e) => panic!("expected QEMU to exit, got {e}"),
            Ok(_) => panic!("QEMU accepted aw-bits=40"),
        }
    }

    #[test]
    fn device_argument() {
        assert_eq!(
            IommuOptions::default().device_arg(),
            "intel-iommu,aw-bits=39,caching-mode=off,device-iotlb=off,intremap=on"
        );
        let o = IommuOptions { aw_bits: 48, caching_mode: true, ..IommuOptions::default() };
        assert_eq!(
            o.device_arg(),
            "intel-iommu,aw-bits=48,caching-mode=on,device-iotlb=off,intremap=on"
        );
        let s = IommuOptions { scalable_mode: true, ..IommuOptions::default() };
        assert!(s.device_arg().ends_with(",intremap=on,x-scalable-mode=on"));
    }
}
