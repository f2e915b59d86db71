//! The default [`PagePinner`] of a guest for the native backend: a guest
//! page is backed by the host frame its [`GuestLayout`] gives, and pins are
//! counted per page, so a test (or a hypervisor's balloon) can see which
//! guest pages must stay resident.
//!
//! A page outside the guest's RAM cannot be pinned: whatever a guest writes
//! in its tables, the vIOMMU never maps host memory outside the guest.

use alloc::collections::BTreeMap;

use teardown::{PagePinner, PinError};
use vtd_regs::{PAGE_SHIFT, PAGE_SIZE, PhysAddr};

use crate::guest_mem::GuestLayout;

/// Pins pages of a guest whose RAM is laid out by a [`GuestLayout`].
#[derive(Debug)]
pub struct GuestPinner {
    layout: GuestLayout,
    /// Guest page number -> pins held.
    pins: BTreeMap<u64, u32>,
    /// Unpins of pages that were not pinned (a bug if ever non-zero).
    unbalanced: u64,
}

impl GuestPinner {
    /// A pinner for the guest RAM `layout` places.
    pub const fn new(layout: GuestLayout) -> Self {
        Self { layout, pins: BTreeMap::new(), unbalanced: 0 }
    }

    /// How many distinct guest pages are pinned.
    pub fn pinned_pages(&self) -> usize {
        self.pins.len()
    }

    /// Pins held on the guest page at `gpa`.
    pub fn pins(&self, gpa: PhysAddr) -> u32 {
        self.pins.get(&gpa.page_number()).copied().unwrap_or(0)
    }

    /// The host frames of the pinned pages.
    pub fn pinned_frames(&self) -> impl Iterator<Item = PhysAddr> + '_ {
        self.pins.keys().filter_map(|g| {
            self.layout.host_address(PhysAddr::new(g << PAGE_SHIFT), PAGE_SIZE).ok()
        })
    }

    /// Unpins of pages that were not pinned.
    pub const fn unbalanced_unpins(&self) -> u64 {
        self.unbalanced
    }
}

impl PagePinner for GuestPinner {
    fn pin(&mut self, page: PhysAddr) -> Result<PhysAddr, PinError> {
        let host = self.layout.host_address(page, PAGE_SIZE).ok();
        let host = host.filter(|_| page.is_aligned(PAGE_SIZE)).ok_or(PinError { page })?;
        *self.pins.entry(page.page_number()).or_insert(0) += 1;
        Ok(host)
    }

    fn unpin(&mut self, page: PhysAddr) {
        match self.pins.get_mut(&page.page_number()) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.pins.remove(&page.page_number());
            }
            None => self.unbalanced += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_nest_and_stay_inside() {
        let mut p = GuestPinner::new(GuestLayout::new(PhysAddr::new(0x10_0000), 0x4000));
        assert_eq!(p.pin(PhysAddr::new(0x1000)), Ok(PhysAddr::new(0x10_1000)));
        assert_eq!(p.pin(PhysAddr::new(0x1000)), Ok(PhysAddr::new(0x10_1000)));
        assert_eq!(p.pinned_pages(), 1);
        assert!(p.pin(PhysAddr::new(0x4000)).is_err());
        assert!(p.pin(PhysAddr::new(0x1001)).is_err());
        assert!(p.pin(PhysAddr::new(!0xfff)).is_err());
        p.unpin(PhysAddr::new(0x1000));
        assert_eq!(p.pins(PhysAddr::new(0x1000)), 1);
        p.unpin(PhysAddr::new(0x1000));
        assert_eq!(p.pinned_pages(), 0);
        p.unpin(PhysAddr::new(0x1000));
        assert_eq!(p.unbalanced_unpins(), 1);
        assert_eq!(p.pinned_frames().count(), 0);
    }
}
