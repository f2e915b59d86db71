//! Draining the primary fault log (§7.3 and §10.4.14): the fault
//! recording registers from FSTS.FRI on, wrapping around, each cleared by
//! writing 1 to its F bit.

use core::iter::FusedIterator;

use super::RemappingUnit;
use crate::mmio::Mmio;
use crate::regs::{FaultRecord, FaultRecords, Fsts};

/// An iterator over the pending fault records of a unit, returned by
/// [`RemappingUnit::drain_faults`]. Each record is cleared (F written with 1)
/// as it is returned; iteration stops at the first free register, after
/// CAP.NFR + 1 registers at most.
#[derive(Debug)]
#[must_use = "faults are only read and cleared while the iterator is advanced"]
pub struct FaultDrain<'a, M: Mmio> {
    mmio: &'a mut M,
    records: FaultRecords,
    next: u16,
    remaining: u16,
    overflowed: bool,
}

impl<M: Mmio> FaultDrain<'_, M> {
    /// Whether FSTS.PFO was set: faults were lost because every register was
    /// full. The bit has been cleared.
    pub const fn overflowed(&self) -> bool {
        self.overflowed
    }
}

impl<M: Mmio> Iterator for FaultDrain<'_, M> {
    type Item = FaultRecord;

    fn next(&mut self) -> Option<FaultRecord> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let index = self.next;
        let raw = self.records.read(&*self.mmio, index)?;
        if !raw.f() {
            self.remaining = 0;
            return None;
        }
        self.records.clear(&mut *self.mmio, index);
        self.next = self.records.next(index);
        Some(raw.decode(index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

impl<M: Mmio> FusedIterator for FaultDrain<'_, M> {}

impl<M: Mmio> RemappingUnit<M> {
    /// Reads and clears the pending primary faults. Reads FSTS, clears PFO
    /// (write 1), and if PPF is set returns an iterator over the recording
    /// registers starting at FRI (PPF itself is read-only: it clears once
    /// every F is clear).
    pub fn drain_faults(&mut self) -> FaultDrain<'_, M> {
        let fsts: Fsts = self.mmio.read_reg();
        let records = FaultRecords::new(self.cap);
        if fsts.pfo() {
            self.mmio.write_reg(Fsts(0).with_pfo(true));
        }
        let fri = fsts.fri() as u16;
        FaultDrain {
            mmio: &mut self.mmio,
            records,
            next: if fri < records.count() { fri } else { 0 },
            remaining: if fsts.ppf() { records.count() } else { 0 },
            overflowed: fsts.pfo(),
        }
    }
}
