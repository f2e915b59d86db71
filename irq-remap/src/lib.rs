//! VT-d interrupt remapping, the driver's side (§5.1): one unit's
//! interrupt remapping table, [`IrTable`], and its bring-up.
//!
//! With interrupt remapping on, a device is not given an interrupt (a
//! vector and a CPU) but a handle: its MSI names an entry of the table,
//! and the unit delivers what the entry says, only for the requester the
//! entry names. A device can then no longer forge interrupts, and CPUs
//! with APIC ids above 255 (x2APIC) can be reached.
//!
//! - [`IrTable::new`] allocates the table (fixed capacity: `64 * WORDS`
//!   entries tracked in a bitmap, no heap), [`IrTable::enable`] brings
//!   the unit up in order: table pointer with EIME for x2APIC, a global
//!   interrupt entry cache invalidation, compatibility format blocked,
//!   then IRE.
//! - [`IrTable::allocate`] hands out aligned power-of-two blocks
//!   ([`Handle`]); [`IrTable::program_device`] writes an entry with source
//!   validation; [`Handle::msi`] and [`Handle::ioapic`] give what the
//!   device or IOAPIC must be programmed with;
//!   [`IrTable::set_affinity`] moves an interrupt, with the owed
//!   index-selective invalidation done and waited for.
//! - [`IrTable::free`] takes a handle by value and returns a
//!   [`Released`] token: the entries are not present, but may still be
//!   cached by the unit, so they are handed out again only once the
//!   invalidation covering them completed ([`IrTable::retire`],
//!   [`IrTable::reclaim`]). The same rule as IOVAs in `teardown`.
//!
//! On the software VT-d:
//!
//! ```
//! use invalidation::QueuedInvalidator;
//! use irq_remap::IrTable;
//! use vtd_emu::{Delivered, EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
//! use vtd_regs::irq::{Interrupt, InterruptMode};
//! use vtd_regs::regs::QueueSize;
//! use vtd_regs::{PhysAddr, RemappingUnit, SourceId};
//!
//! let mem = HeapMemory::new(1 << 20);
//! let frames = SimFrameAllocator::new(&mem, PhysAddr::new(0x1000), PhysAddr::new(1 << 20));
//! let emu = Emulator::new(&mem, EmuConfig::qemu()).unwrap();
//! let unit = RemappingUnit::new(&emu)?;
//! let size = QueueSize::from_order(0).unwrap();
//! let mut inv = QueuedInvalidator::new(unit, &mem, &frames, size).map_err(|r| r.error)?;
//!
//! let mut table: IrTable<_> = IrTable::new(&mem, &frames, InterruptMode::XApic)?;
//! table.enable(&mut inv)?;
//! let nic = SourceId::new(0, 1, 0).unwrap();
//! let irq = table.allocate(1)?;
//! table.program_device(&mut inv, &irq, 0, nic, Interrupt::fixed(0, 0x41))?;
//! let msi = irq.msi(0); // what the NIC's MSI capability is given
//! let got = emu.remap_interrupt(nic, msi);
//! assert_eq!(got, Ok(Delivered::Remapped { index: irq.index(), interrupt: Interrupt::fixed(0, 0x41) }));
//!
//! // Moving it to CPU 1: the new vector arrives at once (invalidated).
//! table.set_affinity(&mut inv, &irq, 0, 1, 0x42)?;
//! assert!(matches!(emu.remap_interrupt(nic, msi), Ok(Delivered::Remapped { interrupt, .. })
//!     if interrupt == Interrupt::fixed(1, 0x42)));
//! // Another device using the NIC's handle is refused (fault 26h).
//! assert!(emu.remap_interrupt(SourceId::new(0, 2, 0).unwrap(), msi).is_err());
//!
//! table.release(&mut inv, irq)?; // entries back once the invalidation completed
//! table.drain(&mut inv)?;
//! assert_eq!(table.in_use(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blocks;
mod handle;
mod table;
mod unit;

use core::fmt;

use vtd_regs::irq::IrteError;
use vtd_regs::{MemError, UnitError};

pub use handle::{Handle, Released};
pub use table::{IrTable, PENDING};
pub use unit::UnitAccess;

/// What can go wrong managing a table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// `WORDS` is not a power of two from 1 to 1024.
    Capacity,
    /// No frames for the table.
    OutOfFrames,
    /// Table memory could not be accessed.
    Mem(MemError),
    /// No free aligned block of the size asked.
    Full,
    /// A block size that is not a power of two, or beyond the table.
    BadCount(u32),
    /// A vector number beyond the handle's block.
    NotInBlock(u16),
    /// The entry cannot be encoded (a destination too wide for xAPIC), or
    /// what the table holds does not decode.
    Entry(IrteError),
    /// An affinity change of an entry that is not a remapped-format one.
    NotProgrammed(u16),
    /// A register command failed (for example ECAP.IR or ECAP.EIM missing).
    Unit(UnitError),
    /// An invalidation failed.
    Invalidation(invalidation::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Capacity => f.write_str("table capacity is not a power of two of 64..=65536"),
            Error::OutOfFrames => f.write_str("no frames for the interrupt remapping table"),
            Error::Mem(e) => write!(f, "table memory: {e}"),
            Error::Full => f.write_str("no free block of interrupt remapping entries"),
            Error::BadCount(n) => write!(f, "{n} entries: not a power of two within the table"),
            Error::NotInBlock(s) => write!(f, "vector {s} is beyond the handle's block"),
            Error::Entry(e) => write!(f, "entry: {e}"),
            Error::NotProgrammed(i) => write!(f, "entry {i} is not a remapped-format entry"),
            Error::Unit(e) => write!(f, "remapping unit: {e}"),
            Error::Invalidation(e) => write!(f, "invalidation: {e}"),
        }
    }
}

impl core::error::Error for Error {}

/// This crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
