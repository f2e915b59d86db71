//! The one error type of the crate: what can go wrong between a test and QEMU.

use std::fmt;
use std::io;

use vtd_regs::{MemError, PhysAddr, UnitError};

/// The Debian package that provides the QEMU binary the tests drive.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// A failure to start QEMU, to talk to it, or of a device it emulates.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The QEMU binary is not on `PATH`.
    QemuNotFound {
        /// The binary that was looked for.
        binary: &'static str,
    },
    /// An operating-system error while setting QEMU up or talking to it.
    Io {
        /// What was being done.
        op: &'static str,
        /// The error's kind.
        kind: io::ErrorKind,
    },
    /// QEMU closed the connection (it exited or crashed).
    Closed {
        /// The end of QEMU's standard error, for the diagnosis.
        stderr: String,
    },
    /// QEMU did not answer a command in time.
    Timeout {
        /// The command that went unanswered.
        command: String,
    },
    /// QEMU answered a command with `FAIL` or `ERR`.
    Refused {
        /// The command.
        command: String,
        /// QEMU's answer.
        answer: String,
    },
    /// QEMU's answer could not be parsed.
    BadAnswer {
        /// The command.
        command: String,
        /// QEMU's answer.
        answer: String,
    },
    /// An argument QEMU would not survive (a malformed command aborts QEMU
    /// instead of failing), rejected before sending.
    InvalidArgument {
        /// What is wrong.
        what: &'static str,
    },
    /// A physical access outside guest RAM or the register page.
    OutOfRange {
        /// The first byte of the access.
        addr: PhysAddr,
        /// Its length in bytes.
        len: usize,
    },
    /// No PCI function with this vendor and device id on bus 0.
    DeviceNotFound {
        /// PCI vendor id.
        vendor: u16,
        /// PCI device id.
        device: u16,
    },
    /// A device operation did not complete within its time bound.
    DeviceTimeout {
        /// What was waited for.
        what: &'static str,
    },
    /// A remapping unit operation the test needed failed.
    Unit(UnitError),
    /// A guest memory access the test needed failed.
    Memory(MemError),
}

impl From<UnitError> for Error {
    fn from(e: UnitError) -> Self {
        Error::Unit(e)
    }
}

impl From<MemError> for Error {
    fn from(e: MemError) -> Self {
        Error::Memory(e)
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, e: &io::Error) -> Self {
        Error::Io { op, kind: e.kind() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QemuNotFound { binary } => write!(
                f,
                "{binary} not found on PATH: install the Debian package {QEMU_PACKAGE} \
                 (`apt-get install {QEMU_PACKAGE}`, or run scripts/ensure-qemu)"
            ),
            Error::Io { op, kind } => write!(f, "{op}: {kind}"),
            Error::Closed { stderr } => {
                write!(f, "QEMU closed the qtest connection; its stderr ends with:\n{stderr}")
            }
            Error::Timeout { command } => write!(f, "QEMU did not answer `{command}` in time"),
            Error::Refused { command, answer } => {
                write!(f, "QEMU refused `{command}`: {answer}")
            }
            Error::BadAnswer { command, answer } => {
                write!(f, "unexpected answer to `{command}`: {answer:?}")
            }
            Error::InvalidArgument { what } => write!(f, "invalid qtest argument: {what}"),
            Error::OutOfRange { addr, len } => {
                write!(f, "access {:#x}+{len:#x} is outside the window", addr.as_u64())
            }
            Error::DeviceNotFound { vendor, device } => {
                write!(f, "no PCI device {vendor:04x}:{device:04x} on bus 0")
            }
            Error::DeviceTimeout { what } => write!(f, "timed out waiting for {what}"),
            Error::Unit(e) => write!(f, "remapping unit: {e}"),
            Error::Memory(e) => write!(f, "guest memory: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
