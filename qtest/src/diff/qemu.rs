//! [`QemuBackend`]: QEMU's `intel-iommu` with edu doing the DMA.

use vtd_regs::Iova;

use crate::diff::backend::Backend;
use crate::diff::scenario::EDU_SID;
use crate::edu::Edu;
use crate::error::{Error, Result};
use crate::mem::QtestMem;
use crate::mmio::QtestMmio;
use crate::qemu::Qemu;

/// A running QEMU and its edu device.
pub struct QemuBackend<'q> {
    qemu: &'q Qemu,
    mem: QtestMem<'q>,
    edu: Edu<'q>,
}

impl<'q> QemuBackend<'q> {
    /// Probes `qemu`'s edu device, which must be at [`EDU_SID`] (the
    /// scenarios write its context entry there).
    pub fn new(qemu: &'q Qemu) -> Result<Self> {
        let edu = Edu::probe(qemu)?;
        if edu.source_id() != EDU_SID {
            return Err(Error::InvalidArgument { what: "edu is not at 00:01.0" });
        }
        Ok(QemuBackend { qemu, mem: QtestMem::new(qemu), edu })
    }
}

impl<'q> Backend for QemuBackend<'q> {
    type Mmio = QtestMmio<'q>;
    type Mem = QtestMem<'q>;

    fn mmio(&self) -> QtestMmio<'q> {
        QtestMmio::new(self.qemu)
    }

    fn mem(&self) -> &QtestMem<'q> {
        &self.mem
    }

    fn dma_read(&mut self, from: Iova, offset: usize, len: usize) -> Result<()> {
        self.edu.read_memory(from, offset, len)
    }

    fn dma_write(&mut self, offset: usize, to: Iova, len: usize) -> Result<()> {
        self.edu.write_memory(offset, to, len)
    }

    fn check(&self) -> Result<()> {
        self.qemu.check()
    }
}
