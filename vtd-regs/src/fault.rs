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
    /// 38h (scalable mode): the scalable-mode root entry could not be read.
    SmRootEntryAccess = 0x38, "SM: error accessing a root entry";
    /// 39h: the half of the scalable-mode root entry for the device
    /// function (LP or UP) is not present.
    SmRootEntryNotPresent = 0x39, "SM: root entry not present";
    /// 3Ah: a reserved field of a present scalable-mode root entry is non-zero.
    SmRootEntryReserved = 0x3A, "SM: non-zero reserved field in a root entry";
    /// 40h: the scalable-mode context entry could not be read.
    SmContextEntryAccess = 0x40, "SM: error accessing a context entry";
    /// 41h: the scalable-mode context entry is not present.
    SmContextEntryNotPresent = 0x41, "SM: context entry not present";
    /// 42h: a reserved field of a present scalable-mode context entry is non-zero.
    SmContextEntryReserved = 0x42, "SM: non-zero reserved field in a context entry";
    /// 43h: the scalable-mode context entry is programmed with an invalid value.
    SmInvalidContextEntry = 0x43, "SM: invalid programming of a context entry";
    /// 45h: a request with a PASID to a context entry with PASIDE clear.
    SmPasidDisabled = 0x45, "SM: request with PASID while PASIDE is clear";
    /// 46h: the request's PASID is beyond the PASID directory (PDTS).
    SmPasidBeyondDirectory = 0x46, "SM: PASID beyond the PASID directory size";
    /// 50h: the PASID directory entry could not be read.
    PasidDirEntryAccess = 0x50, "SM: error accessing a PASID directory entry";
    /// 51h: the PASID directory entry is not present.
    PasidDirEntryNotPresent = 0x51, "SM: PASID directory entry not present";
    /// 52h: a reserved field of a present PASID directory entry is non-zero.
    PasidDirEntryReserved = 0x52, "SM: non-zero reserved field in a PASID directory entry";
    /// 58h: the PASID table entry could not be read.
    PasidEntryAccess = 0x58, "SM: error accessing a PASID table entry";
    /// 59h: the PASID table entry is not present.
    PasidEntryNotPresent = 0x59, "SM: PASID table entry not present";
    /// 5Ah: a reserved field of a present PASID table entry is non-zero.
    PasidEntryReserved = 0x5A, "SM: non-zero reserved field in a PASID table entry";
    /// 5Bh: the PASID table entry is programmed with an invalid value (a
    /// reserved or unsupported PGTT, AW or first-stage paging mode).
    InvalidPasidEntry = 0x5B, "SM: invalid programming of a PASID table entry";
    /// 5Dh: a supervisor request to a PASID entry with SRE clear.
    SupervisorRequestsDisabled = 0x5D, "SM: supervisor request while SRE is clear";
    /// 70h: a first-stage paging entry could not be read.
    FsEntryAccess = 0x70, "SM: error accessing a first-stage paging entry";
    /// 71h: a first-stage paging entry is not present.
    FsEntryNotPresent = 0x71, "SM: first-stage paging entry not present";
    /// 72h: a reserved field of a present first-stage paging entry is non-zero.
    FsEntryReserved = 0x72, "SM: non-zero reserved field in a first-stage paging entry";
    /// 73h: the first-stage table's root (FSPTPTR) could not be read.
    FsRootAccess = 0x73, "SM: error accessing the first-stage table root";
    /// 74h: nested: a first-stage table or page address is beyond the
    /// second stage's input width.
    NestedAddressBeyondWidth = 0x74, "SM: first-stage address beyond the second stage's width";
    /// 75h: nested: the second stage denies reading the first-stage root table.
    NestedRootReadDenied = 0x75, "SM: second stage denies reading the first-stage root";
    /// 76h: nested: the second stage denies reading a first-stage table.
    NestedTableReadDenied = 0x76, "SM: second stage denies reading a first-stage table";
    /// 77h: nested: the second stage denies the write of an accessed or
    /// dirty flag into a first-stage entry.
    NestedTableWriteDenied = 0x77, "SM: second stage denies an A/D update of a first-stage entry";
    /// 78h: a second-stage paging entry could not be read.
    SsEntryAccess = 0x78, "SM: error accessing a second-stage paging entry";
    /// 79h: a second-stage paging entry on the walk is not present (R = W = 0).
    SsEntryNotPresent = 0x79, "SM: second-stage paging entry not present";
    /// 7Ah: a reserved field of a present second-stage paging entry is non-zero.
    SsEntryReserved = 0x7A, "SM: non-zero reserved field in a second-stage paging entry";
    /// 80h: the input address of a first-stage translation is not canonical.
    NonCanonical = 0x80, "SM: input address of a first-stage translation not canonical";
    /// 81h: a user request to a first-stage page an entry marks supervisor (U/S = 0).
    UserNotPermitted = 0x81, "SM: user request to a supervisor first-stage page";
    /// 83h: the input address is above the translation's width.
    SmAddressBeyondWidth = 0x83, "SM: input address beyond the translation's width";
    /// 85h: a write to a page without write permission (scalable mode).
    SmWriteNotPermitted = 0x85, "SM: write request without write permission";
    /// 86h: a read to a page without read permission (scalable mode).
    SmReadNotPermitted = 0x86, "SM: read request without read permission";
    /// 87h: the output address falls in the interrupt address range (scalable mode).
    SmInterruptAddressRange = 0x87, "SM: output address in the interrupt address range";
    /// 91h: the unit could not write an accessed or dirty flag into a
    /// first-stage entry.
    FsFlagUpdateFailed = 0x91, "SM: accessed/dirty update of a first-stage entry failed";
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

    #[test]
    fn scalable_mode_codes() {
        // Appendix A's scalable-mode codes, as QEMU's VTDFaultReason
        // (VTD_FR_PASID_DIR_ENTRY_P 0x51, VTD_FR_PASID_ENTRY_P 0x59,
        // VTD_FR_PASID_TABLE_ENTRY_INV 0x5b, VTD_FR_FS_PAGING_ENTRY_P 0x71,
        // VTD_FR_FS_PAGING_ENTRY_RSVD 0x72, VTD_FR_FS_NON_CANONICAL 0x80,
        // VTD_FR_FS_PAGING_ENTRY_US 0x81, VTD_FR_SM_WRITE 0x85,
        // VTD_FR_SM_INTERRUPT_ADDR 0x87, VTD_FR_FS_BIT_UPDATE_FAILED 0x91)
        // and Linux's dma_remap_sm_fault_reasons (from 0x30) number them.
        let kat = [
            (FaultReason::PasidDirEntryNotPresent, 0x51),
            (FaultReason::PasidEntryNotPresent, 0x59),
            (FaultReason::InvalidPasidEntry, 0x5b),
            (FaultReason::FsEntryNotPresent, 0x71),
            (FaultReason::FsEntryReserved, 0x72),
            (FaultReason::NonCanonical, 0x80),
            (FaultReason::UserNotPermitted, 0x81),
            (FaultReason::SmWriteNotPermitted, 0x85),
            (FaultReason::SmInterruptAddressRange, 0x87),
            (FaultReason::FsFlagUpdateFailed, 0x91),
            (FaultReason::SmContextEntryNotPresent, 0x41),
            (FaultReason::SsEntryReserved, 0x7a),
        ];
        for (r, code) in kat {
            assert_eq!(r as u8, code);
        }
    }
}
