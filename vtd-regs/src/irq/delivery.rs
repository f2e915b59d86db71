//! What an interrupt is once remapped (or when it needs no remapping): the
//! attributes an IRTE carries (§9.10) and a compatibility-format request
//! encodes (§5.1.2.1), which the local APICs act on.

use core::fmt;

/// How the APIC delivers the interrupt (IRTE.DLM, bits 7:5; MSI data bits
/// 10:8; IOAPIC RTE bits 10:8). Encodings 011b and 110b are reserved.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum DeliveryMode {
    /// 000b: to the vector on every destination.
    Fixed = 0,
    /// 001b: to the vector on the lowest-priority destination.
    LowestPriority = 1,
    /// 010b: a system management interrupt (vector ignored).
    Smi = 2,
    /// 100b: a non-maskable interrupt (vector ignored).
    Nmi = 4,
    /// 101b: INIT (vector ignored).
    Init = 5,
    /// 111b: an external interrupt, as from an 8259 (edge-triggered).
    ExtInt = 7,
}

impl DeliveryMode {
    /// Decodes the 3-bit field; reserved encodings give `None`.
    pub const fn from_field(f: u8) -> Option<Self> {
        match f & 7 {
            0 => Some(Self::Fixed),
            1 => Some(Self::LowestPriority),
            2 => Some(Self::Smi),
            4 => Some(Self::Nmi),
            5 => Some(Self::Init),
            7 => Some(Self::ExtInt),
            _ => None,
        }
    }
}

/// Edge or level (IRTE.TM, bit 4; MSI data bit 15; IOAPIC RTE bit 15).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum TriggerMode {
    /// 0: edge-triggered.
    #[default]
    Edge,
    /// 1: level-triggered.
    Level,
}

impl TriggerMode {
    /// From the 1-bit field.
    pub const fn from_bit(level: bool) -> Self {
        if level { Self::Level } else { Self::Edge }
    }
    /// The 1-bit field.
    pub const fn bit(self) -> u64 {
        matches!(self, Self::Level) as u64
    }
}

/// How the destination id is read (IRTE.DM, bit 2; MSI address bit 2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum DestinationMode {
    /// 0: an APIC id.
    #[default]
    Physical,
    /// 1: a logical destination (a set of APICs).
    Logical,
}

impl DestinationMode {
    /// From the 1-bit field.
    pub const fn from_bit(logical: bool) -> Self {
        if logical { Self::Logical } else { Self::Physical }
    }
    /// The 1-bit field.
    pub const fn bit(self) -> u64 {
        matches!(self, Self::Logical) as u64
    }
}

/// The interrupt mode of a remapping unit (IRTA.EIME, §10.4.30), which sets
/// how wide an IRTE's destination is (§9.10).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum InterruptMode {
    /// EIME = 0: xAPIC, 8-bit destination ids in IRTE bits 47:40;
    /// compatibility-format interrupts may be allowed (GCMD.CFI).
    #[default]
    XApic,
    /// EIME = 1: x2APIC, 32-bit destination ids in IRTE bits 63:32;
    /// compatibility-format interrupts are always blocked.
    X2Apic,
}

impl InterruptMode {
    /// The mode IRTA.EIME selects.
    pub const fn from_eime(eime: bool) -> Self {
        if eime { Self::X2Apic } else { Self::XApic }
    }
    /// IRTA.EIME for this mode.
    pub const fn eime(self) -> bool {
        matches!(self, Self::X2Apic)
    }
    /// The largest destination id of this mode.
    pub const fn max_destination(self) -> u32 {
        match self {
            Self::XApic => 0xff,
            Self::X2Apic => u32::MAX,
        }
    }
}

/// An interrupt as the APICs receive it: what a remapped-format IRTE
/// produces and what a compatibility-format request carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Interrupt {
    /// The vector (IRTE.V, bits 23:16).
    pub vector: u8,
    /// The delivery mode (IRTE.DLM).
    pub delivery: DeliveryMode,
    /// Edge or level (IRTE.TM).
    pub trigger: TriggerMode,
    /// Physical or logical destination (IRTE.DM).
    pub destination_mode: DestinationMode,
    /// Redirection hint (IRTE.RH, bit 3): with logical destinations, the
    /// interrupt goes to one of them only.
    pub redirection_hint: bool,
    /// The destination id: an 8-bit APIC id in xAPIC mode, 32-bit in
    /// x2APIC mode.
    pub destination: u32,
}

impl Interrupt {
    /// A fixed, edge-triggered interrupt with `vector` to the APIC with
    /// physical id `destination`: what a device's MSI usually is.
    pub const fn fixed(destination: u32, vector: u8) -> Self {
        Self {
            vector,
            delivery: DeliveryMode::Fixed,
            trigger: TriggerMode::Edge,
            destination_mode: DestinationMode::Physical,
            redirection_hint: false,
            destination,
        }
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vector {:#04x} to {:?} {:#x} ({:?}, {:?})",
            self.vector, self.destination_mode, self.destination, self.delivery, self.trigger
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_encodings() {
        // Linux's dest_Fixed 0, dest_LowestPrio 1, dest_SMI 2, dest_NMI 4,
        // dest_INIT 5, dest_ExtINT 7 (arch/x86/include/asm/apicdef.h).
        for (code, mode) in [(0, DeliveryMode::Fixed), (1, DeliveryMode::LowestPriority)]
            .into_iter()
            .chain([(2, DeliveryMode::Smi), (4, DeliveryMode::Nmi)])
            .chain([(5, DeliveryMode::Init), (7, DeliveryMode::ExtInt)])
        {
            assert_eq!(DeliveryMode::from_field(code), Some(mode));
            assert_eq!(mode as u8, code);
        }
        assert_eq!(DeliveryMode::from_field(3), None);
        assert_eq!(DeliveryMode::from_field(6), None);
        assert_eq!(InterruptMode::XApic.max_destination(), 255);
        assert!(InterruptMode::from_eime(true).eime());
    }
}
