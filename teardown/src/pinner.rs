//! The hypervisor's hook: pinning guest pages while the IOMMU can reach
//! them (the vIOMMU paper's memory-overcommit use, Amit et al. 2011, §2).
//!
//! A hypervisor that shadows a guest's IOMMU mappings maps guest-physical
//! pages for DMA. The page must stay resident, at the same host frame, from
//! the moment any IOMMU translation can reach it until the invalidation
//! removing the last such translation has completed. The mapping layer
//! calls [`PagePinner::pin`] before it writes a translation and
//! [`PagePinner::unpin`] only after that invalidation completed.

use vtd_regs::PhysAddr;

/// Why a page could not be pinned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PinError {
    /// The page asked for.
    pub page: PhysAddr,
}

/// Pins guest pages and tells their host frames. Pins nest: a page pinned
/// twice stays pinned until it is unpinned twice.
pub trait PagePinner {
    /// Whether pins mean anything: `false` for [`NoPinning`], which lets the
    /// mapper skip the per-page unpin loop and the pin counters.
    const PINNING: bool = true;

    /// Pins the 4 KiB page at `page` (page-aligned, guest-physical) and
    /// returns the host frame that backs it while it is pinned.
    fn pin(&mut self, page: PhysAddr) -> Result<PhysAddr, PinError>;

    /// Drops one pin of `page`.
    fn unpin(&mut self, page: PhysAddr);
}

impl<P: PagePinner + ?Sized> PagePinner for &mut P {
    const PINNING: bool = P::PINNING;
    fn pin(&mut self, page: PhysAddr) -> Result<PhysAddr, PinError> {
        (**self).pin(page)
    }
    fn unpin(&mut self, page: PhysAddr) {
        (**self).unpin(page)
    }
}

/// No pinning: a native driver maps host-physical pages, which are their
/// own frames.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPinning;

impl PagePinner for NoPinning {
    const PINNING: bool = false;
    #[inline]
    fn pin(&mut self, page: PhysAddr) -> Result<PhysAddr, PinError> {
        Ok(page)
    }
    #[inline]
    fn unpin(&mut self, _page: PhysAddr) {}
}
