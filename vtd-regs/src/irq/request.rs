//! Interrupt requests as they reach the remapping unit: DWORD writes to
//! 0xFEEx_xxxx (§5.1.2) in compatibility format (bit 4 of the address
//! clear, §5.1.2.1) or remappable format (bit 4 set, §5.1.2.2), and the
//! I/OxAPIC redirection table entry that makes an IOAPIC send them
//! (§5.1.5.1).
//!
//! Remappable MSI address: 0xFEE in bits 31:20, `HANDLE[14:0]` in 19:5, the
//! interrupt format (1) in bit 4, SHV in 3, `HANDLE[15]` in 2; bits 63:32
//! reserved. Data: with SHV, the subhandle in bits 15:0 and 31:16
//! reserved. The entry used is `handle + subhandle` with SHV, `handle`
//! without (§5.1.3).
//!
//! Compatibility MSI address: the destination id in bits 19:12, RH in 3,
//! DM in 2; data: the vector in 7:0, the delivery mode in 10:8, TM in 15.

use super::delivery::{DeliveryMode, DestinationMode, Interrupt, TriggerMode};
use crate::regs::bits::field;

/// Bits 31:20 of every interrupt request's address.
pub const INTERRUPT_ADDRESS: u64 = 0xfee0_0000;

/// Address bit 4: the request is in remappable format.
const REMAPPABLE: u64 = 1 << 4;
/// Address bit 3: SHV, the data holds a subhandle.
const SHV: u64 = 1 << 3;

/// An MSI: the DWORD write a device (or an IOAPIC) sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct MsiMessage {
    /// The address written (64-bit MSI).
    pub address: u64,
    /// The DWORD written.
    pub data: u32,
}

/// An interrupt request, decoded (§5.1.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum InterruptRequest {
    /// Compatibility format: delivered as it is when allowed (§5.1.2.1).
    Compatibility(MsiMessage),
    /// Remappable format: goes through the IRTE at
    /// [`index`](Self::index).
    Remappable {
        /// HANDLE: bits 19:5 and 2 of the address.
        handle: u16,
        /// The subhandle, when SHV is set.
        subhandle: Option<u16>,
    },
}

impl InterruptRequest {
    /// The interrupt index of a remappable request, `handle + subhandle`
    /// (which may exceed 16 bits: no table holds it, fault 21h).
    pub const fn index(self) -> Option<u32> {
        match self {
            Self::Compatibility(_) => None,
            Self::Remappable { handle, subhandle } => {
                let sub = match subhandle {
                    Some(s) => s as u32,
                    None => 0,
                };
                Some(handle as u32 + sub)
            }
        }
    }
}

/// Why a write is not a valid interrupt request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum RequestError {
    /// The address is not in 0xFEEx_xxxx: not an interrupt request.
    NotInterrupt,
    /// A remappable request with reserved bits set (address bits 63:32, or
    /// data bits 31:16 with SHV): fault 20h.
    Reserved,
}

impl MsiMessage {
    /// The remappable-format message for `handle`, with `subhandle` (SHV
    /// set) or without (§5.1.5.2).
    pub const fn remappable(handle: u16, subhandle: Option<u16>) -> Self {
        let h = handle as u64;
        let mut address = INTERRUPT_ADDRESS | (h & 0x7fff) << 5 | REMAPPABLE | (h >> 15) << 2;
        let data = match subhandle {
            Some(s) => {
                address |= SHV;
                s as u32
            }
            None => 0,
        };
        Self { address, data }
    }

    /// The compatibility-format message for `interrupt`; `None` if its
    /// destination does not fit the 8-bit field.
    pub const fn compatibility(interrupt: &Interrupt) -> Option<Self> {
        if interrupt.destination > 0xff {
            return None;
        }
        let address = INTERRUPT_ADDRESS
            | (interrupt.destination as u64) << 12
            | (interrupt.redirection_hint as u64) << 3
            | interrupt.destination_mode.bit() << 2;
        let data = interrupt.vector as u64
            | (interrupt.delivery as u64) << 8
            | 1 << 14
            | interrupt.trigger.bit() << 15;
        Some(Self { address, data: data as u32 })
    }

    /// Whether the address is in the interrupt range 0xFEEx_xxxx.
    pub const fn is_interrupt(self) -> bool {
        self.address >> 20 == INTERRUPT_ADDRESS >> 20
    }

    /// Decodes the request as the unit does (§5.1.2, §5.1.4).
    pub const fn decode(self) -> Result<InterruptRequest, RequestError> {
        if (self.address & 0xffff_ffff) >> 20 != INTERRUPT_ADDRESS >> 20 {
            return Err(RequestError::NotInterrupt);
        }
        if self.address & REMAPPABLE == 0 {
            if self.address >> 32 != 0 {
                return Err(RequestError::NotInterrupt);
            }
            return Ok(InterruptRequest::Compatibility(self));
        }
        if self.address >> 32 != 0 {
            return Err(RequestError::Reserved);
        }
        let handle = (field(self.address, 5, 19) | field(self.address, 2, 2) << 15) as u16;
        let subhandle = if self.address & SHV != 0 {
            if self.data >> 16 != 0 {
                return Err(RequestError::Reserved);
            }
            Some(self.data as u16)
        } else {
            None
        };
        Ok(InterruptRequest::Remappable { handle, subhandle })
    }

    /// The interrupt a compatibility-format message asks for; `None` for a
    /// reserved delivery mode.
    pub const fn compatibility_interrupt(self) -> Option<Interrupt> {
        let data = self.data as u64;
        let Some(delivery) = DeliveryMode::from_field(field(data, 8, 10) as u8) else {
            return None;
        };
        Some(Interrupt {
            vector: self.data as u8,
            delivery,
            trigger: TriggerMode::from_bit(data & 1 << 15 != 0),
            destination_mode: DestinationMode::from_bit(self.address & 1 << 2 != 0),
            redirection_hint: self.address & 1 << 3 != 0,
            destination: field(self.address, 12, 19) as u32,
        })
    }
}

/// An I/OxAPIC redirection table entry (64 bits).
///
/// Remappable format (§5.1.5.1): the vector in 7:0 (which must equal the
/// IRTE's for level-triggered EOIs), delivery mode 10:8 (000b),
/// `INTERRUPT_INDEX[15]` in 11, polarity 13, TM 15, mask 16, the interrupt
/// format (1) in 48, `INTERRUPT_INDEX[14:0]` in 63:49. Compatibility format:
/// DM in 11, the destination id in 63:56, bit 48 clear.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct IoApicRte(pub u64);

impl IoApicRte {
    /// Bit 48: the entry is in remappable format.
    const REMAPPABLE: u64 = 1 << 48;

    /// A remappable-format entry for interrupt `index`.
    pub const fn remappable(index: u16, vector: u8, trigger: TriggerMode, masked: bool) -> Self {
        let i = index as u64;
        Self(
            vector as u64
                | (i >> 15) << 11
                | trigger.bit() << 15
                | (masked as u64) << 16
                | Self::REMAPPABLE
                | (i & 0x7fff) << 49,
        )
    }
    /// The vector (bits 7:0).
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }
    /// TM (bit 15).
    pub const fn trigger(self) -> TriggerMode {
        TriggerMode::from_bit(self.0 & 1 << 15 != 0)
    }
    /// The mask bit (16): the IOAPIC sends nothing.
    pub const fn masked(self) -> bool {
        self.0 & 1 << 16 != 0
    }
    /// The interrupt index of a remappable-format entry.
    pub const fn index(self) -> Option<u16> {
        if self.0 & Self::REMAPPABLE == 0 {
            return None;
        }
        Some((field(self.0, 49, 63) | field(self.0, 11, 11) << 15) as u16)
    }
    /// The message the IOAPIC sends for the entry (when unmasked): in
    /// remappable format the index with SHV clear, the vector and trigger
    /// mode in the data; in compatibility format the destination, DM, the
    /// vector, delivery and trigger modes.
    pub const fn message(self) -> MsiMessage {
        let data = self.vector() as u64 | 1 << 14 | self.trigger().bit() << 15;
        match self.index() {
            Some(index) => {
                let m = MsiMessage::remappable(index, None);
                MsiMessage { address: m.address, data: data as u32 }
            }
            None => MsiMessage {
                address: INTERRUPT_ADDRESS
                    | field(self.0, 56, 63) << 12
                    | field(self.0, 11, 11) << 2,
                data: (data | field(self.0, 8, 10) << 8) as u32,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remappable_msi_known_answers() {
        // Linux's fill_msi_msg: address_lo = MSI_ADDR_BASE_LO (0xfee00000) |
        // MSI_ADDR_IR_EXT_INT (1 << 4) | MSI_ADDR_IR_SHV (1 << 3) |
        // MSI_ADDR_IR_INDEX1(index) ((index & 0x7fff) << 5) |
        // MSI_ADDR_IR_INDEX2(index) ((index >> 15) << 2); data = subhandle.
        let m = MsiMessage::remappable(0x8123, Some(0));
        assert_eq!(m, MsiMessage { address: 0xfee0_247c, data: 0 });
        let req = m.decode().unwrap();
        assert_eq!(req, InterruptRequest::Remappable { handle: 0x8123, subhandle: Some(0) });
        // QEMU's vtd_interrupt_remap_msi: index = index_h << 15 | index_l,
        // plus the data's low 16 bits with SHV.
        let multi = MsiMessage { data: 3, ..MsiMessage::remappable(0x40, Some(0)) };
        assert_eq!(multi.decode().unwrap().index(), Some(0x43));
        let top = MsiMessage { data: 0xffff, ..MsiMessage::remappable(0xffff, Some(0)) };
        assert_eq!(top.decode().unwrap().index(), Some(0x1_fffe));
        assert_eq!(MsiMessage::remappable(7, None).decode().unwrap().index(), Some(7));
        // Reserved: address bits 63:32, data bits 31:16 with SHV (QEMU
        // reports VTD_FR_IR_REQ_RSVD for both).
        let high = MsiMessage { address: m.address | 1 << 32, data: 0 };
        assert_eq!(high.decode(), Err(RequestError::Reserved));
        let data = MsiMessage { data: 1 << 16, ..m };
        assert_eq!(data.decode(), Err(RequestError::Reserved));
        // Without SHV the data is not looked at (an IOAPIC's vector).
        let ioapic = MsiMessage { data: 0xffff_ffff, ..MsiMessage::remappable(1, None) };
        assert!(ioapic.decode().is_ok());
        assert_eq!(
            MsiMessage { address: 0xfed0_0000, data: 0 }.decode(),
            Err(RequestError::NotInterrupt)
        );
    }

    #[test]
    fn compatibility_known_answers() {
        // Linux's __irq_msi_compose_msg: 0xfee00000 | dest << 12, data =
        // vector (fixed, edge).
        let i = Interrupt::fixed(3, 0x41);
        let m = MsiMessage::compatibility(&i).unwrap();
        assert_eq!(m, MsiMessage { address: 0xfee0_3000, data: 0x4041 });
        assert_eq!(m.decode(), Ok(InterruptRequest::Compatibility(m)));
        assert_eq!(m.compatibility_interrupt(), Some(i));
        assert!(MsiMessage::compatibility(&Interrupt::fixed(256, 1)).is_none());
        assert_eq!(MsiMessage { data: 3 << 8, ..m }.compatibility_interrupt(), None);
    }

    #[test]
    fn ioapic_rte() {
        // Linux's intel_ir_reconfigure_irte / fill_ioapic: index_15 in bit
        // 11, format in bit 48, index_0_14 in bits 63:49.
        let rte = IoApicRte::remappable(0x8005, 0x30, TriggerMode::Level, false);
        assert_eq!(rte.0, 0x000b_0000_0000_8830);
        assert_eq!(rte.index(), Some(0x8005));
        let m = rte.message();
        assert_eq!(
            m.decode(),
            Ok(InterruptRequest::Remappable { handle: 0x8005, subhandle: None })
        );
        assert_eq!(m.data & 0xff, 0x30);
        let compat = IoApicRte(0x0300_0000_0000_0031);
        assert_eq!(compat.index(), None);
        assert_eq!(compat.message(), MsiMessage { address: 0xfee0_3000, data: 0x4031 });
        assert!(IoApicRte::remappable(1, 1, TriggerMode::Edge, true).masked());
    }
}
