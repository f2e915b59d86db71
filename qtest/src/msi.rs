//! Interrupts on the QEMU machine: what the local APICs received, read from
//! QEMU's trace log (`apic_deliver_irq ... vector N`), since qtest cannot
//! see an MSI (see `shared/QEMU-VTD.md`).

use std::fs;

use crate::error::{Error, Result};
use crate::qemu::Qemu;

impl Qemu {
    /// The vectors local APICs received so far, in order, from the trace
    /// log (`apic_deliver_irq`).
    pub fn delivered_vectors(&self) -> Result<Vec<u8>> {
        // A round trip, so QEMU has handled everything sent before.
        self.qtest().command("endianness")?;
        let log = fs::read_to_string(self.trace_log())
            .map_err(|e| Error::io("reading the trace log", &e))?;
        Ok(log
            .lines()
            .filter(|l| l.contains("apic_deliver_irq"))
            .filter_map(|l| l.split("vector ").nth(1)?.split_whitespace().next()?.parse().ok())
            .collect())
    }
}
