//! Scalable-mode walks (VT-d §3.4.3, §3.6, §3.7, §3.8; checks as in §7.1.3
//! and Appendix A's scalable-mode reasons): scalable-mode root and context
//! entries, the PASID directory and table, then the translation the PASID
//! entry selects (PGTT): first stage, second stage, nested, pass-through.
//!
//! The split follows a unit's caches: [`lookup_scalable_context`] gives
//! what a context cache keeps, [`lookup_pasid`] what a PASID cache keeps,
//! [`walk_pasid`] the translation an IOTLB keeps. [`walk_scalable`] does
//! all three. Whatever the memory holds, no call panics, and one
//! [`walk_scalable`] reads at most [`MAX_SCALABLE_WALK_READS`] words.

use vtd_regs::desc::Pasid;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::{Cap, Ecap};
use vtd_regs::{DomainId, FaultReason, Iova, PageSize, PhysAddr, PhysMem, SourceId};

use super::first_stage::walk_first_stage;
use super::{ContextInfo, Fault, WalkLimits, walk_second_level};
use crate::context::TranslationType;
use crate::perm::{Access, Perm};
use crate::raw::haw_frame_mask;
use crate::root::ScalableRootEntry;
use crate::scalable::{PasidDirEntry, PasidEntry, PasidTranslationType, ScalableContextEntry};
use crate::translation::Translation;

/// The most 64-bit words one [`walk_scalable`] reads: 2 (root entry), 4
/// (context entry), 1 (directory entry), 8 (PASID entry), and a nested
/// walk of 5 first-stage levels, each entry's address translated by a
/// 5-level second stage first, and the output translated once more:
/// 5 x (5 + 1) + 5.
pub const MAX_SCALABLE_WALK_READS: usize = 2 + 4 + 1 + 8 + 5 * (5 + 1) + 5;

/// The capabilities a scalable-mode walk checks entries against: those of
/// legacy mode ([`WalkLimits`]) and the scalable-mode ones.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ScalableLimits {
    /// Address widths, SAGAW, SLLPS, ECAP.PT, DT, SC.
    pub base: WalkLimits,
    /// ECAP.FLTS: first-stage (PGTT 001b) entries are valid.
    pub first_stage: bool,
    /// ECAP.SLTS: second-stage (PGTT 010b) entries are valid.
    pub second_stage: bool,
    /// ECAP.NEST: nested (PGTT 011b) entries are valid.
    pub nested: bool,
    /// CAP.FL1GP: first-stage 1 GiB pages.
    pub fs_1gib: bool,
    /// CAP.FL5LP: first-stage 5-level tables.
    pub fs_5level: bool,
    /// ECAP.SRS: supervisor requests (and SRE) supported.
    pub supervisor: bool,
    /// ECAP.PASID: requests with a PASID are supported; ECAP.PSS + 1 bits.
    pub pasid_bits: u8,
}

impl ScalableLimits {
    /// The limits of a unit with these capability registers and a host
    /// address width of `haw` bits.
    pub const fn new(cap: Cap, ecap: Ecap, haw: u8) -> Self {
        Self {
            base: WalkLimits::new(cap, ecap, haw),
            first_stage: ecap.flts(),
            second_stage: ecap.slts(),
            nested: ecap.nest(),
            fs_1gib: cap.fl1gp(),
            fs_5level: cap.fl5lp(),
            supervisor: ecap.srs(),
            pasid_bits: if ecap.pasid() { ecap.pss() + 1 } else { 0 },
        }
    }

    /// The limits a second-stage walk of scalable mode checks: the legacy
    /// ones, with SNP (bit 11) ignored rather than reserved, as in
    /// scalable-mode second-stage entries (QEMU's `vtd_slpte_nonzero_rsvd`
    /// masks it in scalable mode too; Linux sets it there).
    pub(crate) const fn second_stage_limits(&self) -> WalkLimits {
        let mut l = self.base;
        l.snoop_control = true;
        l
    }
}

/// A DMA request in scalable mode: its kind, PASID and privilege.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Request {
    /// Read or write.
    pub access: Access,
    /// The PASID the request carries (PCIe PASID prefix); `None` for a
    /// request without one, which uses the context entry's RID_PASID.
    pub pasid: Option<Pasid>,
    /// Privileged (PR = 1, supervisor). A request without a PASID is a
    /// user request (§3.6).
    pub supervisor: bool,
}

impl Request {
    /// A request without a PASID.
    pub const fn untagged(access: Access) -> Self {
        Self { access, pasid: None, supervisor: false }
    }
}

/// A translation in scalable mode: the page, and whether user requests
/// may use it (U/S in every first-stage entry; always for second-stage
/// and pass-through translations), which an IOTLB keeps with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PasidTranslation {
    /// The page and its permission.
    pub translation: Translation,
    /// User requests allowed.
    pub user: bool,
}

/// A validated scalable-mode context entry: what a context cache holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ScalableContextInfo {
    /// PASIDDIRPTR.
    pub pasid_dir: PhysAddr,
    /// Directory entries (2^(PDTS + 7)).
    pub dir_entries: u32,
    /// RID_PASID: the PASID of requests without one.
    pub rid_pasid: Pasid,
    /// PASIDE: requests with a PASID are allowed.
    pub pasid_enabled: bool,
    /// FPD.
    pub fpd: bool,
}

/// A validated PASID entry: what a PASID cache holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PasidInfo {
    /// The PASID it was read for.
    pub pasid: Pasid,
    /// DID.
    pub domain: DomainId,
    /// PGTT.
    pub pgtt: PasidTranslationType,
    /// The second stage (second-stage only and nested): table and depth.
    pub second: Option<(PhysAddr, Agaw)>,
    /// The first stage (first-stage only and nested): FSPTPTR and whether
    /// it is 5-level.
    pub first: Option<(PhysAddr, bool)>,
    /// SRE.
    pub supervisor: bool,
    /// FPD of the context, directory or PASID entry.
    pub fpd: bool,
}

impl PasidInfo {
    /// The second stage as a legacy-mode context, for
    /// [`walk_second_level`] (the one second-stage walker).
    pub(crate) fn second_stage_context(&self, table: PhysAddr, agaw: Agaw) -> ContextInfo {
        ContextInfo {
            domain: self.domain,
            translation_type: TranslationType::Untranslated,
            agaw,
            slptptr: table,
            fpd: self.fpd,
        }
    }
}

/// Reads and validates `sid`'s scalable-mode root and context entries in
/// the root table at `root_table`. Fault reasons, in order: 38h, 39h, 3Ah
/// (root entry unreadable, not present, reserved), 40h, 41h, 42h (context
/// entry), 43h (DTE without ECAP.DT).
pub fn lookup_scalable_context<M: PhysMem + ?Sized>(
    mem: &M,
    root_table: PhysAddr,
    sid: SourceId,
    limits: &ScalableLimits,
) -> Result<ScalableContextInfo, FaultReason> {
    let devfn = sid.devfn();
    let root = ScalableRootEntry::read(mem, root_table, sid.bus())
        .map_err(|_| FaultReason::SmRootEntryAccess)?;
    let Some(table) = root.context_table(devfn) else {
        return Err(FaultReason::SmRootEntryNotPresent);
    };
    if root.has_reserved_bits(devfn, limits.base.haw) {
        return Err(FaultReason::SmRootEntryReserved);
    }
    let ce = ScalableContextEntry::read(mem, ScalableContextEntry::address(table, devfn))
        .map_err(|_| FaultReason::SmContextEntryAccess)?;
    if !ce.present() {
        return Err(FaultReason::SmContextEntryNotPresent);
    }
    if ce.has_reserved_bits(limits.base.haw) {
        return Err(FaultReason::SmContextEntryReserved);
    }
    if ce.device_tlb() && !limits.base.device_tlb {
        return Err(FaultReason::SmInvalidContextEntry);
    }
    Ok(ScalableContextInfo {
        pasid_dir: ce.pasid_dir(),
        dir_entries: ce.pasid_dir_entries(),
        rid_pasid: Pasid::new(ce.rid_pasid()).unwrap_or_default(),
        pasid_enabled: ce.pasid_enabled(),
        fpd: ce.fpd(),
    })
}

/// The PASID a request uses in `ctx`: its own (checked against PASIDE and
/// ECAP.PASID/PSS, 45h) or RID_PASID.
pub fn effective_pasid(
    ctx: &ScalableContextInfo,
    req: &Request,
    limits: &ScalableLimits,
) -> Result<Pasid, FaultReason> {
    match req.pasid {
        None => Ok(ctx.rid_pasid),
        Some(p) if ctx.pasid_enabled && limits.pasid_bits > 0 => {
            if limits.pasid_bits < 20 && p.raw() >> limits.pasid_bits != 0 {
                return Err(FaultReason::SmPasidBeyondDirectory);
            }
            Ok(p)
        }
        Some(_) => Err(FaultReason::SmPasidDisabled),
    }
}

/// Reads and validates the PASID entry of `pasid` under `ctx`. Fault
/// reasons: 46h (PASID beyond the directory), 50h, 51h, 52h (directory
/// entry unreadable, not present, reserved), 58h, 59h, 5Ah (PASID entry),
/// 5Bh (PGTT reserved or not supported by ECAP.FLTS/SLTS/NEST/PT, AW not
/// in SAGAW, FLPM reserved or 5-level without CAP.FL5LP, SRE without
/// ECAP.SRS, a table pointer at or above HAW), 5Dh (a supervisor request
/// and SRE clear).
pub fn lookup_pasid<M: PhysMem + ?Sized>(
    mem: &M,
    ctx: &ScalableContextInfo,
    pasid: Pasid,
    supervisor: bool,
    limits: &ScalableLimits,
) -> Result<PasidInfo, Fault> {
    let mut fpd = ctx.fpd;
    let fault = |reason, fpd| Fault { reason, level: None, fpd };
    if pasid.raw() >> 6 >= ctx.dir_entries {
        return Err(fault(FaultReason::SmPasidBeyondDirectory, fpd));
    }
    let de = mem
        .read_u64(PasidDirEntry::address(ctx.pasid_dir, pasid.raw()))
        .map(PasidDirEntry)
        .map_err(|_| fault(FaultReason::PasidDirEntryAccess, fpd))?;
    fpd |= de.fpd();
    if !de.present() {
        return Err(fault(FaultReason::PasidDirEntryNotPresent, fpd));
    }
    if de.has_reserved_bits(limits.base.haw) {
        return Err(fault(FaultReason::PasidDirEntryReserved, fpd));
    }
    let pe = PasidEntry::read(mem, PasidEntry::address(de.table(), pasid.raw()))
        .map_err(|_| fault(FaultReason::PasidEntryAccess, fpd))?;
    fpd |= pe.fpd();
    if !pe.present() {
        return Err(fault(FaultReason::PasidEntryNotPresent, fpd));
    }
    if pe.has_reserved_bits() {
        return Err(fault(FaultReason::PasidEntryReserved, fpd));
    }
    let info = decode_pasid_entry(&pe, pasid, fpd, limits)
        .ok_or(fault(FaultReason::InvalidPasidEntry, fpd))?;
    if supervisor && !info.supervisor {
        return Err(fault(FaultReason::SupervisorRequestsDisabled, fpd));
    }
    Ok(info)
}

/// The PASID entry `pe` as the unit uses it, or `None` if it is invalid
/// for this unit (5Bh).
fn decode_pasid_entry(
    pe: &PasidEntry,
    pasid: Pasid,
    fpd: bool,
    limits: &ScalableLimits,
) -> Option<PasidInfo> {
    let pgtt = pe.translation_type()?;
    let in_haw = |a: PhysAddr| a.as_u64() & !haw_frame_mask(limits.base.haw) & !0xfff == 0;
    let uses_second =
        matches!(pgtt, PasidTranslationType::SecondStage | PasidTranslationType::Nested);
    let uses_first =
        matches!(pgtt, PasidTranslationType::FirstStage | PasidTranslationType::Nested);
    let supported = match pgtt {
        PasidTranslationType::FirstStage => limits.first_stage,
        PasidTranslationType::SecondStage => limits.second_stage,
        PasidTranslationType::Nested => limits.nested && limits.first_stage && limits.second_stage,
        PasidTranslationType::PassThrough => limits.base.pass_through,
    };
    if !supported || (pe.sre() && !limits.supervisor) {
        return None;
    }
    // AW is checked for a pass-through entry too (§9.6: it holds the
    // widest AGAW; QEMU faults an unsupported one).
    if pgtt == PasidTranslationType::PassThrough
        && !pe.agaw().is_some_and(|a| limits.base.sagaw.supports(a))
    {
        return None;
    }
    let second = if uses_second {
        let agaw = pe.agaw().filter(|a| limits.base.sagaw.supports(*a))?;
        if !in_haw(pe.sl_table()) {
            return None;
        }
        Some((pe.sl_table(), agaw))
    } else {
        None
    };
    let first = if uses_first {
        let five = pe.five_level().filter(|five| !five || limits.fs_5level)?;
        // Nested: FSPTPTR is a second-stage input address, checked there.
        if pgtt == PasidTranslationType::FirstStage && !in_haw(pe.fs_table()) {
            return None;
        }
        Some((pe.fs_table(), five))
    } else {
        None
    };
    Some(PasidInfo {
        pasid,
        domain: pe.domain_id(),
        pgtt,
        second,
        first,
        supervisor: pe.sre(),
        fpd,
    })
}

/// Translates `iova` for `req` through the PASID entry `info` (from
/// [`lookup_pasid`] or a PASID cache): pass-through (the same address,
/// read-write, 4 KiB), second stage, first stage, or nested.
///
/// Second-stage faults are the legacy walker's in their scalable-mode
/// codes: 83h (beyond the width), 78h (entry unreadable), 86h or 85h (an
/// entry lacks the access), 7Ah (reserved bits), 87h (interrupt range).
/// First-stage faults: 80h (not canonical), 73h or 70h (the root or a
/// lower entry unreadable), 71h (not present), 72h (reserved bits), 85h
/// (R/W clear on a write), 81h (U/S clear on a user request), 91h (an A or
/// D update failed), 87h; nested walks add 74h (a first-stage address
/// beyond the second stage's width), 75h and 76h (the second stage does
/// not let the root or a lower first-stage table be read), 77h (nor an
/// A/D update be written).
pub fn walk_pasid<M: PhysMem + ?Sized>(
    mem: &M,
    info: &PasidInfo,
    iova: Iova,
    req: &Request,
    limits: &ScalableLimits,
) -> Result<PasidTranslation, Fault> {
    let translation = match info.second {
        _ if info.first.is_some() => return walk_first_stage(mem, info, iova, req, limits),
        Some((table, agaw)) => {
            let ctx = info.second_stage_context(table, agaw);
            walk_second_level(mem, &ctx, iova, req.access, &limits.second_stage_limits())
                .map_err(scalable_code)?
        }
        None => Translation {
            phys: PhysAddr::new(iova.as_u64()),
            perm: Perm::READ_WRITE,
            size: PageSize::Size4KiB,
        },
    };
    Ok(PasidTranslation { translation, user: true })
}

/// A second-stage fault of the legacy walker in its scalable-mode code
/// (Appendix A): 4h -> 83h, 5h -> 85h, 6h -> 86h, 7h -> 78h, Ch -> 7Ah,
/// Eh -> 87h.
pub(crate) fn scalable_code(f: Fault) -> Fault {
    let reason = match f.reason {
        FaultReason::AddressBeyondWidth => FaultReason::SmAddressBeyondWidth,
        FaultReason::WriteNotPermitted => FaultReason::SmWriteNotPermitted,
        FaultReason::ReadNotPermitted => FaultReason::SmReadNotPermitted,
        FaultReason::PagingEntryAccess => FaultReason::SsEntryAccess,
        FaultReason::PagingEntryReserved => FaultReason::SsEntryReserved,
        FaultReason::InterruptAddressRange => FaultReason::SmInterruptAddressRange,
        other => other,
    };
    Fault { reason, ..f }
}

/// Everything a scalable-mode unit does for one request from `sid` with
/// the root table at `root_table` (RTADDR.TTM = 01b): context, PASID entry,
/// translation. Returns what the context and PASID caches would keep too.
pub fn walk_scalable<M: PhysMem + ?Sized>(
    mem: &M,
    root_table: PhysAddr,
    sid: SourceId,
    iova: Iova,
    req: &Request,
    limits: &ScalableLimits,
) -> Result<(ScalableContextInfo, PasidInfo, PasidTranslation), Fault> {
    let ctx = lookup_scalable_context(mem, root_table, sid, limits)?;
    let pasid = effective_pasid(&ctx, req, limits).map_err(|reason| Fault {
        reason,
        level: None,
        fpd: ctx.fpd,
    })?;
    let info = lookup_pasid(mem, &ctx, pasid, req.supervisor, limits)?;
    let t = walk_pasid(mem, &info, iova, req, limits)?;
    Ok((ctx, info, t))
}
