//! What a vIOMMU is given: the devices assigned to the guest and the limits
//! it puts on what one guest can make the host do.

use vtd_emu::EmuConfig;
use vtd_regs::SourceId;

/// A device the hypervisor assigned to the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Assignment {
    /// Its source id in the guest (what the guest's context tables index).
    pub guest: SourceId,
    /// Its source id on the host (what the host IOMMU sees).
    pub host: SourceId,
}

/// The guest-visible unit and the limits a vIOMMU puts on one guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ViommuConfig {
    /// The guest-visible unit. Caching mode (CAP.CM) is forced on, so the
    /// guest invalidates after every map (§6.1); ECAP.PT is cleared unless
    /// [`pass_through`](Self::pass_through) is set. The unit keeps no
    /// IOTLB or context cache of its own (the host shadow is the
    /// translation the guest's device uses), so the cache sizes are
    /// ignored.
    pub unit: EmuConfig,
    /// Most guest pages mapped in the host at once by translated domains
    /// (each is pinned while mapped).
    pub max_pages: usize,
    /// Most guest domains shadowed at once (at most
    /// [`MAX_DOMAINS`](crate::MAX_DOMAINS) without `alloc`).
    pub max_domains: usize,
    /// Most table entries one invalidation may make the vIOMMU read; a
    /// scan that runs out leaves the rest of its range unmapped.
    pub scan_budget: u32,
    /// Whether a device whose guest context is pass-through (TT = 10b), or
    /// whose unit has translation disabled, reaches all guest RAM at its
    /// guest-physical addresses, as on hardware: the vIOMMU then maps (and
    /// pins) every page of the guest's RAM, outside the page quota. Off, the
    /// guest is offered no pass-through (ECAP.PT clear) and such a device
    /// is blocked.
    pub pass_through: bool,
}

impl ViommuConfig {
    /// QEMU's `intel-iommu` as the guest's unit, 64 Ki pages, 16 domains,
    /// 2^20 entries per scan, no pass-through.
    pub const fn qemu() -> Self {
        Self {
            unit: EmuConfig::qemu(),
            max_pages: 1 << 16,
            max_domains: 16,
            scan_budget: 1 << 20,
            pass_through: false,
        }
    }

    /// The guest-visible unit's configuration as the vIOMMU runs it.
    pub(crate) fn effective(mut self) -> Self {
        self.unit = self.unit.with_caching_mode(true).with_iotlb(0, 1).with_context_cache(0, 1);
        self.unit.ecap =
            self.unit.ecap.with_pass_through(self.pass_through && self.unit.ecap.pass_through());
        #[cfg(not(feature = "alloc"))]
        {
            self.max_domains = self.max_domains.min(crate::MAX_DOMAINS);
        }
        self
    }
}
