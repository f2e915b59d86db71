//! Finding the context of a source id: root entry, then context entry
//! (VT-d §3.4.2, checks as in §7.1.3 and Appendix A).

use vtd_regs::regs::cap::Agaw;
use vtd_regs::{DomainId, FaultReason, PhysAddr, PhysMem, SourceId};

use super::WalkLimits;
use crate::context::{ContextEntry, TranslationType};
use crate::root::RootEntry;

/// A validated context entry: what a context cache holds for a source id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ContextInfo {
    /// DID: tags the IOTLB entries of this context.
    pub domain: DomainId,
    /// TT.
    pub translation_type: TranslationType,
    /// AW: the table depth and input address width.
    pub agaw: Agaw,
    /// SLPTPTR: the second-level table's root frame.
    pub slptptr: PhysAddr,
    /// FPD: faults are not recorded.
    pub fpd: bool,
}

/// Reads and validates the root and context entries of `sid` in the
/// legacy-mode root table at `root_table`.
///
/// Fault reasons, in the order a unit checks them: 8h (root entry
/// unreadable), 1h (not present), Ah (reserved bits), 9h (context entry
/// unreadable), 2h (not present), Bh (reserved bits), 3h (reserved or
/// unsupported TT, or AW not in SAGAW).
pub fn lookup_context<M: PhysMem + ?Sized>(
    mem: &M,
    root_table: PhysAddr,
    sid: SourceId,
    limits: &WalkLimits,
) -> Result<ContextInfo, FaultReason> {
    let root =
        RootEntry::read(mem, root_table, sid.bus()).map_err(|_| FaultReason::RootEntryAccess)?;
    if !root.present() {
        return Err(FaultReason::RootEntryNotPresent);
    }
    if root.has_reserved_bits(limits.haw) {
        return Err(FaultReason::RootEntryReserved);
    }
    let ce = ContextEntry::read(mem, root.context_table(), sid)
        .map_err(|_| FaultReason::ContextEntryAccess)?;
    if !ce.present() {
        return Err(FaultReason::ContextEntryNotPresent);
    }
    if ce.has_reserved_bits(limits.haw) {
        return Err(FaultReason::ContextEntryReserved);
    }
    let tt = match ce.translation_type() {
        Some(TranslationType::WithDeviceTlb) if !limits.device_tlb => None,
        Some(TranslationType::PassThrough) if !limits.pass_through => None,
        tt => tt,
    };
    let agaw = ce.agaw().filter(|a| limits.sagaw.supports(*a));
    match (tt, agaw) {
        (Some(translation_type), Some(agaw)) => Ok(ContextInfo {
            domain: ce.domain_id(),
            translation_type,
            agaw,
            slptptr: ce.slptptr(),
            fpd: ce.fpd(),
        }),
        _ => Err(FaultReason::InvalidContextEntry),
    }
}
