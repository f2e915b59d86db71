//! What the emulated remapping unit reports and how big its caches are: the
//! VER/CAP/ECAP values guests read (VT-d §10.4.1-§10.4.3), the capacities of
//! the context cache and IOTLB (§6.1, §6.2.2), and the bounds the model puts on
//! work triggered by one guest action.

use core::fmt;

use vtd_regs::regs::cap::{FaultRecordCount, MaxAddressMask};
use vtd_regs::regs::offset::REGISTER_PAGE_SIZE;
use vtd_regs::regs::{
    AddressWidth, Cap, DomainBits, Ecap, FaultRecordingOffset, IotlbRegisterOffset, Sagaw,
    SecondLevelPageSizes, Ver,
};

use vtd_regs::DomainId;

use crate::fault_log::MAX_FAULT_RECORDS;

/// End of the fixed-offset registers (the last is IRTA at 0xB8, 64 bits): the
/// IOTLB and fault recording registers a capability places must lie above it.
const FIXED_REGISTERS_END: usize = 0xC0;

/// The configuration of an emulated remapping unit.
///
/// The capability registers are built with the `with_*` builders of
/// [`Cap`] and [`Ecap`]; [`EmuConfig::validate`] checks that the model can
/// honour what they promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmuConfig {
    /// VER_REG (§10.4.1).
    pub ver: Ver,
    /// CAP_REG (§10.4.2): address widths, ND, NFR/FRO, PSI/MAMV, superpages,
    /// caching mode.
    pub cap: Cap,
    /// ECAP_REG (§10.4.3): queued invalidation, IRO, pass-through.
    pub ecap: Ecap,
    /// Entries of the IOTLB (0 disables it). Clamped to the capacity the
    /// emulator type was built with.
    pub iotlb_entries: usize,
    /// Ways per set of the IOTLB (1 = direct mapped; `iotlb_entries` = fully
    /// associative).
    pub iotlb_ways: usize,
    /// Entries of the context cache (0 disables it). Clamped like the IOTLB.
    pub context_cache_entries: usize,
    /// Ways per set of the context cache.
    pub context_cache_ways: usize,
    /// Width of the physical addresses the unit may reach (host address
    /// width, reported in the DMAR table): table and page addresses above it
    /// fault.
    pub host_address_width: AddressWidth,
    /// Process the invalidation queue when software writes IQT (a
    /// trap-and-emulate front end). When `false`, descriptors are processed
    /// only by [`Emulator::process`](crate::Emulator::process) (a polling,
    /// sidecore front end).
    pub process_on_tail_write: bool,
}

/// A configuration the model cannot implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// CAP.SAGAW reports no table depth.
    NoAddressWidth,
    /// CAP.MGAW is narrower than the narrowest SAGAW width or above 64 bits.
    BadMgaw,
    /// CAP.ND holds the reserved value 7.
    ReservedNd,
    /// CAP.NFR asks for more fault recording registers than the model has.
    TooManyFaultRecords,
    /// The fault recording registers (CAP.FRO, CAP.NFR) or the IOTLB
    /// registers (ECAP.IRO) overlap the fixed registers, each other, or the end
    /// of the register page.
    RegisterLayout,
    /// The host address width is 0 or above 64.
    BadHostAddressWidth,
    /// The scalable-mode capabilities do not fit together (§10.4.3):
    /// ECAP.FLTS, SLTS, NEST, PASID or CAP.FL1GP, FL5LP without ECAP.SMTS;
    /// SMTS without QI, or without any translation type (FLTS, SLTS, PT);
    /// NEST without both FLTS and SLTS.
    ScalableCapabilities,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::NoAddressWidth => "CAP.SAGAW reports no supported address width",
            ConfigError::BadMgaw => "CAP.MGAW does not fit the supported address widths",
            ConfigError::ReservedNd => "CAP.ND holds the reserved value 7",
            ConfigError::TooManyFaultRecords => "CAP.NFR exceeds the model's fault records",
            ConfigError::RegisterLayout => "CAP.FRO/NFR or ECAP.IRO overlap other registers",
            ConfigError::BadHostAddressWidth => "host address width must be 1..=64 bits",
            ConfigError::ScalableCapabilities => {
                "ECAP.SMTS/FLTS/SLTS/NEST/PASID and CAP.FL1GP/FL5LP do not fit together"
            }
        })
    }
}

impl core::error::Error for ConfigError {}

impl EmuConfig {
    /// QEMU's `intel-iommu` with default options (q35, QEMU 7.2): VER 0x10,
    /// CAP 0xd2008c22260206 (39-bit, 3-level, 16-bit domain ids, one fault
    /// record at 0x220, PSI with MAMV 18, 2 MiB and 1 GiB pages, read/write
    /// draining), ECAP 0xf00f4a (QI, IR, PT, IOTLB registers at 0xF0).
    /// Host address width 39, as QEMU's DMAR table reports.
    pub const fn qemu() -> Self {
        Self {
            ver: Ver(0x10),
            cap: Cap(0x00d2_008c_2226_0206),
            ecap: Ecap(0x00f0_0f4a),
            iotlb_entries: 1024,
            iotlb_ways: 4,
            context_cache_entries: 64,
            context_cache_ways: 4,
            host_address_width: AddressWidth(39),
            process_on_tail_write: true,
        }
    }

    /// A unit like recent server hardware, within what the model supports:
    /// 39- and 48-bit tables (MGAW 48), 16-bit domain ids, 8 fault records,
    /// PSI with MAMV 9, 2 MiB and 1 GiB pages, queued invalidation and
    /// pass-through, coherent walks; host address width 46.
    pub const fn modern() -> Self {
        let cap = Cap(0)
            .with_nd(DomainBits::from_field(6))
            .with_sagaw(Sagaw::BITS39_L3.union(Sagaw::BITS48_L4))
            .with_mgaw(AddressWidth(48))
            .with_fro(FaultRecordingOffset(0x22))
            .with_sllps(SecondLevelPageSizes::all())
            .with_nfr(FaultRecordCount(7))
            .with_psi(true)
            .with_mamv(MaxAddressMask(9))
            .with_drd(true)
            .with_dwd(true);
        let ecap = Ecap(0)
            .with_coherent(true)
            .with_qi(true)
            .with_pass_through(true)
            .with_iro(IotlbRegisterOffset(0xf));
        Self {
            ver: Ver(0x10),
            cap,
            ecap,
            iotlb_entries: 1024,
            iotlb_ways: 4,
            context_cache_entries: 64,
            context_cache_ways: 4,
            host_address_width: AddressWidth(46),
            process_on_tail_write: true,
        }
    }

    /// QEMU 7.2's `intel-iommu` with `x-scalable-mode=on`: [`qemu`]'s
    /// registers with ECAP 0x4800_80f0_0f4a (SMTS, SLTS and SRS added):
    /// scalable mode with second-stage and pass-through PASID entries.
    ///
    /// [`qemu`]: Self::qemu
    pub const fn qemu_scalable() -> Self {
        let mut c = Self::qemu();
        c.ecap = Ecap(0x4800_80f0_0f4a);
        c
    }

    /// [`modern`](Self::modern) in scalable mode with every translation
    /// type: ECAP.SMTS, FLTS, SLTS, NEST, PASID (20 bits), SRS, and CAP.FL1GP
    /// (first-stage 1 GiB pages; 4-level first stage, no FL5LP).
    pub const fn scalable() -> Self {
        let mut c = Self::modern();
        c.cap = c.cap.with_fl1gp(true);
        c.ecap = c
            .ecap
            .with_smts(true)
            .with_flts(true)
            .with_slts(true)
            .with_nest(true)
            .with_pasid(true)
            .with_pss(19)
            .with_srs(true);
        c
    }

    /// This configuration with CAP.CM (caching mode, §6.1) set or cleared:
    /// what a vIOMMU reports so that the guest invalidates on every map.
    #[must_use]
    pub const fn with_caching_mode(mut self, on: bool) -> Self {
        self.cap = self.cap.with_caching_mode(on);
        self
    }

    /// This configuration with interrupt remapping (ECAP.IR, §10.4.3), an
    /// interrupt entry cache invalidation handle mask of up to 15
    /// (ECAP.MHMV), and x2APIC mode (ECAP.EIM) if `x2apic`; or without any
    /// of it. (Interrupt remapping needs queued invalidation, ECAP.QI.)
    #[must_use]
    pub const fn with_interrupt_remapping(mut self, on: bool, x2apic: bool) -> Self {
        self.ecap = self.ecap.with_ir(on).with_eim(on && x2apic).with_mhmv(if on { 15 } else { 0 });
        self
    }

    /// This configuration with an IOTLB of `entries` entries in sets of `ways`.
    #[must_use]
    pub const fn with_iotlb(mut self, entries: usize, ways: usize) -> Self {
        self.iotlb_entries = entries;
        self.iotlb_ways = ways;
        self
    }

    /// This configuration with a context cache of `entries` entries in sets of
    /// `ways`.
    #[must_use]
    pub const fn with_context_cache(mut self, entries: usize, ways: usize) -> Self {
        self.context_cache_entries = entries;
        self.context_cache_ways = ways;
        self
    }

    /// The domain id `d` as the unit sees it: only the low 4 + 2 x CAP.ND
    /// bits are implemented, the rest are ignored (§10.4.2, §10.4.7,
    /// §10.4.8.1).
    pub const fn domain(&self, d: DomainId) -> DomainId {
        match self.cap.nd().id_bits() {
            Some(bits) if bits < 16 => DomainId::new(d.raw() & ((1 << bits) - 1)),
            _ => d,
        }
    }

    /// Checks that the capabilities are self-consistent and that the model can
    /// implement them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sagaw = self.cap.sagaw();
        let narrowest = sagaw.choose(0).ok_or(ConfigError::NoAddressWidth)?;
        let mgaw = self.cap.mgaw().bits();
        if mgaw < narrowest.bits() || mgaw > 64 {
            return Err(ConfigError::BadMgaw);
        }
        if self.cap.nd().id_bits().is_none() {
            return Err(ConfigError::ReservedNd);
        }
        let records = usize::from(self.cap.nfr().count());
        if records > MAX_FAULT_RECORDS {
            return Err(ConfigError::TooManyFaultRecords);
        }
        let hw = self.host_address_width.bits();
        if hw == 0 || hw > 64 {
            return Err(ConfigError::BadHostAddressWidth);
        }
        if !self.scalable_capabilities_fit() {
            return Err(ConfigError::ScalableCapabilities);
        }
        let fro = self.cap.fro().byte_offset();
        let fro_end = fro + records * 16;
        let iva = self.ecap.iro().iva();
        let iva_end = iva + 16;
        let in_page =
            |start: usize, end: usize| start >= FIXED_REGISTERS_END && end <= REGISTER_PAGE_SIZE;
        if !in_page(fro, fro_end) || !in_page(iva, iva_end) || (fro < iva_end && iva < fro_end) {
            return Err(ConfigError::RegisterLayout);
        }
        Ok(())
    }
}

impl EmuConfig {
    /// The rules of [`ConfigError::ScalableCapabilities`].
    const fn scalable_capabilities_fit(&self) -> bool {
        let (cap, ecap) = (self.cap, self.ecap);
        if !ecap.smts() {
            let scalable_only = ecap.flts() || ecap.slts() || ecap.nest() || ecap.pasid();
            return !(scalable_only || cap.fl1gp() || cap.fl5lp());
        }
        let any = ecap.flts() || ecap.slts() || ecap.pass_through();
        let nest = !ecap.nest() || (ecap.flts() && ecap.slts());
        let first = ecap.flts() || !(cap.fl1gp() || cap.fl5lp());
        ecap.qi() && any && nest && first
    }

    /// The address bits below the host address width: bits above it in
    /// RTADDR, IQA and IRTA are reserved and ignored (§10.4.6, §10.4.23).
    pub(crate) const fn host_width_mask(&self) -> u64 {
        let haw = self.host_address_width.bits() as u32;
        match 1u64.checked_shl(haw) {
            Some(b) => b - 1,
            None => u64::MAX,
        }
    }
}

impl Default for EmuConfig {
    /// [`EmuConfig::modern`].
    fn default() -> Self {
        Self::modern()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_preset_is_qemus_registers() {
        let c = EmuConfig::qemu();
        assert_eq!(c.ver.0, 0x10);
        assert_eq!(c.cap.0, 0xd2008c22260206);
        assert_eq!(c.ecap.0, 0xf00f4a);
        assert_eq!(c.validate(), Ok(()));
        assert!(c.with_caching_mode(true).cap.caching_mode());
        assert_eq!(c.with_caching_mode(true).cap.0, 0xd2008c22260286);
    }

    #[test]
    fn modern_preset_is_valid() {
        let c = EmuConfig::modern();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.cap.nfr().count(), 8);
        assert_eq!(c.cap.mgaw().bits(), 48);
        assert!(c.ecap.qi() && c.cap.psi());
    }

    #[test]
    fn scalable_presets_and_capability_combinations() {
        let q = EmuConfig::qemu_scalable();
        assert_eq!(q.validate(), Ok(()));
        assert!(q.ecap.smts() && q.ecap.slts() && !q.ecap.flts() && !q.ecap.nest());
        let s = EmuConfig::scalable();
        assert_eq!(s.validate(), Ok(()));
        assert!(s.ecap.flts() && s.ecap.nest() && s.ecap.pasid() && s.ecap.pss() == 19);
        let bad = |ecap: Ecap, cap: Cap| {
            EmuConfig { ecap, cap, ..EmuConfig::modern() }.validate()
                == Err(ConfigError::ScalableCapabilities)
        };
        let m = EmuConfig::modern();
        assert!(bad(m.ecap.with_flts(true), m.cap), "FLTS without SMTS");
        assert!(bad(m.ecap, m.cap.with_fl1gp(true)), "FL1GP without SMTS");
        assert!(bad(s.ecap.with_qi(false), s.cap), "SMTS without QI");
        assert!(bad(s.ecap.with_slts(false), s.cap), "NEST without SLTS");
        assert!(bad(s.ecap.with_flts(false).with_nest(false), s.cap), "FL1GP without FLTS");
        let none =
            s.ecap.with_flts(false).with_slts(false).with_nest(false).with_pass_through(false);
        assert!(bad(none, m.cap), "SMTS without a translation type");
        // Every other combination of FLTS, SLTS, NEST (and PT) is valid.
        for bits in 0..16u8 {
            let e = s
                .ecap
                .with_flts(bits & 1 != 0)
                .with_slts(bits & 2 != 0)
                .with_nest(bits & 4 != 0)
                .with_pass_through(bits & 8 != 0);
            let ok =
                (e.flts() || e.slts() || e.pass_through()) && (!e.nest() || (e.flts() && e.slts()));
            let c = EmuConfig { ecap: e, cap: m.cap, ..s };
            assert_eq!(c.validate().is_ok(), ok, "{e:?}");
        }
    }

    #[test]
    fn invalid_layouts_are_rejected() {
        let mut c = EmuConfig::qemu();
        c.cap = c.cap.with_fro(FaultRecordingOffset(0xf));
        assert_eq!(c.validate(), Err(ConfigError::RegisterLayout));
        let mut c = EmuConfig::qemu();
        c.cap = c.cap.with_fro(FaultRecordingOffset(0x4));
        assert_eq!(c.validate(), Err(ConfigError::RegisterLayout));
        let mut c = EmuConfig::qemu();
        c.cap = c.cap.with_fro(FaultRecordingOffset(0x100));
        assert_eq!(c.validate(), Err(ConfigError::RegisterLayout));
        let mut c = EmuConfig::qemu();
        c.cap = c.cap.with_nfr(FaultRecordCount(255));
        assert_eq!(c.validate(), Err(ConfigError::TooManyFaultRecords));
        let mut c = EmuConfig::qemu();
        c.cap = c.cap.with_sagaw(Sagaw::empty());
        assert_eq!(c.validate(), Err(ConfigError::NoAddressWidth));
        let mut c = EmuConfig::qemu();
        c.cap = c.cap.with_mgaw(AddressWidth(30));
        assert_eq!(c.validate(), Err(ConfigError::BadMgaw));
        let mut c = EmuConfig::qemu();
        c.cap = c.cap.with_nd(DomainBits::from_field(7));
        assert_eq!(c.validate(), Err(ConfigError::ReservedNd));
        let mut c = EmuConfig::qemu();
        c.host_address_width = AddressWidth(0);
        assert_eq!(c.validate(), Err(ConfigError::BadHostAddressWidth));
    }
}
