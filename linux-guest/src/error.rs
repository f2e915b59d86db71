//! The one error type of the crate: what can go wrong between a test and the
//! Linux guest it boots.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The script that fills the kernel cache.
pub const ENSURE_SCRIPT: &str = "scripts/ensure-linux-guest";

/// A failure to find the kernel, build the initramfs or the test program, or
/// to run the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The kernel cache is missing or incomplete: run [`ENSURE_SCRIPT`].
    KernelMissing {
        /// The cache directory looked at.
        dir: PathBuf,
        /// The file that is not there.
        missing: &'static str,
    },
    /// A kernel module asked for (or one it depends on) is not in the cache.
    ModuleMissing {
        /// The module's name.
        name: String,
    },
    /// A module file could not be read as a kernel module (no ELF
    /// `.modinfo` section, or a compressed module).
    BadModule {
        /// The module's file.
        path: PathBuf,
        /// What is wrong with it.
        what: &'static str,
    },
    /// Module dependencies form a cycle.
    ModuleCycle {
        /// A module on the cycle.
        name: String,
    },
    /// A path or argument that the initramfs or its `/init` cannot hold.
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
    /// The QEMU binary is not on `PATH` (Debian package `qemu-system-x86`,
    /// installed by `scripts/ensure-qemu`).
    QemuNotFound,
    /// Building the static test program failed.
    Build {
        /// The cargo command line.
        command: String,
        /// The end of cargo's standard error.
        stderr: String,
    },
    /// An operating-system error.
    Io {
        /// What was being done.
        op: String,
        /// The error's kind.
        kind: io::ErrorKind,
    },
    /// The guest did not power off in time; QEMU was killed.
    Timeout {
        /// The time allowed, in seconds.
        seconds: u64,
        /// What the guest printed on its console.
        console: String,
    },
    /// The guest ended before reporting its program's exit status (a
    /// kernel panic, a setup step of `/init` that failed, QEMU stopping).
    NoResult {
        /// QEMU's exit status, if it exited.
        qemu_status: Option<i32>,
        /// What the guest printed on its console.
        console: String,
        /// QEMU's standard error.
        stderr: String,
    },
}

impl Error {
    pub(crate) fn io(op: impl Into<String>, e: &io::Error) -> Self {
        Error::Io { op: op.into(), kind: e.kind() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KernelMissing { dir, missing } => write!(
                f,
                "the Linux guest kernel cache {} has no {missing}: run {ENSURE_SCRIPT}",
                dir.display()
            ),
            Error::ModuleMissing { name } => {
                write!(f, "kernel module {name} is not in the cached kernel's modules")
            }
            Error::BadModule { path, what } => {
                write!(f, "{} is not a usable kernel module: {what}", path.display())
            }
            Error::ModuleCycle { name } => write!(f, "kernel module {name} depends on itself"),
            Error::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Error::QemuNotFound => write!(
                f,
                "qemu-system-x86_64 not found: install Debian's qemu-system-x86 (scripts/ensure-qemu)"
            ),
            Error::Build { command, stderr } => write!(f, "`{command}` failed:\n{stderr}"),
            Error::Io { op, kind } => write!(f, "{op}: {kind}"),
            Error::Timeout { seconds, console } => {
                write!(f, "the Linux guest did not finish in {seconds} s; its console:\n{console}")
            }
            Error::NoResult { qemu_status, console, stderr } => write!(
                f,
                "the Linux guest ended without its program's result (QEMU status {qemu_status:?}); \
                 console:\n{console}\nQEMU stderr:\n{stderr}"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
