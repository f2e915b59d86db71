//! Buffer-level DMA: a device reading or writing a buffer of any length at
//! an IOVA, one translation per page as a unit performs it (§3.6), for
//! tests and device models that move whole buffers.

use core::fmt;

use vtd_regs::{Iova, MemError, PAGE_SIZE, PhysAddr, PhysMem, SourceId};

use crate::Access;
use crate::emulator::Emulator;
use crate::fault_log::Fault;

/// Why a buffer DMA stopped: the translation of a page faulted (and was
/// recorded as the unit records faults), or memory refused the access.
/// Bytes before the failing page were transferred.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DmaError {
    /// A page's translation faulted.
    Fault(Fault),
    /// The memory behind a translated page refused the access.
    Memory(MemError),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::Fault(fault) => {
                write!(f, "DMA fault at {:?}: {}", fault.addr, fault.reason.description())
            }
            DmaError::Memory(e) => write!(f, "DMA: {e}"),
        }
    }
}

impl core::error::Error for DmaError {}

impl<M: PhysMem, const I: usize, const C: usize> Emulator<M, I, C> {
    /// The device `source` reads `buf.len()` bytes at `iova` into `buf`.
    ///
    /// # Errors
    /// The first page that faults or whose memory refuses the read.
    pub fn dma_read(&self, source: SourceId, iova: Iova, buf: &mut [u8]) -> Result<(), DmaError> {
        let mut done = 0;
        for (at, len) in pages(iova, buf.len()) {
            let phys = self.translate(source, at, Access::Read).map_err(DmaError::Fault)?;
            let chunk = buf.get_mut(done..done + len).unwrap_or_default();
            self.memory().read_bytes(phys, chunk).map_err(DmaError::Memory)?;
            done += len;
        }
        Ok(())
    }

    /// The device `source` writes `data` at `iova`.
    ///
    /// # Errors
    /// The first page that faults or whose memory refuses the write.
    pub fn dma_write(&self, source: SourceId, iova: Iova, data: &[u8]) -> Result<(), DmaError> {
        let mut done = 0;
        for (at, len) in pages(iova, data.len()) {
            let phys: PhysAddr =
                self.translate(source, at, Access::Write).map_err(DmaError::Fault)?;
            let chunk = data.get(done..done + len).unwrap_or_default();
            self.memory().write_bytes(phys, chunk).map_err(DmaError::Memory)?;
            done += len;
        }
        Ok(())
    }
}

/// The pieces of `[iova, iova + len)` that each lie in one 4 KiB page.
fn pages(iova: Iova, len: usize) -> impl Iterator<Item = (Iova, usize)> {
    let mut at = iova.as_u64();
    let end = at.saturating_add(len as u64);
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = ((at / PAGE_SIZE) + 1).saturating_mul(PAGE_SIZE).min(end);
        let piece = (Iova::new(at), (next - at) as usize);
        at = next;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_split_at_page_boundaries() {
        let v: std::vec::Vec<_> = pages(Iova::new(0x1ff0), 0x1020).collect();
        assert_eq!(
            v,
            [(Iova::new(0x1ff0), 0x10), (Iova::new(0x2000), 0x1000), (Iova::new(0x3000), 0x10)]
        );
        assert_eq!(pages(Iova::new(0x5000), 0).count(), 0);
    }
}
