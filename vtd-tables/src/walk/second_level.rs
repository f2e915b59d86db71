//! Walking a second-level table for one IOVA (VT-d §3.7, entry checks as in
//! §7.1.3 and Appendix A).

use vtd_regs::{Iova, PageSize, PhysAddr, PhysMem};

use super::{ContextInfo, Fault, WalkLimits};
use crate::context::TranslationType;
use crate::perm::{Access, Perm};
use crate::pte::{ADDR_MASK, SlPte, SlPteFlags, entry_address, index, leaf_size};
use crate::raw::haw_frame_mask;
use crate::translation::Translation;
use vtd_regs::FaultReason;

/// The interrupt address range 0xFEEx_xxxx (§3.15): untranslated requests
/// whose output falls there are blocked with fault Eh.
const INTERRUPT_FIRST: u64 = 0xfee0_0000;
const INTERRUPT_LAST: u64 = 0xfeef_ffff;

/// Translates `iova` for `access` in the context `ctx` (from
/// [`lookup_context`](super::lookup_context) or a context cache).
///
/// A pass-through context translates to the same address, read-write, in
/// 4 KiB pages. Otherwise, fault reasons: 4h (IOVA at or above 2^min(MGAW,
/// AGAW)), 7h (entry unreadable), 6h or 5h (an entry lacks the access's
/// permission, including a not-present entry), Ch (reserved bits in an
/// entry that allows the access), Eh (the page overlaps the interrupt
/// range).
pub fn walk_second_level<M: PhysMem + ?Sized>(
    mem: &M,
    ctx: &ContextInfo,
    iova: Iova,
    access: Access,
    limits: &WalkLimits,
) -> Result<Translation, Fault> {
    walk_needing(mem, ctx, iova, access.required(), access.denied(), limits)
}

/// Translates `iova` in the context `ctx` as a request of either kind would:
/// the translation a read gets, or where a read faults, a write's; a fault
/// when neither translates (6h where no access passes an entry, as for a
/// read, including a not-present one). One walk, where asking
/// [`walk_second_level`] for a read and then a write takes two when the
/// IOVA is not mapped: what a shadow of the table asks (can a request
/// reach the page, and with which permission).
pub fn walk_second_level_any<M: PhysMem + ?Sized>(
    mem: &M,
    ctx: &ContextInfo,
    iova: Iova,
    limits: &WalkLimits,
) -> Result<Translation, Fault> {
    walk_needing(mem, ctx, iova, Perm::READ_WRITE, Access::Read.denied(), limits)
}

/// The walk of [`walk_second_level`] for a request that needs one of
/// `need` at every level (and, through the levels, keeps at least one),
/// faulting with `denied` where it does not.
fn walk_needing<M: PhysMem + ?Sized>(
    mem: &M,
    ctx: &ContextInfo,
    iova: Iova,
    need: Perm,
    denied: FaultReason,
    limits: &WalkLimits,
) -> Result<Translation, Fault> {
    let fault = |reason, level| Fault { reason, level, fpd: ctx.fpd };
    if ctx.translation_type == TranslationType::PassThrough {
        return Ok(Translation {
            phys: PhysAddr::new(iova.as_u64()),
            perm: Perm::READ_WRITE,
            size: PageSize::Size4KiB,
        });
    }
    let width = ctx.agaw.bits().min(limits.mgaw);
    if width < 64 && iova.as_u64() >> width != 0 {
        return Err(fault(FaultReason::AddressBeyondWidth, None));
    }
    let mut table = ctx.slptptr;
    let mut perm = Perm::READ_WRITE;
    let mut level = ctx.agaw.levels();
    // Each turn reads one entry of a lower level; level 1 always returns.
    loop {
        let pte = mem
            .read_u64(entry_address(table, index(iova, level)))
            .map(SlPte)
            .map_err(|_| fault(FaultReason::PagingEntryAccess, Some(level)))?;
        // One access (`need` a single bit, which `perm` keeps): the entry
        // must allow it. Either access: one that every level so far allowed
        // (read above and write-only below reach nothing).
        if !pte.perm().intersects(perm & need) {
            return Err(fault(denied, Some(level)));
        }
        if reserved_bits(pte, level, limits) != 0 {
            return Err(fault(FaultReason::PagingEntryReserved, Some(level)));
        }
        perm &= pte.perm();
        match leaf_size(level) {
            Some(size) if level == 1 || pte.is_superpage() => {
                let base = pte.address().as_u64();
                if base <= INTERRUPT_LAST && base + (size.bytes() - 1) >= INTERRUPT_FIRST {
                    return Err(fault(FaultReason::InterruptAddressRange, Some(level)));
                }
                let phys = PhysAddr::new(base | (iova.as_u64() & (size.bytes() - 1)));
                return Ok(Translation { phys, perm, size });
            }
            _ => {}
        }
        table = pte.address();
        level -= 1;
    }
}

/// The reserved bits set in the present entry `pte` read at `level`:
/// address bits at or above HAW; PS where no superpage can be (levels 4 and
/// 5, or a size CAP.SLLPS lacks); the address bits below a superpage's
/// size; TM in a non-leaf entry; SNP and TM in a leaf when ECAP.SC and
/// ECAP.DT lack them (§9.8; QEMU's `vtd_slpte_nonzero_rsvd` agrees).
pub(crate) fn reserved_bits(pte: SlPte, level: u8, limits: &WalkLimits) -> u64 {
    let mut rsvd = ADDR_MASK & !haw_frame_mask(limits.haw);
    let leaf = level == 1 || pte.is_superpage();
    if pte.is_superpage() {
        match leaf_size(level) {
            Some(size) if level > 1 => {
                if !limits.sllps.supports(size) {
                    rsvd |= SlPteFlags::SUPERPAGE.bits();
                }
                rsvd |= (size.bytes() - 1) & ADDR_MASK;
            }
            _ if level > 1 => rsvd |= SlPteFlags::SUPERPAGE.bits(),
            // Bit 7 of a last-level entry is ignored.
            _ => {}
        }
    }
    if !leaf || !limits.device_tlb {
        rsvd |= SlPteFlags::TRANSIENT.bits();
    }
    if leaf && !limits.snoop_control {
        rsvd |= SlPteFlags::SNOOP.bits();
    }
    pte.0 & rsvd
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};

    fn limits(sllps: SecondLevelPageSizes, sc: bool, dt: bool) -> WalkLimits {
        WalkLimits {
            haw: 39,
            mgaw: 48,
            sagaw: Sagaw::all(),
            sllps,
            pass_through: true,
            device_tlb: dt,
            snoop_control: sc,
        }
    }

    #[test]
    fn reserved_bit_known_answers() {
        let all = limits(SecondLevelPageSizes::all(), false, false);
        let leaf = SlPte::leaf(PhysAddr::new(0x1000), Perm::READ, PageSize::Size4KiB);
        assert_eq!(reserved_bits(leaf, 1, &all), 0);
        assert_eq!(reserved_bits(SlPte(leaf.0 | 1 << 40), 1, &all), 1 << 40);
        let snp = leaf.with_flags(SlPteFlags::SNOOP, true);
        assert_eq!(reserved_bits(snp, 1, &all), 1 << 11);
        assert_eq!(reserved_bits(snp, 1, &limits(SecondLevelPageSizes::all(), true, false)), 0);
        // Bit 7 of a last-level entry is ignored.
        assert_eq!(reserved_bits(SlPte(0x1081), 1, &all), 0);
        // A 2 MiB leaf with address bit 12 set; PS where unsupported.
        assert_eq!(reserved_bits(SlPte(0x20_1081), 2, &all), 0x1000);
        assert_eq!(
            reserved_bits(
                SlPte(0x20_0081),
                2,
                &limits(SecondLevelPageSizes::empty(), false, false)
            ),
            0x80
        );
        assert_eq!(
            reserved_bits(
                SlPte(0x4000_0081),
                3,
                &limits(SecondLevelPageSizes::SIZE_2MIB, false, false)
            ),
            0x80
        );
        assert_eq!(reserved_bits(SlPte(0x20_0081), 4, &all), 0x80);
        // TM: in a leaf only with ECAP.DT, never in a non-leaf entry.
        let tm = leaf.with_flags(SlPteFlags::TRANSIENT, true);
        assert_eq!(reserved_bits(tm, 1, &all), 1 << 62);
        assert_eq!(reserved_bits(tm, 1, &limits(SecondLevelPageSizes::all(), false, true)), 0);
        let t = SlPte::table(PhysAddr::new(0x1000)).with_flags(SlPteFlags::TRANSIENT, true);
        assert_eq!(reserved_bits(t, 2, &limits(SecondLevelPageSizes::all(), true, true)), 1 << 62);
        // Bits 61:52 are ignored.
        assert_eq!(
            reserved_bits(SlPte(SlPte::table(PhysAddr::new(0x1000)).0 | 0x3ff << 52), 3, &all),
            0
        );
    }
}
