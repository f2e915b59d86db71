//! [`Backend`]: a remapping unit with a DMA-capable device behind it, as
//! the scenario runner drives it.

use vtd_regs::{Iova, Mmio, PhysMem};

use crate::error::Result;

/// A VT-d unit (its registers and the memory it reads tables from) and one
/// device whose DMA it translates, with a 4 KiB buffer like edu's.
pub trait Backend {
    /// The register page.
    type Mmio: Mmio + Copy;
    /// Guest physical memory, as the CPU sees it.
    type Mem: PhysMem;

    /// A handle on the register page.
    fn mmio(&self) -> Self::Mmio;
    /// Guest memory.
    fn mem(&self) -> &Self::Mem;
    /// The device reads `len` bytes at `from` into its buffer at `offset`.
    fn dma_read(&mut self, from: Iova, offset: usize, len: usize) -> Result<()>;
    /// The device writes `len` bytes of its buffer at `offset` to `to`.
    fn dma_write(&mut self, offset: usize, to: Iova, len: usize) -> Result<()>;
    /// An error the adapters could not report through their traits.
    fn check(&self) -> Result<()>;
}
