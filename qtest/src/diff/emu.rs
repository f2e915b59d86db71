//! [`EmuBackend`]: `vtd-emu`'s software unit with a modelled edu device.
//!
//! The device model copies between a 4 KiB buffer and the addresses
//! [`Emulator::translate`] gives, one page at a time; a blocked read leaves
//! zeros in the buffer and a blocked write moves nothing, as edu does on
//! QEMU. So does an access that translates to an address outside the
//! memory, as one to unassigned addresses does on QEMU.

use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator};
use vtd_regs::{Iova, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::Access;

use crate::diff::backend::Backend;
use crate::diff::layout::{BASE, PAGES};
use crate::diff::scenario::EDU_SID;
use crate::error::{Error, Result};
use crate::qemu::RAM_SIZE;

/// The memory an emulated unit works on: enough for the layout.
pub type EmuMemory = HeapMemory;
/// The emulated unit.
pub type EmuUnit<'m> = Emulator<&'m EmuMemory>;

/// An emulated unit and a device with edu's 4 KiB buffer.
pub struct EmuBackend<'e> {
    emu: &'e EmuUnit<'e>,
    buffer: Vec<u8>,
}

impl<'e> EmuBackend<'e> {
    /// Memory covering guest-physical `[0, RAM_SIZE)`, QEMU's guest RAM:
    /// the layout, and every address one flipped bit (up to bit 27) away
    /// from it, where a corrupted entry may send a table walk, a DMA or a
    /// wait descriptor's status write, is memory on both sides, and
    /// anything beyond is memory on neither. (It is allocated zeroed, so
    /// the pages nobody touches cost nothing.)
    pub fn memory() -> EmuMemory {
        const { assert!(PAGES * PAGE_SIZE <= BASE && 2 * BASE <= RAM_SIZE) };
        HeapMemory::new(RAM_SIZE as usize)
    }

    /// A unit configured as QEMU's default `intel-iommu`
    /// ([`EmuConfig::qemu`]) over `mem`.
    pub fn unit(mem: &EmuMemory) -> Result<EmuUnit<'_>> {
        Self::unit_with(mem, EmuConfig::qemu())
    }

    /// A unit configured by `config` over `mem`.
    pub fn unit_with(mem: &EmuMemory, config: EmuConfig) -> Result<EmuUnit<'_>> {
        Emulator::new(mem, config)
            .map_err(|_| Error::InvalidArgument { what: "vtd-emu rejected the configuration" })
    }

    /// A device behind `emu`.
    pub fn new(emu: &'e EmuUnit<'e>) -> Self {
        EmuBackend { emu, buffer: vec![0; PAGE_SIZE as usize] }
    }

    /// Translates `[iova, iova + len)` page by page and calls `each` with
    /// the buffer range and the physical address of each piece, or `None`
    /// where the unit blocked it.
    fn pieces(
        &self,
        iova: Iova,
        len: usize,
        access: Access,
        mut each: impl FnMut(std::ops::Range<usize>, Option<PhysAddr>),
    ) {
        let mut done = 0;
        while done < len {
            let at = iova.as_u64().wrapping_add(done as u64);
            let room = (PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize;
            let n = room.min(len - done);
            let phys = self.emu.translate(EDU_SID, Iova::new(at), access).ok();
            each(done..done + n, phys);
            done += n;
        }
    }

    fn buffer_range(offset: usize, len: usize) -> Result<std::ops::Range<usize>> {
        match offset.checked_add(len) {
            Some(end) if end <= crate::edu::EDU_BUFFER_SIZE => Ok(offset..end),
            _ => Err(Error::InvalidArgument { what: "edu transfer outside its 4 KiB buffer" }),
        }
    }
}

impl<'e> Backend for EmuBackend<'e> {
    type Mmio = &'e EmuUnit<'e>;
    type Mem = &'e EmuMemory;

    fn mmio(&self) -> &'e EmuUnit<'e> {
        self.emu
    }

    fn mem(&self) -> &&'e EmuMemory {
        self.emu.memory()
    }

    fn dma_read(&mut self, from: Iova, offset: usize, len: usize) -> Result<()> {
        let range = Self::buffer_range(offset, len)?;
        let mem = *self.emu.memory();
        let mut buffer = std::mem::take(&mut self.buffer);
        self.pieces(from, len, Access::Read, |piece, phys| {
            let dst = &mut buffer[range.start + piece.start..range.start + piece.end];
            if phys.is_none_or(|p| mem.read_bytes(p, dst).is_err()) {
                dst.fill(0);
            }
        });
        self.buffer = buffer;
        Ok(())
    }

    fn dma_write(&mut self, offset: usize, to: Iova, len: usize) -> Result<()> {
        let range = Self::buffer_range(offset, len)?;
        let mem = *self.emu.memory();
        self.pieces(to, len, Access::Write, |piece, phys| {
            if let Some(p) = phys {
                let src = &self.buffer[range.start + piece.start..range.start + piece.end];
                // Outside the memory: dropped, like a write to nothing.
                let _ = mem.write_bytes(p, src);
            }
        });
        Ok(())
    }

    fn check(&self) -> Result<()> {
        Ok(())
    }
}
