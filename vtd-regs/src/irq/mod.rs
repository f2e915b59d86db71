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

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::ids::SourceId;

    fn delivery() -> impl Strategy<Value = DeliveryMode> {
        prop::sample::select(vec![
            DeliveryMode::Fixed,
            DeliveryMode::LowestPriority,
            DeliveryMode::Smi,
            DeliveryMode::Nmi,
            DeliveryMode::Init,
            DeliveryMode::ExtInt,
        ])
    }

    fn source() -> impl Strategy<Value = SourceValidation> {
        prop_oneof![
            Just(SourceValidation::None),
            (any::<u16>(), 0u8..4).prop_map(|(s, q)| SourceValidation::Requester {
                sid: SourceId::from_raw(s),
                qualifier: SidQualifier::from_field(q),
            }),
            (any::<u8>(), any::<u8>())
                .prop_map(|(start, end)| SourceValidation::Bus { start, end }),
        ]
    }

    prop_compose! {
        fn remapped(max_dest: u32)(
            fpd: bool, vector: u8, delivery in delivery(), level: bool, logical: bool, rh: bool,
            destination in 0..=max_dest, available in 0u8..16, source in source(),
        ) -> RemappedIrte {
            RemappedIrte {
                fpd,
                interrupt: Interrupt {
                    vector,
                    delivery,
                    trigger: TriggerMode::from_bit(level),
                    destination_mode: DestinationMode::from_bit(logical),
                    redirection_hint: rh,
                    destination,
                },
                available,
                source,
            }
        }
    }

    proptest! {
        #[test]
        fn remapped_entries_round_trip(x in remapped(255), x2 in remapped(u32::MAX)) {
            let raw = x.encode(InterruptMode::XApic).unwrap();
            prop_assert_eq!(raw.decode(InterruptMode::XApic), Ok(Irte::Remapped(x)));
            let raw = x2.encode(InterruptMode::X2Apic).unwrap();
            prop_assert_eq!(raw.decode(InterruptMode::X2Apic), Ok(Irte::Remapped(x2)));
        }

        /// Any 128 bits decode without panicking, and whatever decodes
        /// encodes back to the same bits.
        #[test]
        fn any_entry_decodes_consistently(lo: u64, hi: u64, x2: bool) {
            let mode = InterruptMode::from_eime(x2);
            let raw = RawIrte::new(lo, hi);
            match raw.decode(mode) {
                Ok(Irte::Remapped(e)) => prop_assert_eq!(e.encode(mode), Ok(raw)),
                Ok(Irte::Posted(p)) => prop_assert_eq!(p.encode(), Ok(raw)),
                Ok(Irte::NotPresent { fpd }) => prop_assert!(!raw.present() && fpd == raw.fpd()),
                Err(_) => prop_assert!(raw.present()),
            }
        }

        #[test]
        fn remappable_messages_round_trip(handle: u16, sub: Option<u16>) {
            let m = MsiMessage::remappable(handle, sub);
            prop_assert_eq!(m.decode(), Ok(InterruptRequest::Remappable { handle, subhandle: sub }));
        }

        #[test]
        fn any_message_decodes(address: u64, data: u32) {
            let m = MsiMessage { address, data };
            if let Ok(InterruptRequest::Remappable { handle, subhandle }) = m.decode() {
                prop_assert_eq!(MsiMessage::remappable(handle, subhandle).address, address & !3);
            }
        }
    }
}
