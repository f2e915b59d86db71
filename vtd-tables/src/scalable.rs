//! Scalable-mode structures (VT-d §9.4, §9.5, §9.6): the context entry that
//! points at a PASID directory, the directory's entries, and the PASID
//! table entries that select a domain and its translation per PASID. The
//! manager that builds them is [`crate::pasid`], the walker that reads them
//! [`crate::walk::scalable`].

use static_assertions::const_assert_eq;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::{DomainId, MemError, PhysAddr, PhysMem};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::raw::haw_frame_mask;

/// Reads `N` little-endian words at `addr`.
pub(crate) fn read_words<M: PhysMem + ?Sized, const N: usize>(
    mem: &M,
    addr: PhysAddr,
) -> Result<[u64; N], MemError> {
    let mut qw = [0; N];
    for (i, q) in qw.iter_mut().enumerate() {
        let at = addr.checked_add(8 * i as u64).ok_or(MemError::OutOfRange { addr, len: 8 })?;
        *q = mem.read_u64(at)?;
    }
    Ok(qw)
}

/// Writes `qw` at `addr`: every word but the first, then the first (which
/// holds P), so the unit never sees a present entry with stale upper words;
/// then flushes it for a non-coherent unit (§6.2.1).
pub(crate) fn write_words<M: PhysMem + ?Sized>(
    mem: &M,
    addr: PhysAddr,
    qw: &[u64],
) -> Result<(), MemError> {
    for (i, q) in qw.iter().enumerate().skip(1).chain(qw.iter().enumerate().take(1)) {
        let at = addr.checked_add(8 * i as u64).ok_or(MemError::OutOfRange { addr, len: 8 })?;
        mem.write_u64(at, *q)?;
    }
    mem.flush_for_device(addr, qw.len() * 8);
    Ok(())
}

/// P, bit 0 of every scalable-mode entry.
const PRESENT: u64 = 1 << 0;
/// FPD, bit 1.
const FPD: u64 = 1 << 1;
/// A 4 KiB-aligned pointer in bits 63:12.
const PTR_MASK: u64 = !0xfff;

/// A scalable-mode context entry (§9.4), 256 bits; a context table holds
/// 128 of them, found through [`ScalableRootEntry`](crate::root::ScalableRootEntry).
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ScalableContextEntry {
    /// Bits 255:0 as four 64-bit words, lowest first.
    pub qw: [u64; 4],
}
const_assert_eq!(core::mem::size_of::<ScalableContextEntry>(), 32);
const_assert_eq!(core::mem::align_of::<ScalableContextEntry>(), 8);

/// DTE, bit 2: device-TLB (ATS) requests allowed.
const DTE: u64 = 1 << 2;
/// PASIDE, bit 3: requests with a PASID allowed.
const PASIDE: u64 = 1 << 3;
/// PDTS, bits 11:9: the PASID directory has 2^(PDTS + 7) entries.
const PDTS_SHIFT: u32 = 9;
/// RID_PASID, bits 83:64: the PASID used for requests without one.
const RID_PASID_MASK: u64 = (1 << 20) - 1;

impl ScalableContextEntry {
    /// A present entry whose PASID directory at `pasid_dir` has
    /// 2^(`pdts` + 7) entries (`pdts` ≤ 7); requests without a PASID use
    /// `rid_pasid` (20 bits).
    pub const fn new(pasid_dir: PhysAddr, pdts: u8, rid_pasid: u32) -> Self {
        Self {
            qw: [
                (pasid_dir.as_u64() & PTR_MASK) | (((pdts & 7) as u64) << PDTS_SHIFT) | PRESENT,
                rid_pasid as u64 & RID_PASID_MASK,
                0,
                0,
            ],
        }
    }

    /// This entry with DTE (device-TLB) and PASIDE (PASID-tagged requests)
    /// set as given.
    #[must_use]
    pub const fn with_features(self, device_tlb: bool, pasid: bool) -> Self {
        let mut qw = self.qw;
        qw[0] = (qw[0] & !(DTE | PASIDE))
            | if device_tlb { DTE } else { 0 }
            | if pasid { PASIDE } else { 0 };
        Self { qw }
    }

    /// P.
    pub const fn present(&self) -> bool {
        self.qw[0] & PRESENT != 0
    }

    /// The PASID directory.
    pub const fn pasid_dir(&self) -> PhysAddr {
        PhysAddr::new(self.qw[0] & PTR_MASK)
    }

    /// The number of PASID directory entries.
    pub const fn pasid_dir_entries(&self) -> u32 {
        1 << (((self.qw[0] >> PDTS_SHIFT) & 7) + 7)
    }

    /// RID_PASID.
    pub const fn rid_pasid(&self) -> u32 {
        (self.qw[1] & RID_PASID_MASK) as u32
    }

    /// FPD.
    pub const fn fpd(&self) -> bool {
        self.qw[0] & FPD != 0
    }

    /// DTE.
    pub const fn device_tlb(&self) -> bool {
        self.qw[0] & DTE != 0
    }

    /// PASIDE.
    pub const fn pasid_enabled(&self) -> bool {
        self.qw[0] & PASIDE != 0
    }

    /// Whether a reserved bit is set, for a unit whose host address width is
    /// `haw` bits (fault 42h when present): bits 8:5, the directory pointer
    /// at or above HAW, bits 127:84 (QEMU's `VTD_SM_CONTEXT_ENTRY_RSVD_VAL1`
    /// reserves 127:85 and keeps RID_PRIV, bit 84, which this model does
    /// not implement), and bits 255:128.
    pub const fn has_reserved_bits(&self, haw: u8) -> bool {
        self.qw[0] & (0x1e0 | (PTR_MASK & !haw_frame_mask(haw))) != 0
            || self.qw[1] & !RID_PASID_MASK != 0
            || self.qw[2] != 0
            || self.qw[3] != 0
    }

    /// Where the entry of `devfn` lives in the context table at `table`
    /// (128 entries of 32 bytes, indexed by devfn's low 7 bits).
    pub const fn address(table: PhysAddr, devfn: u8) -> PhysAddr {
        PhysAddr::new((table.as_u64() & !0xfff) | ((devfn as u64 & 0x7f) * 32))
    }

    /// Reads the entry at `addr`.
    pub fn read<M: PhysMem + ?Sized>(mem: &M, addr: PhysAddr) -> Result<Self, MemError> {
        read_words(mem, addr).map(|qw| Self { qw })
    }

    /// Writes the entry at `addr` (P last).
    pub fn write<M: PhysMem + ?Sized>(&self, mem: &M, addr: PhysAddr) -> Result<(), MemError> {
        write_words(mem, addr, &self.qw)
    }
}

/// A PASID directory entry (§9.5): 64 bits, each covering 64 PASIDs
/// (index = PASID >> 6) through one PASID table.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct PasidDirEntry(pub u64);
const_assert_eq!(core::mem::size_of::<PasidDirEntry>(), 8);

impl PasidDirEntry {
    /// A present entry pointing at the PASID table `table`.
    pub const fn new(table: PhysAddr) -> Self {
        Self((table.as_u64() & PTR_MASK) | PRESENT)
    }

    /// P.
    pub const fn present(self) -> bool {
        self.0 & PRESENT != 0
    }

    /// FPD.
    pub const fn fpd(self) -> bool {
        self.0 & FPD != 0
    }

    /// The PASID table.
    pub const fn table(self) -> PhysAddr {
        PhysAddr::new(self.0 & PTR_MASK)
    }

    /// Whether a reserved bit is set (bits 11:2, or the table pointer at or
    /// above HAW; fault 52h when present).
    pub const fn has_reserved_bits(self, haw: u8) -> bool {
        self.0 & (0xffc | (PTR_MASK & !haw_frame_mask(haw))) != 0
    }

    /// Where the entry for `pasid` lives in the directory at `dir`.
    pub const fn address(dir: PhysAddr, pasid: u32) -> PhysAddr {
        PhysAddr::new((dir.as_u64() & PTR_MASK).wrapping_add(((pasid as u64) >> 6) * 8))
    }
}

/// The PASID-granular translation type of a PASID table entry (PGTT, §9.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PasidTranslationType {
    /// 001b: first-stage only.
    FirstStage,
    /// 010b: second-stage only (the legacy-mode tables of this crate).
    SecondStage,
    /// 011b: nested.
    Nested,
    /// 100b: pass-through.
    PassThrough,
}

impl PasidTranslationType {
    /// The PGTT encoding.
    pub const fn field(self) -> u8 {
        match self {
            PasidTranslationType::FirstStage => 0b001,
            PasidTranslationType::SecondStage => 0b010,
            PasidTranslationType::Nested => 0b011,
            PasidTranslationType::PassThrough => 0b100,
        }
    }

    /// Decodes PGTT; other values are reserved.
    pub const fn from_field(f: u8) -> Option<Self> {
        match f {
            0b001 => Some(PasidTranslationType::FirstStage),
            0b010 => Some(PasidTranslationType::SecondStage),
            0b011 => Some(PasidTranslationType::Nested),
            0b100 => Some(PasidTranslationType::PassThrough),
            _ => None,
        }
    }
}

/// A PASID table entry (§9.6), 512 bits; a table holds 64.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PasidEntry {
    /// Bits 511:0 as eight 64-bit words, lowest first.
    pub qw: [u64; 8],
}
const_assert_eq!(core::mem::size_of::<PasidEntry>(), 64);
const_assert_eq!(core::mem::align_of::<PasidEntry>(), 8);

/// AW, bits 4:2.
const AW_SHIFT: u32 = 2;
/// PGTT, bits 8:6.
const PGTT_SHIFT: u32 = 6;
/// SRE, bit 128 (bit 0 of quadword 2): supervisor requests allowed.
const SRE: u64 = 1 << 0;
/// FLPM, bits 131:130 (3:2 of quadword 2): first-stage paging mode,
/// 00b 4-level, 01b 5-level.
const FLPM_SHIFT: u32 = 2;

impl PasidEntry {
    /// A present second-stage-only entry (PGTT = 010b): domain `did`,
    /// second-stage table at `sl_table`, `agaw` deep.
    pub const fn second_stage(did: DomainId, sl_table: PhysAddr, agaw: Agaw) -> Self {
        let mut qw = [0; 8];
        qw[0] = (sl_table.as_u64() & PTR_MASK)
            | ((PasidTranslationType::SecondStage.field() as u64) << PGTT_SHIFT)
            | ((agaw.aw_field() as u64) << AW_SHIFT)
            | PRESENT;
        qw[1] = did.raw() as u64;
        Self { qw }
    }

    /// A present first-stage-only entry (PGTT = 001b): domain `did`,
    /// first-stage table at `fs_table` (FSPTPTR), 5-level when
    /// `five_level` (FLPM = 01b), supervisor requests allowed when `sre`.
    pub const fn first_stage(
        did: DomainId,
        fs_table: PhysAddr,
        five_level: bool,
        sre: bool,
    ) -> Self {
        let mut qw = [0; 8];
        qw[0] = ((PasidTranslationType::FirstStage.field() as u64) << PGTT_SHIFT) | PRESENT;
        qw[1] = did.raw() as u64;
        qw[2] = Self::fs_word(fs_table, five_level, sre);
        Self { qw }
    }

    /// A present nested entry (PGTT = 011b): the first-stage table at
    /// `fs_table` (an address the second stage translates) over the
    /// second-stage table at `ss_table`, `agaw` deep, in domain `did`.
    pub const fn nested(
        did: DomainId,
        fs_table: PhysAddr,
        five_level: bool,
        ss_table: PhysAddr,
        agaw: Agaw,
    ) -> Self {
        let mut e = Self::second_stage(did, ss_table, agaw);
        e.qw[0] = (e.qw[0] & !(7 << PGTT_SHIFT))
            | ((PasidTranslationType::Nested.field() as u64) << PGTT_SHIFT);
        e.qw[2] = Self::fs_word(fs_table, five_level, false);
        e
    }

    const fn fs_word(fs_table: PhysAddr, five_level: bool, sre: bool) -> u64 {
        (fs_table.as_u64() & PTR_MASK)
            | ((five_level as u64) << FLPM_SHIFT)
            | if sre { SRE } else { 0 }
    }

    /// A present pass-through entry (PGTT = 100b) in domain `did`. AW must
    /// hold the widest AGAW the unit supports, as for a legacy pass-through
    /// context entry (§9.6; Linux's `intel_pasid_setup_pass_through` sets
    /// it, QEMU checks it).
    pub const fn pass_through(did: DomainId, agaw: Agaw) -> Self {
        let mut qw = [0; 8];
        qw[0] = ((PasidTranslationType::PassThrough.field() as u64) << PGTT_SHIFT)
            | ((agaw.aw_field() as u64) << AW_SHIFT)
            | PRESENT;
        qw[1] = did.raw() as u64;
        Self { qw }
    }

    /// P.
    pub const fn present(&self) -> bool {
        self.qw[0] & PRESENT != 0
    }

    /// PGTT, decoded.
    pub const fn translation_type(&self) -> Option<PasidTranslationType> {
        PasidTranslationType::from_field(((self.qw[0] >> PGTT_SHIFT) & 7) as u8)
    }

    /// AW, decoded.
    pub const fn agaw(&self) -> Option<Agaw> {
        Agaw::from_aw_field(((self.qw[0] >> AW_SHIFT) & 7) as u8)
    }

    /// The second-stage table pointer (SSPTPTR, bits 63:12).
    pub const fn sl_table(&self) -> PhysAddr {
        PhysAddr::new(self.qw[0] & PTR_MASK)
    }

    /// DID, bits 79:64.
    pub const fn domain_id(&self) -> DomainId {
        DomainId::new(self.qw[1] as u16)
    }

    /// FPD, bit 1.
    pub const fn fpd(&self) -> bool {
        self.qw[0] & FPD != 0
    }

    /// The first-stage table pointer (FSPTPTR, bits 191:140).
    pub const fn fs_table(&self) -> PhysAddr {
        PhysAddr::new(self.qw[2] & PTR_MASK)
    }

    /// FLPM, decoded: `Some(false)` 4-level, `Some(true)` 5-level, `None`
    /// for the reserved values 10b and 11b.
    pub const fn five_level(&self) -> Option<bool> {
        match (self.qw[2] >> FLPM_SHIFT) & 3 {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// SRE.
    pub const fn sre(&self) -> bool {
        self.qw[2] & SRE != 0
    }

    /// Whether a reserved bit is set (fault 5Ah when present): bits 11:10,
    /// and bits 511:192 (quadwords 3 to 7). Pointers at or above HAW are
    /// checked where they are used.
    pub const fn has_reserved_bits(&self) -> bool {
        self.qw[0] & 0xc00 != 0
            || self.qw[3] != 0
            || self.qw[4] != 0
            || self.qw[5] != 0
            || self.qw[6] != 0
            || self.qw[7] != 0
    }

    /// Where the entry for `pasid` lives in the PASID table at `table` (64
    /// entries of 64 bytes, indexed by the PASID's low 6 bits).
    pub const fn address(table: PhysAddr, pasid: u32) -> PhysAddr {
        PhysAddr::new((table.as_u64() & PTR_MASK) | ((pasid as u64 & 0x3f) * 64))
    }

    /// Reads the entry at `addr`.
    pub fn read<M: PhysMem + ?Sized>(mem: &M, addr: PhysAddr) -> Result<Self, MemError> {
        read_words(mem, addr).map(|qw| Self { qw })
    }

    /// Writes the entry at `addr` (P last).
    pub fn write<M: PhysMem + ?Sized>(&self, mem: &M, addr: PhysAddr) -> Result<(), MemError> {
        write_words(mem, addr, &self.qw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_known_answers() {
        // §9.4: P (0), DTE (2), PASIDE (3), PDTS (11:9), PASIDDIRPTR (63:12);
        // RID_PASID in bits 83:64. PDTS = 0 means 128 directory entries.
        let c = ScalableContextEntry::new(PhysAddr::new(0x7000), 0, 0).with_features(true, true);
        assert_eq!(c.qw, [0x700d, 0, 0, 0]);
        assert_eq!(c.pasid_dir_entries(), 128);
        let c = ScalableContextEntry::new(PhysAddr::new(0x7000), 7, 0xf_ffff);
        assert_eq!(c.qw, [0x7e01, 0xf_ffff, 0, 0]);
        assert_eq!(c.pasid_dir_entries(), 1 << 14);
        assert_eq!((c.pasid_dir(), c.rid_pasid()), (PhysAddr::new(0x7000), 0xf_ffff));
        assert!(c.present());
    }

    #[test]
    fn pasid_known_answers() {
        // §9.5: P (0), FPD (1), SMPTBLPTR (63:12).
        let d = PasidDirEntry::new(PhysAddr::new(0x8000));
        assert_eq!(d.0, 0x8001);
        assert!(d.present() && !d.fpd());
        assert_eq!(d.table(), PhysAddr::new(0x8000));
        // §9.6: second-stage only (PGTT 010b = 0x80), AW 010b (4-level) =
        // 0x8, table 0x9000; DID 0x42 in bits 79:64.
        let e = PasidEntry::second_stage(DomainId::new(0x42), PhysAddr::new(0x9000), Agaw::Bits48);
        assert_eq!((e.qw[0], e.qw[1]), (0x9089, 0x42));
        assert_eq!(e.translation_type(), Some(PasidTranslationType::SecondStage));
        assert_eq!(
            (e.agaw(), e.sl_table(), e.domain_id()),
            (Some(Agaw::Bits48), PhysAddr::new(0x9000), DomainId::new(0x42))
        );
        let p = PasidEntry::pass_through(DomainId::new(1), Agaw::Bits39);
        assert_eq!((p.qw[0], p.qw[1]), (0x105, 1));
        // First-stage only (PGTT 001b = 0x40), 5-level (FLPM 01b, bit 130 =
        // 0x4 of qw2), SRE (bit 128), FSPTPTR 0xa000; Linux pasid_set_sre
        // val[2] bit 0, pasid_set_flpm val[2] bits 3:2, pasid_set_flptr
        // val[2] bits 63:12.
        let f = PasidEntry::first_stage(DomainId::new(7), PhysAddr::new(0xa000), true, true);
        assert_eq!((f.qw[0], f.qw[1], f.qw[2]), (0x41, 7, 0xa005));
        assert_eq!(
            (f.fs_table(), f.five_level(), f.sre()),
            (PhysAddr::new(0xa000), Some(true), true)
        );
        // Nested (PGTT 011b = 0xc0) keeps the second stage's AW and SSPTPTR.
        let n = PasidEntry::nested(
            DomainId::new(2),
            PhysAddr::new(0xb000),
            false,
            PhysAddr::new(0xc000),
            Agaw::Bits39,
        );
        assert_eq!((n.qw[0], n.qw[2]), (0xc0c5, 0xb000));
        assert_eq!(n.translation_type(), Some(PasidTranslationType::Nested));
        assert_eq!(PasidEntry { qw: [1, 0, 0xc, 0, 0, 0, 0, 0] }.five_level(), None);
        assert!(PasidEntry { qw: [0x401, 0, 0, 0, 0, 0, 0, 0] }.has_reserved_bits());
        assert_eq!(PasidEntry::address(PhysAddr::new(0x5000), 0x41), PhysAddr::new(0x5040));
        assert_eq!(PasidDirEntry::address(PhysAddr::new(0x5000), 0x41), PhysAddr::new(0x5008));
        assert!(PasidDirEntry(0x8005).has_reserved_bits(39));
        assert_eq!(PasidTranslationType::from_field(0), None);
        assert_eq!(PasidTranslationType::from_field(5), None);
    }
}
