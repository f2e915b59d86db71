//! QEMU's `edu` device as a DMA engine, through its VFIO device (its
//! register layout is `viommu_qtest::edu::regs`, which the qtest driver
//! uses too); the 4 KiB buffer's last byte is unusable in QEMU 7.2. A
//! transfer the IOMMU blocks completes without moving data.

use std::time::{Duration, Instant};

/// The usable part of the buffer.
pub(crate) use viommu_qtest::edu::EDU_BUFFER_SIZE as BUFFER_SIZE;
use viommu_qtest::edu::regs::{
    BUFFER_BASE as BUFFER, CMD_RUN, CMD_TO_MEMORY, IDENT_MAGIC, REG_DMA_CMD, REG_DMA_COUNT,
    REG_DMA_DST, REG_DMA_SRC, REG_IDENT,
};
use viommu_vfio::{BAR0_REGION, Device};

pub(crate) struct Edu<'d> {
    dev: &'d Device,
}

impl<'d> Edu<'d> {
    /// Checks the identification register.
    pub(crate) fn new(dev: &'d Device) -> Result<Self, String> {
        let ident = dev.read_u32(BAR0_REGION, REG_IDENT).map_err(|e| e.to_string())?;
        if ident & 0xff != IDENT_MAGIC {
            return Err(format!("not an edu device: ident {ident:#x}"));
        }
        Ok(Edu { dev })
    }

    /// The device reads `len` bytes at IOVA `from` into its buffer at
    /// `offset`.
    pub(crate) fn read_memory(&self, from: u64, offset: usize, len: usize) -> Result<(), String> {
        self.transfer(from, BUFFER + offset as u64, len, 0)
    }

    /// The device writes `len` bytes of its buffer at `offset` to IOVA `to`.
    pub(crate) fn write_memory(&self, offset: usize, to: u64, len: usize) -> Result<(), String> {
        self.transfer(BUFFER + offset as u64, to, len, CMD_TO_MEMORY)
    }

    fn transfer(&self, src: u64, dst: u64, len: usize, direction: u32) -> Result<(), String> {
        let e = |e: viommu_vfio::Error| e.to_string();
        self.wait()?;
        self.dev.write_u64(BAR0_REGION, REG_DMA_SRC, src).map_err(e)?;
        self.dev.write_u64(BAR0_REGION, REG_DMA_DST, dst).map_err(e)?;
        self.dev.write_u64(BAR0_REGION, REG_DMA_COUNT, len as u64).map_err(e)?;
        self.dev.write_u32(BAR0_REGION, REG_DMA_CMD, CMD_RUN | direction).map_err(e)?;
        self.wait()
    }

    fn wait(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.dev.read_u32(BAR0_REGION, REG_DMA_CMD).map_err(|e| e.to_string())? & CMD_RUN != 0
        {
            if Instant::now() > deadline {
                return Err("edu DMA did not complete in 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}
