//! PCI configuration space through the legacy port pair 0xCF8/0xCFC
//! (configuration mechanism #1), enough to find and enable a device on bus 0
//! when no firmware did it.

use vtd_regs::SourceId;

use crate::client::Qtest;
use crate::error::{Error, Result};

/// CONFIG_ADDRESS: enable bit, bus, device, function and dword register.
const CONFIG_ADDRESS: u16 = 0xCF8;
/// CONFIG_DATA: the addressed dword.
const CONFIG_DATA: u16 = 0xCFC;
/// CONFIG_ADDRESS bit 31: a configuration cycle.
const CONFIG_ENABLE: u32 = 1 << 31;

/// Vendor id (low half) and device id (high half).
pub const REG_ID: u8 = 0x00;
/// Command (low half) and status (high half, write 1 to clear).
pub const REG_COMMAND: u8 = 0x04;
/// Base address register 0.
pub const REG_BAR0: u8 = 0x10;
/// Command register: respond to memory accesses.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: may master the bus, i.e. do DMA.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;

/// The configuration space of the functions behind one qtest connection.
pub struct ConfigSpace<'q> {
    qtest: &'q Qtest,
}

impl<'q> ConfigSpace<'q> {
    /// Configuration space reached over `qtest`.
    pub fn new(qtest: &'q Qtest) -> Self {
        ConfigSpace { qtest }
    }

    fn select(&self, function: SourceId, reg: u8) -> Result<()> {
        if !reg.is_multiple_of(4) {
            return Err(Error::InvalidArgument { what: "config register not dword aligned" });
        }
        let addr = CONFIG_ENABLE | (u32::from(function.raw()) << 8) | u32::from(reg);
        self.qtest.outl(CONFIG_ADDRESS, addr)
    }

    /// Reads the dword register `reg` (a multiple of 4) of `function`.
    pub fn read32(&self, function: SourceId, reg: u8) -> Result<u32> {
        self.select(function, reg)?;
        self.qtest.inl(CONFIG_DATA)
    }

    /// Writes the dword register `reg` (a multiple of 4) of `function`.
    pub fn write32(&self, function: SourceId, reg: u8, value: u32) -> Result<()> {
        self.select(function, reg)?;
        self.qtest.outl(CONFIG_DATA, value)
    }

    /// The first function on bus 0 with this vendor and device id.
    pub fn find(&self, vendor: u16, device: u16) -> Result<SourceId> {
        let want = u32::from(vendor) | (u32::from(device) << 16);
        for devfn in 0..=u8::MAX {
            let function = SourceId::from_raw(u16::from(devfn));
            if self.read32(function, REG_ID)? == want {
                return Ok(function);
            }
        }
        Err(Error::DeviceNotFound { vendor, device })
    }

    /// Sets command register bits of `function` (status bits are left alone:
    /// they are write-1-to-clear).
    pub fn enable(&self, function: SourceId, bits: u16) -> Result<()> {
        let command = self.read32(function, REG_COMMAND)? as u16 | bits;
        self.write32(function, REG_COMMAND, u32::from(command))
    }
}
