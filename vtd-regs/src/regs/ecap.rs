//! ECAP_REG: extended capabilities (§10.4.3).

use core::fmt;

use super::bits::{bit_fields, field, with_field};
use crate::mmio::register;

/// Extended capability register (read-only, 64-bit, offset 0x10), §10.4.3.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct Ecap(pub u64);
register!(Ecap, super::offset::ECAP, u64, ReadOnly);

/// ECAP.IRO (bits 17:8): where the IOTLB registers start, in 16-byte units.
/// The invalidate address register (IVA_REG) is first, the IOTLB invalidate
/// register (IOTLB_REG) 8 bytes after it (§10.4.8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct IotlbRegisterOffset(pub u16);

impl IotlbRegisterOffset {
    /// Byte offset of IVA_REG.
    pub const fn iva(self) -> usize {
        self.0 as usize * 16
    }
    /// Byte offset of IOTLB_REG.
    pub const fn iotlb(self) -> usize {
        self.iva() + 8
    }
}

impl Ecap {
    /// ECAP.IRO, bits 17:8.
    pub const fn iro(self) -> IotlbRegisterOffset {
        IotlbRegisterOffset(field(self.0, 8, 17) as u16)
    }
    /// This value with ECAP.IRO replaced.
    #[must_use]
    pub const fn with_iro(self, iro: IotlbRegisterOffset) -> Self {
        Self(with_field(self.0, 8, 17, iro.0 as u64))
    }
    /// ECAP.MHMV, bits 23:20: the largest handle mask of an interrupt entry
    /// cache invalidation.
    pub const fn mhmv(self) -> u8 {
        field(self.0, 20, 23) as u8
    }
    /// This value with ECAP.MHMV replaced.
    #[must_use]
    pub const fn with_mhmv(self, mhmv: u8) -> Self {
        Self(with_field(self.0, 20, 23, mhmv as u64))
    }
    /// ECAP.PSS, bits 39:35: PASID width supported, minus one.
    pub const fn pss(self) -> u8 {
        field(self.0, 35, 39) as u8
    }
    /// This value with ECAP.PSS replaced (5 bits: PASIDs of `pss + 1` bits).
    #[must_use]
    pub const fn with_pss(self, pss: u8) -> Self {
        Self(with_field(self.0, 35, 39, pss as u64))
    }
}

bit_fields!(Ecap: u64 {
    /// ECAP.C (bit 0): page walks snoop the CPU caches. When clear, software
    /// must flush cache lines of table updates (§6.2.1).
    0 => coherent / with_coherent;
    /// ECAP.QI (bit 1): queued invalidation supported.
    1 => qi / with_qi;
    /// ECAP.DT (bit 2): device-TLBs (ATS) supported.
    2 => device_tlb / with_device_tlb;
    /// ECAP.IR (bit 3): interrupt remapping supported.
    3 => ir / with_ir;
    /// ECAP.EIM (bit 4): extended (x2APIC) interrupt mode supported.
    4 => eim / with_eim;
    /// ECAP.PT (bit 6): pass-through translation type supported.
    6 => pass_through / with_pass_through;
    /// ECAP.SC (bit 7): snoop control supported (SNP bit honoured in PTEs).
    7 => snoop_control / with_snoop_control;
    /// ECAP.MTS (bit 25): memory type support.
    25 => mts / with_mts;
    /// ECAP.NEST (bit 26): nested translation supported.
    26 => nest / with_nest;
    /// ECAP.PRS (bit 29): page requests supported.
    29 => prs / with_prs;
    /// ECAP.ERS (bit 30): execute requests supported.
    30 => ers / with_ers;
    /// ECAP.SRS (bit 31): supervisor requests supported.
    31 => srs / with_srs;
    /// ECAP.NWFS (bit 33): no-write flag supported.
    33 => nwfs / with_nwfs;
    /// ECAP.EAFS (bit 34): extended accessed flag supported.
    34 => eafs / with_eafs;
    /// ECAP.PASID (bit 40): process address space ids supported.
    40 => pasid / with_pasid;
    /// ECAP.DIT (bit 41): device-TLB invalidation throttling.
    41 => dit / with_dit;
    /// ECAP.PDS (bit 42): page-request drain supported.
    42 => pds / with_pds;
    /// ECAP.SMTS (bit 43): scalable-mode translation supported.
    43 => smts / with_smts;
    /// ECAP.VCS (bit 44): virtual command support.
    44 => vcs / with_vcs;
    /// ECAP.SLADS (bit 45): second-level accessed/dirty supported.
    45 => slads / with_slads;
    /// ECAP.SLTS (bit 46): second-level translation supported in scalable mode.
    46 => slts / with_slts;
    /// ECAP.FLTS (bit 47): first-level translation supported.
    47 => flts / with_flts;
    /// ECAP.SMPWCS (bit 48): scalable-mode page walks are coherent.
    48 => smpwcs / with_smpwcs;
    /// ECAP.RPS (bit 49): RID_PASID supported.
    49 => rps / with_rps;
});

impl fmt::Debug for Ecap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ecap")
            .field("raw", &format_args!("{:#x}", self.0))
            .field("coherent", &self.coherent())
            .field("qi", &self.qi())
            .field("device_tlb", &self.device_tlb())
            .field("ir", &self.ir())
            .field("pass_through", &self.pass_through())
            .field("snoop_control", &self.snoop_control())
            .field("iro", &format_args!("{:#x}", self.iro().iva()))
            .field("smts", &self.smts())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_default_ecap() {
        // ECAP read from QEMU 7.2 `intel-iommu` (q35, default options).
        let e = Ecap(0xf0_0f4a);
        assert!(e.qi() && e.ir() && e.pass_through());
        assert!(!e.device_tlb() && !e.snoop_control() && !e.coherent() && !e.eim());
        assert_eq!(e.iro().iva(), 0xF0);
        assert_eq!(e.iro().iotlb(), 0xF8);
        assert_eq!(e.mhmv(), 0xf);
        assert!(!e.smts());
        // With intremap=off QEMU reports 0xf42 (no IR), and with
        // x-scalable-mode=on 0x480080f00f4a (SMTS, SLTS and SRS added).
        assert!(!Ecap(0xf42).ir());
        let sm = Ecap(0x4800_80f0_0f4a);
        assert!(sm.smts() && sm.slts() && sm.srs());
        assert!(!sm.pasid() && !sm.flts());
    }

    #[test]
    fn encode_rebuilds_qemu_ecap() {
        let e = Ecap(0)
            .with_qi(true)
            .with_ir(true)
            .with_pass_through(true)
            .with_iro(IotlbRegisterOffset(0xf))
            .with_mhmv(0xf);
        assert_eq!(e.0, 0xf0_0f4a);
    }
}
