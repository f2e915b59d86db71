//! Walking a first-stage table for one input address (VT-d §3.6, §3.8),
//! alone or nested over a second stage, which then translates the address
//! of every first-stage table read and the first stage's output.

use vtd_regs::{FaultReason, Iova, PageSize, PhysAddr, PhysMem};

use super::scalable::{PasidInfo, PasidTranslation, Request, ScalableLimits, scalable_code};
use super::{ContextInfo, Fault, walk_second_level};
use crate::fl_pte::{FlPte, FlPteFlags};
use crate::perm::{Access, Perm};
use crate::pte::{ADDR_MASK, entry_address, index, leaf_size};
use crate::raw::haw_frame_mask;
use crate::translation::Translation;

/// The interrupt address range 0xFEEx_xxxx (§3.15).
const INTERRUPT: core::ops::RangeInclusive<u64> = 0xfee0_0000..=0xfeef_ffff;

/// Translates `iova` for `req` through the first stage of `info` (PGTT
/// first-stage or nested).
///
/// Fault reasons: 80h (`iova` not canonical for 4- or 5-level paging),
/// 73h (the root table's entry unreadable), 70h (a lower entry
/// unreadable), 71h (not present), 72h (reserved bits: an address at or
/// above HAW, PS at level 4 or 5 or at level 3 without CAP.FL1GP, address
/// bits below a large page's size other than PAT), 85h (a write and R/W
/// clear in some entry), 81h (a user request and U/S clear in some entry),
/// 91h (writing A or D failed), 87h (the output page overlaps the
/// interrupt range). The unit sets A in every entry it uses and D in the
/// leaf of a write, as a processor does; the write is not atomic with
/// software's own (`PhysMem` has no compare-and-swap), which the unit's
/// lock orders only against other requests.
///
/// Nested (§3.8): each table address, and the output, is a second-stage
/// input address, translated with [`walk_second_level`]. Its faults
/// become: 74h (beyond the second stage's width), 75h (the root table
/// not readable), 76h (a lower table not readable), 77h (an A/D write
/// not writable), 78h, 7Ah (as second-stage-only); for the output, the
/// scalable-mode codes of a second-stage walk (86h, 85h, 87h, ...).
/// XD is decoded but the model issues no instruction fetches.
pub(crate) fn walk_first_stage<M: PhysMem + ?Sized>(
    mem: &M,
    info: &PasidInfo,
    iova: Iova,
    req: &Request,
    limits: &ScalableLimits,
) -> Result<PasidTranslation, Fault> {
    let fault = |reason, level| Fault { reason, level, fpd: info.fpd };
    let Some((root, five)) = info.first else {
        return Err(fault(FaultReason::InvalidPasidEntry, None));
    };
    let levels: u8 = if five { 5 } else { 4 };
    let va_bits = 12 + 9 * u32::from(levels);
    let upper = (iova.as_u64() as i64) >> (va_bits - 1);
    if upper != 0 && upper != -1 {
        return Err(fault(FaultReason::NonCanonical, None));
    }
    let second = info.second.map(|(t, a)| info.second_stage_context(t, a));
    let write = req.access == Access::Write;
    let (mut table, mut perm, mut user) = (root, Perm::READ_WRITE, true);
    // Each turn reads one entry of a lower level; level 1 always returns.
    for level in (1..=levels).rev() {
        let slot = entry_address(table, index(iova, level));
        let top = level == levels;
        let at = match &second {
            Some(ctx) => stage_two(mem, ctx, slot, Access::Read, top, limits, level)?,
            None => slot,
        };
        let e = mem.read_u64(at).map(FlPte).map_err(|_| {
            fault(
                if top { FaultReason::FsRootAccess } else { FaultReason::FsEntryAccess },
                Some(level),
            )
        })?;
        if !e.is_present() {
            return Err(fault(FaultReason::FsEntryNotPresent, Some(level)));
        }
        if reserved_bits(e, level, limits) != 0 {
            return Err(fault(FaultReason::FsEntryReserved, Some(level)));
        }
        perm &= e.perm();
        user &= e.user();
        let leaf = leaf_size(level).filter(|_| level == 1 || e.is_superpage());
        let mut flags = FlPteFlags::ACCESSED;
        if let Some(size) = leaf {
            if write && !perm.contains(Perm::WRITE) {
                return Err(fault(FaultReason::SmWriteNotPermitted, Some(level)));
            }
            if !req.supervisor && !user {
                return Err(fault(FaultReason::UserNotPermitted, Some(level)));
            }
            if write {
                flags |= FlPteFlags::DIRTY;
            }
            set_flags(mem, second.as_ref(), slot, at, e, flags, limits, level, info.fpd)?;
            let out = PhysAddr::new(e.address().as_u64() | (iova.as_u64() & (size.bytes() - 1)));
            let translation = match &second {
                None => Translation { phys: out, perm, size },
                Some(ctx) => {
                    let t = walk_second_level(
                        mem,
                        ctx,
                        Iova::new(out.as_u64()),
                        req.access,
                        &limits.second_stage_limits(),
                    )
                    .map_err(|f| match f.reason {
                        FaultReason::AddressBeyondWidth => {
                            fault(FaultReason::NestedAddressBeyondWidth, f.level)
                        }
                        _ => scalable_code(f),
                    })?;
                    let size = if t.size.bytes() < size.bytes() { t.size } else { size };
                    Translation { phys: t.phys, perm: perm & t.perm, size }
                }
            };
            let base = translation.page_phys().as_u64();
            let last = base + (translation.size.bytes() - 1);
            if base <= *INTERRUPT.end() && last >= *INTERRUPT.start() {
                return Err(fault(FaultReason::SmInterruptAddressRange, Some(level)));
            }
            return Ok(PasidTranslation { translation, user });
        }
        set_flags(mem, second.as_ref(), slot, at, e, flags, limits, level, info.fpd)?;
        table = e.address();
    }
    Err(fault(FaultReason::FsEntryReserved, Some(1)))
}

/// Translates the first-stage table address `gpa` through the second stage
/// `ctx` for `access` (nested), with the nested fault reasons.
fn stage_two<M: PhysMem + ?Sized>(
    mem: &M,
    ctx: &ContextInfo,
    gpa: PhysAddr,
    access: Access,
    top: bool,
    limits: &ScalableLimits,
    level: u8,
) -> Result<PhysAddr, Fault> {
    walk_second_level(mem, ctx, Iova::new(gpa.as_u64()), access, &limits.second_stage_limits())
        .map(|t| t.phys)
        .map_err(|f| {
            let reason = match f.reason {
                FaultReason::AddressBeyondWidth => FaultReason::NestedAddressBeyondWidth,
                FaultReason::WriteNotPermitted => FaultReason::NestedTableWriteDenied,
                FaultReason::ReadNotPermitted if top => FaultReason::NestedRootReadDenied,
                FaultReason::ReadNotPermitted => FaultReason::NestedTableReadDenied,
                _ => return scalable_code(f),
            };
            Fault { reason, level: Some(level), fpd: ctx.fpd }
        })
}

/// Sets `flags` in the entry `e` (read at `slot`, found at `at`) if any is
/// clear: one write, through the second stage's write permission when
/// nested.
#[allow(clippy::too_many_arguments, reason = "one walk step's state, kept flat for speed")]
fn set_flags<M: PhysMem + ?Sized>(
    mem: &M,
    second: Option<&ContextInfo>,
    slot: PhysAddr,
    at: PhysAddr,
    e: FlPte,
    flags: FlPteFlags,
    limits: &ScalableLimits,
    level: u8,
    fpd: bool,
) -> Result<(), Fault> {
    if e.flags().contains(flags) {
        return Ok(());
    }
    let at = match second {
        Some(ctx) => stage_two(mem, ctx, slot, Access::Write, false, limits, level)?,
        None => at,
    };
    mem.write_u64(at, e.0 | flags.bits()).map_err(|_| Fault {
        reason: FaultReason::FsFlagUpdateFailed,
        level: Some(level),
        fpd,
    })
}

/// The reserved bits set in the present first-stage entry `e` read at
/// `level` (§9.7; QEMU's `VTD_FPTE_*_RSVD_MASK` agree): address bits at or
/// above HAW; PS at levels 5 and 4, and at level 3 without CAP.FL1GP; the
/// address bits of a large page below its size, except bit 12 (PAT).
/// Bits 62:52 are ignored.
pub(crate) fn reserved_bits(e: FlPte, level: u8, limits: &ScalableLimits) -> u64 {
    let mut rsvd = ADDR_MASK & !haw_frame_mask(limits.base.haw);
    if e.is_superpage() {
        match level {
            2 => rsvd |= (PageSize::Size2MiB.bytes() - 1) & ADDR_MASK & !(1 << 12),
            3 if limits.fs_1gib => {
                rsvd |= (PageSize::Size1GiB.bytes() - 1) & ADDR_MASK & !(1 << 12)
            }
            1 => {}
            _ => rsvd |= FlPteFlags::PAGE_SIZE.bits(),
        }
    }
    e.0 & rsvd
}
