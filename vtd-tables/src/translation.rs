//! The result of translating an IOVA: what the remapping unit would put in
//! its IOTLB (VT-d §6.2.2) for the page that holds it.

use vtd_regs::{Iova, PageSize, PhysAddr};

use crate::perm::Perm;

/// A successful translation of one IOVA.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Translation {
    /// The physical address the IOVA translates to (page frame + offset).
    pub phys: PhysAddr,
    /// The effective permission (the intersection over all levels, §3.7.2).
    pub perm: Perm,
    /// The size of the page that maps it.
    pub size: PageSize,
}

impl Translation {
    /// The IOVA of the first byte of the page that maps `iova`.
    #[inline]
    pub const fn page_iova(&self, iova: Iova) -> Iova {
        iova.align_down(self.size.bytes())
    }

    /// The physical address of the first byte of the page.
    #[inline]
    pub const fn page_phys(&self) -> PhysAddr {
        self.phys.align_down(self.size.bytes())
    }
}
