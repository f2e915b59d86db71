//! The qtest line protocol: one command a line, one answer a line.
//!
//! QEMU answers `OK`, `OK 0xVALUE`, `FAIL ...` or `ERR ...`, and may put
//! asynchronous `IRQ raise N` / `IRQ lower N` lines in between, which are
//! skipped. Accesses go through the CPU's view of the machine (RAM and MMIO,
//! or I/O ports), never through the IOMMU.
//!
//! A malformed command aborts QEMU instead of failing, so every argument is
//! validated before it is sent.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use vtd_regs::PhysAddr;

use crate::error::{Error, Result};

/// The largest `read`/`write` payload sent in one command; longer accesses
/// are split, so that no protocol line grows beyond a few hundred KiB.
const MAX_CHUNK: usize = 64 * 1024;

/// Produces the text that explains why the connection closed (QEMU's stderr).
pub(crate) type Diagnose = Box<dyn Fn() -> String>;

/// A qtest connection: commands out, answer lines in.
///
/// Methods take `&self` (the connection is borrowed only inside a call), so
/// several adapters ([`QtestMmio`](crate::QtestMmio), [`QtestMem`](crate::QtestMem),
/// [`Edu`](crate::Edu)) can share one QEMU. Once QEMU closed the connection or
/// missed an answer, every later command fails with that first error: answers
/// could no longer be matched to commands.
pub struct Qtest {
    io: RefCell<Io>,
    timeout: Duration,
    diagnose: Diagnose,
}

struct Io {
    out: Box<dyn Write>,
    lines: Receiver<String>,
    broken: Option<Error>,
}

impl Qtest {
    /// A connection that writes commands to `out` and receives QEMU's output
    /// line by line (without line ends) from `lines`; a dropped sender means
    /// QEMU closed its end. Each answer is awaited at most `timeout`.
    pub(crate) fn new(
        out: Box<dyn Write>,
        lines: Receiver<String>,
        timeout: Duration,
        diagnose: Diagnose,
    ) -> Self {
        Qtest { io: RefCell::new(Io { out, lines, broken: None }), timeout, diagnose }
    }

    /// Sends one command line and returns the answer's text after `OK`
    /// (trimmed; empty for a bare `OK`). The command is sent as it is: one
    /// QEMU cannot parse (a missing argument, a zero length) aborts QEMU,
    /// which then reads as [`Error::Closed`].
    pub fn command(&self, cmd: &str) -> Result<String> {
        let mut io = self.io.borrow_mut();
        if let Some(e) = &io.broken {
            return Err(e.clone());
        }
        let result = Self::exchange(&mut io, cmd, self.timeout, &self.diagnose)
            .and_then(|answer| self.classify(cmd, answer));
        if let Err(
            e @ (Error::Closed { .. }
            | Error::Timeout { .. }
            | Error::Io { .. }
            | Error::BadAnswer { .. }),
        ) = &result
        {
            io.broken = Some(e.clone());
        }
        result
    }

    /// Splits an answer line into its status and payload. An answer that is
    /// neither `OK`, `FAIL` nor `ERR` means the connection is out of step (or
    /// QEMU is dying: a failed assertion prints `Bail out! ...`); the caller
    /// then treats it as broken.
    fn classify(&self, cmd: &str, answer: String) -> Result<String> {
        let (status, rest) = answer.split_once(' ').unwrap_or((answer.as_str(), ""));
        match status {
            "OK" => Ok(rest.trim().to_owned()),
            "FAIL" | "ERR" => Err(Error::Refused { command: cmd.to_owned(), answer }),
            "Bail" => Err(Error::Closed { stderr: format!("{answer}\n{}", (self.diagnose)()) }),
            _ => Err(Error::BadAnswer { command: cmd.to_owned(), answer }),
        }
    }

    fn exchange(io: &mut Io, cmd: &str, timeout: Duration, diagnose: &Diagnose) -> Result<String> {
        writeln!(io.out, "{cmd}").and_then(|()| io.out.flush()).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::Closed { stderr: diagnose() },
            _ => Error::io("sending a qtest command", &e),
        })?;
        loop {
            match io.lines.recv_timeout(timeout) {
                Ok(line) if line.starts_with("IRQ ") => continue,
                Ok(line) => return Ok(line),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout { command: cmd.to_owned() });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Closed { stderr: diagnose() });
                }
            }
        }
    }

    /// Sends a command whose answer is `OK 0xVALUE` and parses the value.
    fn value(&self, cmd: &str) -> Result<u64> {
        let payload = self.command(cmd)?;
        payload
            .strip_prefix("0x")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| Error::BadAnswer { command: cmd.to_owned(), answer: payload })
    }

    /// Sends a command whose answer is a bare `OK`.
    fn ok(&self, cmd: &str) -> Result<()> {
        let payload = self.command(cmd)?;
        if payload.is_empty() {
            Ok(())
        } else {
            Err(Error::BadAnswer { command: cmd.to_owned(), answer: payload })
        }
    }

    /// Reads the 32-bit word at `addr`.
    pub fn readl(&self, addr: PhysAddr) -> Result<u32> {
        let cmd = format!("readl {:#x}", addr.as_u64());
        let v = self.value(&cmd)?;
        u32::try_from(v).map_err(|_| Error::BadAnswer { command: cmd, answer: format!("{v:#x}") })
    }

    /// Reads the 64-bit word at `addr`.
    pub fn readq(&self, addr: PhysAddr) -> Result<u64> {
        self.value(&format!("readq {:#x}", addr.as_u64()))
    }

    /// Writes the 32-bit word at `addr`.
    pub fn writel(&self, addr: PhysAddr, value: u32) -> Result<()> {
        self.ok(&format!("writel {:#x} {value:#x}", addr.as_u64()))
    }

    /// Writes the 64-bit word at `addr`.
    pub fn writeq(&self, addr: PhysAddr, value: u64) -> Result<()> {
        self.ok(&format!("writeq {:#x} {value:#x}", addr.as_u64()))
    }

    /// Reads `buf.len()` bytes starting at `addr` (nothing is sent for an
    /// empty buffer: QEMU aborts on a zero-length `read`).
    pub fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        let mut at = addr;
        for chunk in buf.chunks_mut(MAX_CHUNK) {
            let cmd = format!("read {:#x} {:#x}", at.as_u64(), chunk.len());
            let payload = self.command(&cmd)?;
            decode_hex(&payload, chunk)
                .ok_or(Error::BadAnswer { command: cmd, answer: payload })?;
            at = advance(at, chunk.len())?;
        }
        Ok(())
    }

    /// Writes `data` starting at `addr` (nothing is sent for empty data).
    pub fn write(&self, addr: PhysAddr, data: &[u8]) -> Result<()> {
        let mut at = addr;
        for chunk in data.chunks(MAX_CHUNK) {
            let mut cmd = format!("write {:#x} {:#x} 0x", at.as_u64(), chunk.len());
            for b in chunk {
                // Writing to a String cannot fail.
                let _ = write!(cmd, "{b:02x}");
            }
            self.ok(&cmd)?;
            at = advance(at, chunk.len())?;
        }
        Ok(())
    }

    /// Reads the 32-bit I/O port `port`.
    pub fn inl(&self, port: u16) -> Result<u32> {
        let cmd = format!("inl {port:#x}");
        let v = self.value(&cmd)?;
        u32::try_from(v).map_err(|_| Error::BadAnswer { command: cmd, answer: format!("{v:#x}") })
    }

    /// Writes the 32-bit I/O port `port`.
    pub fn outl(&self, port: u16, value: u32) -> Result<()> {
        self.ok(&format!("outl {port:#x} {value:#x}"))
    }

    /// Reads the 8-bit I/O port `port`.
    pub fn inb(&self, port: u16) -> Result<u8> {
        let cmd = format!("inb {port:#x}");
        let v = self.value(&cmd)?;
        u8::try_from(v).map_err(|_| Error::BadAnswer { command: cmd, answer: format!("{v:#x}") })
    }

    /// Writes the 16-bit I/O port `port`.
    pub fn outw(&self, port: u16, value: u16) -> Result<()> {
        self.ok(&format!("outw {port:#x} {value:#x}"))
    }
}

/// `addr + len`, or an error if the access wraps around the address space.
fn advance(addr: PhysAddr, len: usize) -> Result<PhysAddr> {
    addr.checked_add(len as u64).ok_or(Error::OutOfRange { addr, len })
}

/// Decodes `0x`-prefixed hex of exactly `out.len()` bytes into `out`.
fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    let hex = text.strip_prefix("0x")?.as_bytes();
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(s, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Sender, channel};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the client sends.
    #[derive(Clone, Default)]
    struct Sent(Arc<Mutex<Vec<u8>>>);

    impl Write for Sent {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::ErrorKind::Other)?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sent {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn client(answers: &[&str]) -> (Qtest, Sent, Sender<String>) {
        let sent = Sent::default();
        let (tx, rx) = channel();
        for a in answers {
            tx.send((*a).to_owned()).unwrap();
        }
        let q = Qtest::new(
            Box::new(sent.clone()),
            rx,
            Duration::from_millis(20),
            Box::new(|| "qemu: gone".to_owned()),
        );
        (q, sent, tx)
    }

    #[test]
    fn reads_values_and_skips_irq_lines() {
        let (q, sent, _tx) =
            client(&["IRQ raise 10", "OK 0x0000000000000010", "OK 0x00d2008c22260206", "OK"]);
        assert_eq!(q.readl(PhysAddr::new(0xfed9_0000)), Ok(0x10));
        assert_eq!(q.readq(PhysAddr::new(0xfed9_0008)), Ok(0x00d2_008c_2226_0206));
        assert_eq!(q.writel(PhysAddr::new(0x1000), 0xab), Ok(()));
        assert_eq!(sent.text(), "readl 0xfed90000\nreadq 0xfed90008\nwritel 0x1000 0xab\n");
    }

    #[test]
    fn read_and_write_bytes() {
        let (q, sent, _tx) = client(&["OK 0x01ff7e", "OK"]);
        let mut buf = [0u8; 3];
        q.read(PhysAddr::new(0x2000), &mut buf).unwrap();
        assert_eq!(buf, [0x01, 0xff, 0x7e]);
        q.write(PhysAddr::new(0x3000), &[0xde, 0xad]).unwrap();
        q.read(PhysAddr::new(0x4000), &mut []).unwrap();
        assert_eq!(sent.text(), "read 0x2000 0x3\nwrite 0x3000 0x2 0xdead\n");
    }

    #[test]
    fn bad_answers_are_typed() {
        let (q, _sent, _tx) = client(&["FAIL Unknown command 'x'", "OK zz", "OK 0x12", "huh"]);
        assert!(matches!(q.outl(0xcf8, 1), Err(Error::Refused { .. })));
        assert!(matches!(q.inl(0xcfc), Err(Error::BadAnswer { .. })));
        // Two bytes asked, one returned.
        assert!(matches!(q.read(PhysAddr::new(0), &mut [0; 2]), Err(Error::BadAnswer { .. })));
        assert!(matches!(q.writeq(PhysAddr::new(0), 0), Err(Error::BadAnswer { .. })));
        // An unknown answer line means the stream is out of step: it sticks.
        assert!(matches!(q.writeq(PhysAddr::new(0), 0), Err(Error::BadAnswer { .. })));
    }

    #[test]
    fn a_failed_assertion_in_qemu_closes_the_connection() {
        let (q, _sent, _tx) = client(&["Bail out! ERROR:qtest.c:583: assertion failed"]);
        let e = q.command("read 0x0").unwrap_err();
        assert_eq!(
            e,
            Error::Closed {
                stderr: "Bail out! ERROR:qtest.c:583: assertion failed\nqemu: gone".to_owned()
            }
        );
        assert_eq!(q.readl(PhysAddr::new(0)), Err(e));
    }

    #[test]
    fn closed_and_timeout_stick() {
        let (q, _sent, tx) = client(&[]);
        assert!(matches!(q.readl(PhysAddr::new(0)), Err(Error::Timeout { .. })));
        tx.send("OK 0x1".to_owned()).unwrap();
        // The late answer must not be taken for the next command's.
        assert!(matches!(q.readl(PhysAddr::new(0)), Err(Error::Timeout { .. })));

        let (q, _sent, tx) = client(&[]);
        drop(tx);
        let e = q.readl(PhysAddr::new(0)).unwrap_err();
        assert_eq!(e, Error::Closed { stderr: "qemu: gone".to_owned() });
        assert_eq!(q.readl(PhysAddr::new(0)), Err(e));
    }
}
