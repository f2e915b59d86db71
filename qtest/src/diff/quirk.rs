//! [`Quirk`]: a known disagreement between QEMU and `vtd-emu`, documented
//! in docs/qemu-vs-vtd-emu.md (one section per quirk, named after it),
//! masked so that the rest of a run can still be compared, and asserted to
//! still show: a quirk that QEMU or `vtd-emu` fixes fails its test, which
//! then points at the section to update.

use vtd_regs::regs::QueueErrorInfo;

use crate::diff::outcome::{DmaResult, Outcome};

/// A documented way QEMU's outcomes differ from `vtd-emu`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quirk {
    /// QEMU 7.2 implements no IQERCD: it reads 0 ("no detail") where
    /// `vtd-emu` gives the reason (§10.4.25). Both are allowed.
    NoIqercd,
    /// QEMU blocks a request whose cached (IOTLB) translation lacks the
    /// permission without recording a fault; §7.1.3 has the fault (reason
    /// 5h or 6h, in scalable mode 85h or 86h) recorded, as `vtd-emu` does.
    /// QEMU is wrong.
    SilentCachedPermission,
    /// QEMU looks a request up in its IOTLB (tagged by source id) before
    /// the context cache, so a device-selective context-cache invalidation
    /// alone leaves its translations working until the domain's IOTLB
    /// invalidation; `vtd-emu` faults (reason 2h) at once. Both are
    /// allowed: §6.5.3.3 has software invalidate both.
    IotlbBeforeContext,
    /// QEMU fetches descriptors only on an IQT write: clearing FSTS.IQE
    /// with IQH != IQT does not resume the queue; `vtd-emu` resumes (and
    /// here fails again on the same descriptor). QEMU's own source has a
    /// FIXME for it; the specification has fetching resume (§6.5.2.10).
    ResumeOnTailWriteOnly,
    /// With CAP.CM = 1 `vtd-emu` caches not-present leaf entries, so a page
    /// mapped after a fault stays blocked (reason 5h/6h) until it is
    /// invalidated; QEMU caches no absent entry and sees the map at once.
    /// Both are allowed (§6.1): software must invalidate after a map.
    NoNegativeCaching,
    /// QEMU drops a fault from a requester that already has a fault
    /// pending without setting FSTS.PFO (it collapses them); `vtd-emu`,
    /// whose records are full, sets PFO. Both are allowed: §7.3.1 lets
    /// hardware collapse faults of one source.
    CollapsedSameSourceFaults,
    /// QEMU treats bit 11 of a non-leaf second-level entry as reserved
    /// (fault Ch); `vtd-emu` (the `vtd-tables` walker) ignores it and
    /// translates. See the documentation for the specification's word.
    NonLeafBit11,
    /// QEMU refuses (IQE) a wait descriptor with neither SW nor IF set;
    /// `vtd-emu` completes it. §6.5.2.8 gives both flags as options, so
    /// such a wait (a plain fence) is valid: QEMU is stricter than the
    /// specification.
    WaitNeedsSwOrIf,
    /// QEMU keeps GSTS.QIES set when software clears GCMD.QIE unless the
    /// last descriptor it processed was a wait descriptor (the disable
    /// times out); `vtd-emu` disables once IQH = IQT. §10.4.4 has software
    /// drain the queue (with a wait) before disabling; QEMU enforces it.
    DisableQueueNeedsWait,
    /// QEMU 7.2 completes PASID-based descriptors (types 6 and 7) on a
    /// unit without scalable mode; `vtd-emu` refuses them (IQE: invalid
    /// type, or a reserved field), as §6.5.2 has for types the unit does
    /// not support.
    ScalableDescriptorsWithoutSmts,
    /// QEMU 7.2 does not check the reserved bits of an interrupt entry
    /// cache descriptor (type 4); `vtd-emu` refuses one with a reserved bit
    /// set (IQE), as §6.5.2.6 and §6.5.2.10 have.
    IecReservedUnchecked,
    /// QEMU reads IQA back as the queue address latched by the last
    /// GCMD.QIE (0 before) with only QS from the register: what software
    /// wrote to the address (and DW) does not read back. §10.4.23 has
    /// IQA's fields read back as written; `vtd-emu` does.
    IqaReadsLatchedAddress,
    /// QEMU lets software set IRTA.EIME (bit 11) although its ECAP.EIM is
    /// 0; `vtd-emu` keeps it 0, as §10.4.29 has for such units.
    IrtaEimeWritable,
    /// QEMU keeps all 32 bits of IEDATA writable (its FEDATA has 16);
    /// `vtd-emu` keeps 16, treating EIMD (31:16) as reserved, as
    /// §10.4.26 allows for units with 16-bit interrupt data.
    IedataUpperHalfWritable,
    /// In scalable mode QEMU 7.2 reports the legacy-mode reasons for root,
    /// context and second-stage faults (1h, 2h, 5h, 6h, Ch, ...) where
    /// `vtd-emu` reports Appendix A's scalable-mode ones (39h, 41h, 85h,
    /// 86h, 7Ah, ...). QEMU is wrong: the scalable-mode reasons exist for
    /// these conditions.
    LegacyCodesInScalableMode,
    /// QEMU 7.2 reports 58h (its `VTD_FR_PASID_TABLE_INV`) for a
    /// not-present PASID directory or PASID entry and for an invalid PASID
    /// entry, where `vtd-emu` reports 51h, 59h, 5Bh; later QEMU (2024)
    /// reports 51h, 59h and 5Bh too.
    PasidFaultCodes,
}

/// Whether `refuser` stopped the queue (IQE) on the descriptor `other`
/// completed.
fn refused_by(refuser: &Outcome, other: &Outcome) -> bool {
    matches!(
        (refuser, other),
        (
            Outcome::Queue { head: a, error: Some(_), .. },
            Outcome::Queue { head: b, error: None, .. },
        ) if *b == a + 1
    )
}

impl Quirk {
    /// Masks this quirk in a pair of outcome lists, QEMU's and `vtd-emu`'s,
    /// by changing the `vtd-emu` side to what QEMU did wherever the two
    /// differ exactly as the quirk says; returns whether it showed at all.
    pub fn mask(self, qemu: &[Outcome], emu: &mut [Outcome]) -> bool {
        let mut showed = false;
        for (q, e) in qemu.iter().zip(emu.iter_mut()) {
            if self.shows(q, e) {
                *e = q.clone();
                showed = true;
            }
        }
        showed
    }

    /// Whether `q` (QEMU) and `e` (`vtd-emu`) differ as this quirk says.
    fn shows(self, q: &Outcome, e: &Outcome) -> bool {
        use Outcome::{Dma, Queue};
        let same_step = match (q, e) {
            (Outcome::Command { step: a, .. }, Outcome::Command { step: b, .. })
            | (Dma { step: a, .. }, Dma { step: b, .. })
            | (Queue { step: a, .. }, Queue { step: b, .. })
            | (Outcome::Register { step: a, .. }, Outcome::Register { step: b, .. })
            | (Outcome::FaultStatus { step: a, .. }, Outcome::FaultStatus { step: b, .. }) => {
                a == b
            }
            _ => false,
        };
        if !same_step {
            return false;
        }
        let reason = |e: &Outcome| match e {
            Dma { result: DmaResult::Blocked, faults, .. } if faults.len() == 1 => {
                Some(faults[0].reason)
            }
            _ => None,
        };
        let silent_reach =
            matches!(q, Dma { result: DmaResult::Reached(_), faults, .. } if faults.is_empty());
        match self {
            Quirk::NoIqercd => matches!(
                (q, e),
                (
                    Queue { head: a, error: Some(QueueErrorInfo::NotAvailable), .. },
                    Queue { head: b, error: Some(detail), .. },
                ) if a == b && *detail != QueueErrorInfo::NotAvailable
            ),
            Quirk::SilentCachedPermission => {
                matches!(q, Dma { result: DmaResult::Blocked, faults, .. } if faults.is_empty())
                    && matches!(reason(e), Some(5 | 6 | 0x85 | 0x86))
            }
            Quirk::IotlbBeforeContext => silent_reach && reason(e) == Some(2),
            Quirk::NonLeafBit11 => {
                reason(q) == Some(0xC)
                    && matches!(e, Dma { result: DmaResult::Reached(_), faults, .. } if faults.is_empty())
            }
            Quirk::NoNegativeCaching => silent_reach && matches!(reason(e), Some(5 | 6)),
            Quirk::CollapsedSameSourceFaults => matches!(
                (q, e),
                (
                    Outcome::FaultStatus { overflow: false, pending: p, index: i, .. },
                    Outcome::FaultStatus { overflow: true, pending: pe, index: ie, .. },
                ) if p == pe && i == ie
            ),
            Quirk::WaitNeedsSwOrIf => refused_by(q, e),
            Quirk::ScalableDescriptorsWithoutSmts | Quirk::IecReservedUnchecked => refused_by(e, q),
            Quirk::DisableQueueNeedsWait => matches!(
                (q, e),
                (Outcome::Command { result: Err(_), .. }, Outcome::Command { result: Ok(_), .. })
            ),
            Quirk::IqaReadsLatchedAddress => {
                matches!(
                    (q, e),
                    (
                        Outcome::Register { offset: 0x90, value: a, .. },
                        Outcome::Register { offset: 0x90, value: b, .. },
                    ) if *a == b & 0x7
                ) || matches!(
                    (q, e),
                    (
                        Outcome::Register { offset: 0x94, value: 0, .. },
                        Outcome::Register { offset: 0x94, .. }
                    )
                )
            }
            Quirk::IrtaEimeWritable => matches!(
                (q, e),
                (
                    Outcome::Register { offset: 0xB8, value: a, .. },
                    Outcome::Register { offset: 0xB8, value: b, .. },
                ) if *a == b | 1 << 11
            ),
            Quirk::IedataUpperHalfWritable => matches!(
                (q, e),
                (
                    Outcome::Register { offset: 0xA4, value: a, .. },
                    Outcome::Register { offset: 0xA4, value: b, .. },
                ) if a & 0xFFFF == *b && a >> 16 != 0
            ),
            Quirk::LegacyCodesInScalableMode => matches!(
                (reason(q), reason(e)),
                (Some(1), Some(0x39))
                    | (Some(2), Some(0x41))
                    | (Some(3), Some(0x43))
                    | (Some(4), Some(0x83))
                    | (Some(5), Some(0x85))
                    | (Some(6), Some(0x86))
                    | (Some(7), Some(0x78))
                    | (Some(0xA), Some(0x3A))
                    | (Some(0xB), Some(0x42))
                    | (Some(0xC), Some(0x7A))
                    | (Some(0xE), Some(0x87))
            ),
            Quirk::PasidFaultCodes => {
                reason(q) == Some(0x58) && matches!(reason(e), Some(0x51 | 0x59 | 0x5B))
            }
            Quirk::ResumeOnTailWriteOnly => matches!(
                (q, e),
                (Queue { head: a, error: None, .. }, Queue { head: b, error: Some(_), .. })
                    if a == b
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use vtd_regs::regs::FaultType;
    use vtd_tables::Access;

    use super::*;
    use crate::diff::outcome::FaultSeen;
    use crate::diff::scenario::EDU_SID;

    fn dma(result: DmaResult, reasons: &[u8]) -> Outcome {
        let faults = reasons
            .iter()
            .map(|r| FaultSeen { source: EDU_SID, kind: FaultType::Write, reason: *r, page: 0 })
            .collect();
        Outcome::Dma { step: 3, access: Access::Write, result, faults }
    }

    #[test]
    fn a_quirk_masks_only_the_difference_it_names() {
        let qemu = [dma(DmaResult::Blocked, &[]), dma(DmaResult::Blocked, &[])];
        let mut emu = [dma(DmaResult::Blocked, &[5]), dma(DmaResult::Blocked, &[2])];
        assert!(Quirk::SilentCachedPermission.mask(&qemu, &mut emu));
        assert_eq!(emu[0], qemu[0]);
        assert_eq!(emu[1], dma(DmaResult::Blocked, &[2]), "reason 2 is another difference");
        assert!(!Quirk::NoIqercd.mask(&qemu, &mut emu));
    }

    #[test]
    fn queue_quirks_need_the_same_head() {
        let q = |head, error| Outcome::Queue { step: 1, head, error };
        let qemu = [q(0, Some(QueueErrorInfo::NotAvailable))];
        let mut emu = [q(1, Some(QueueErrorInfo::InvalidType))];
        assert!(!Quirk::NoIqercd.mask(&qemu, &mut emu));
        let mut emu = [q(0, Some(QueueErrorInfo::InvalidType))];
        assert!(Quirk::NoIqercd.mask(&qemu, &mut emu));
        assert_eq!(emu, qemu);
        let mut emu = [q(1, None)];
        assert!(Quirk::WaitNeedsSwOrIf.mask(&qemu, &mut emu));
    }
}
