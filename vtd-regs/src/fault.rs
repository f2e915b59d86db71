//! Fault reasons: why the remapping hardware blocked a request (VT-d
//! Appendix A, "Non-Recoverable Fault Reason Encodings").
//!
//! A fault reason is what a fault recording register's FR field holds
//! (§10.4.14) and what a table walk reports when it cannot translate.

use core::fmt;

macro_rules! fault_reasons {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// A non-recoverable fault reason (VT-d Appendix A). Codes not listed
        /// here are reserved; [`FaultReason::from_code`] rejects them.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum FaultReason {
            $($(#[$doc])* $name = $code,)*
        }

        impl FaultReason {
            /// Every defined reason, in code order.
            pub const ALL: &'static [FaultReason] = &[$(FaultReason::$name,)*];

            /// Decodes an 8-bit FR field; reserved codes give `None`.
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(FaultReason::$name),)*
                    _ => None,
                }
            }

            /// The specification's description of the condition.
            pub const fn description(self) -> &'static str {
                match self {
                    $(FaultReason::$name => $text,)*
                }
            }
        }
    };
}

fault_reasons! {
    /// 1h: the root entry of the request's bus is not present.
    RootEntryNotPresent = 0x01, "root entry not present (P = 0)";
    /// 2h: the context entry of the request's device is not present.
    ContextEntryNotPresent = 0x02, "context entry not present (P = 0)";
    /// 3h: the present context entry is programmed with an invalid value,
    /// e.g. a reserved AW or TT value, or an AW the unit does not support.
    InvalidContextEntry = 0x03, "invalid programming of a context entry";
    /// 4h: the input address is above 2^X - 1, X the smaller of MGAW and
    /// the context entry's AGAW.
    AddressBeyondWidth = 0x04, "input address above the guest address width";
    /// 5h: a write to a page without write permission.
    WriteNotPermitted = 0x05, "write request to a page without write permission";
    /// 6h: a read to a page without read permission.
    ReadNotPermitted = 0x06, "read request to a page without read permission";
    /// 7h: a second-level paging entry could not be read (address beyond
    /// the host address width or not backed by memory).
    PagingEntryAccess = 0x07, "error accessing a second-level paging entry";
    /// 8h: the root entry could not be read.
    RootEntryAccess = 0x08, "error accessing a root entry";
    /// 9h: the context entry could not be read.
    ContextEntryAccess = 0x09, "error accessing a context entry";
    /// Ah: a reserved field of a present root entry is non-zero.
    RootEntryReserved = 0x0A, "non-zero reserved field in a present root entry";
    /// Bh: a reserved field of a present context entry is non-zero.
    ContextEntryReserved = 0x0B, "non-zero reserved field in a present context entry";
    /// Ch: a reserved field of a second-level paging entry with R or W set is non-zero.
    PagingEntryReserved = 0x0C, "non-zero reserved field in a present second-level paging entry";
    /// Dh: the request's type is blocked by the context entry's TT field.
    TranslationTypeBlocked = 0x0D, "request blocked by the translation type of the context entry";
    /// Eh: the output address falls in the interrupt address range 0xFEEx_xxxx.
    InterruptAddressRange = 0x0E, "output address in the interrupt address range";
    /// 20h: an interrupt request with a reserved field set.
    IrRequestReserved = 0x20, "interrupt request with non-zero reserved field";
    /// 21h: the interrupt index is beyond the remapping table size.
    IrIndexBeyondTable = 0x21, "interrupt index beyond the interrupt remapping table";
    /// 22h: the interrupt remapping table entry is not present.
    IrEntryNotPresent = 0x22, "interrupt remapping table entry not present";
    /// 23h: the interrupt remapping table could not be read.
    IrTableAccess = 0x23, "error accessing the interrupt remapping table";
    /// 24h: a reserved field of a present interrupt remapping entry is non-zero.
    IrEntryReserved = 0x24, "non-zero reserved field in an interrupt remapping table entry";
    /// 25h: a compatibility-format interrupt was blocked.
    IrCompatBlocked = 0x25, "compatibility-format interrupt request blocked";
    /// 26h: the interrupt's source id failed the entry's SID check.
    IrSourceIdInvalid = 0x26, "interrupt request with invalid source id";
    /// 27h: the posted-interrupt descriptor a posted-format entry points
    /// at could not be accessed.
    IrPostedDescriptorAccess = 0x27, "error accessing the posted interrupt descriptor";
    /// 31h: RTADDR.TTM holds a reserved translation table mode.
    InvalidTableMode = 0x31, "invalid translation table mode in RTADDR";
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fault {:#04x}: {}", *self as u8, self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in FaultReason::ALL {
            assert_eq!(FaultReason::from_code(*r as u8), Some(*r));
            assert!(!r.description().is_empty());
        }
        assert_eq!(FaultReason::from_code(0), None);
        assert_eq!(FaultReason::from_code(0xff), None);
        // QEMU reports FR 5 for a DMA write to a read-only page, 6 for an
        // unmapped read and 2 for a device with no context entry.
        assert_eq!(FaultReason::from_code(5), Some(FaultReason::WriteNotPermitted));
        assert_eq!(FaultReason::from_code(6), Some(FaultReason::ReadNotPermitted));
        assert_eq!(FaultReason::from_code(2), Some(FaultReason::ContextEntryNotPresent));
    }
}
