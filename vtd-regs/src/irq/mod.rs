//! Interrupt remapping formats (§5.1, §9.10-§9.12): the table entries
//! ([`RawIrte`], decoded as [`Irte`]: [`RemappedIrte`] or [`PostedIrte`]),
//! the posted-interrupt descriptor ([`PostedInterruptDescriptor`]), the
//! requests that reach the unit ([`MsiMessage`], decoded as
//! [`InterruptRequest`], and the IOAPIC's [`IoApicRte`]), and the interrupt
//! they produce ([`Interrupt`]).
//!
//! A device's MSI in remappable format names an entry by its handle (and
//! subhandle); the unit reads the entry, checks the requester against its
//! source validation, and delivers the entry's interrupt. What can go
//! wrong is one of the fault reasons 20h-27h ([`FaultReason`]), recorded
//! unless the entry's FPD says not to ([`FaultReason::qualified`]).
//!
//! ```
//! use vtd_regs::SourceId;
//! use vtd_regs::irq::{Interrupt, InterruptMode, Irte, MsiMessage, RemappedIrte};
//!
//! // The entry a driver writes at index 0x20 for device 00:01.0: vector
//! // 0x31 to APIC 2, from that device only.
//! let dev = SourceId::new(0, 1, 0).unwrap();
//! let entry = RemappedIrte::for_device(dev, Interrupt::fixed(2, 0x31));
//! let raw = entry.encode(InterruptMode::XApic).unwrap();
//! // The message the device is given instead of the interrupt itself.
//! let msi = MsiMessage::remappable(0x20, Some(0));
//! assert_eq!((msi.address, msi.data), (0xfee0_0418, 0));
//! // What the unit does with it.
//! let index = msi.decode().unwrap().index();
//! assert_eq!(index, Some(0x20));
//! let Ok(Irte::Remapped(e)) = raw.decode(InterruptMode::XApic) else { unreachable!() };
//! assert!(e.source.permits(dev));
//! assert_eq!(e.interrupt.vector, 0x31);
//! ```

mod delivery;
mod irte;
mod pid;
mod request;

pub use delivery::{DeliveryMode, DestinationMode, Interrupt, InterruptMode, TriggerMode};
pub use irte::{
    Irte, IrteError, PostedIrte, RawIrte, RemappedIrte, SidQualifier, SourceValidation,
};
pub use pid::PostedInterruptDescriptor;
pub use request::{INTERRUPT_ADDRESS, InterruptRequest, IoApicRte, MsiMessage, RequestError};

use crate::fault::FaultReason;

impl FaultReason {
    /// Whether this is an interrupt-remapping fault (20h-27h, §5.1.4.1).
    pub const fn is_interrupt_remapping(self) -> bool {
        matches!(self as u8, 0x20..=0x27)
    }

    /// Whether the fault is qualified: it is about a readable entry, whose
    /// FPD then decides whether it is recorded (§5.1.4.1: 22h not present,
    /// 24h reserved fields, 26h source id, 27h posted descriptor). The
    /// others (a malformed request, an index beyond the table, an
    /// unreadable table, a blocked compatibility-format request) are always
    /// recorded. For DMA faults, the context entry's FPD decides (§7.1.2).
    pub const fn qualified(self) -> bool {
        matches!(
            self,
            FaultReason::IrEntryNotPresent
                | FaultReason::IrEntryReserved
                | FaultReason::IrSourceIdInvalid
                | FaultReason::IrPostedDescriptorAccess
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_fault_reasons() {
        // Linux's irq_remap_fault_reasons[] lists 0x20..=0x26 (and QEMU's
        // VTD_FR_IR_* are 0x20..=0x26); 0x27 is the posted descriptor.
        let ir: Vec<u8> = FaultReason::ALL
            .iter()
            .filter(|r| r.is_interrupt_remapping())
            .map(|r| *r as u8)
            .collect();
        assert_eq!(ir, (0x20..=0x27).collect::<Vec<u8>>());
        let qualified: Vec<u8> =
            FaultReason::ALL.iter().filter(|r| r.qualified()).map(|r| *r as u8).collect();
        assert_eq!(qualified, [0x22, 0x24, 0x26, 0x27]);
    }
}
