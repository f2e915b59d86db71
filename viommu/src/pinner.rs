//! The default [`PagePinner`] of a guest for the native backend: a guest
//! page is backed by the host frame its [`GuestLayout`] gives, and pins are
//! counted per page, so a test (or a hypervisor's balloon) can see which
//! guest pages must stay resident.
//!
//! A page outside the guest's RAM cannot be pinned: whatever a guest writes
//! in its tables, the vIOMMU never maps host memory outside the guest.
//!
//! The counts sit in one array of 512 per 2 MiB region of guest-physical
//! space, allocated when a page of the region is first pinned and kept: a
//! pin or unpin is an index and an add (every shadowed map pins, every
//! completed unmap unpins), with no allocation once a region's array
//! exists. The arrays cost 2 KiB per region DMA has touched (0.1% of that
//! RAM), plus a pointer per 2 MiB of guest-physical space up to the highest
//! region pinned.

use alloc::boxed::Box;
use alloc::vec::Vec;

use teardown::{PagePinner, PinError};
use vtd_regs::{PAGE_SHIFT, PAGE_SIZE, PhysAddr};

use crate::guest_mem::GuestLayout;

/// Pages per region: the entries of a last-level table (2 MiB).
const REGION_PAGES: usize = 512;

/// The pins held on each page of one 2 MiB region.
type Region = Box<[u32; REGION_PAGES]>;

/// Pins pages of a guest whose RAM is laid out by a [`GuestLayout`].
#[derive(Debug)]
pub struct GuestPinner {
    layout: GuestLayout,
    /// Pins held, by guest page number: region (`page / 512`), then page
    /// within it; a region nothing was pinned in has no array.
    regions: Vec<Option<Region>>,
    /// Pages with at least one pin.
    pinned: usize,
    /// Unpins of pages that were not pinned (a bug if ever non-zero).
    unbalanced: u64,
}

/// Where the count of guest page number `page` is: region and index.
fn slot(page: u64) -> (usize, usize) {
    ((page / REGION_PAGES as u64) as usize, (page % REGION_PAGES as u64) as usize)
}

impl GuestPinner {
    /// A pinner for the guest RAM `layout` places.
    pub const fn new(layout: GuestLayout) -> Self {
        Self { layout, regions: Vec::new(), pinned: 0, unbalanced: 0 }
    }

    /// How many distinct guest pages are pinned.
    pub fn pinned_pages(&self) -> usize {
        self.pinned
    }

    /// Pins held on the guest page at `gpa`.
    pub fn pins(&self, gpa: PhysAddr) -> u32 {
        let (r, i) = slot(gpa.page_number());
        self.regions.get(r).and_then(Option::as_ref).map_or(0, |c| c[i])
    }

    /// The host frames of the pinned pages, in guest-physical order.
    pub fn pinned_frames(&self) -> impl Iterator<Item = PhysAddr> + '_ {
        let regions = self.regions.iter().enumerate();
        let chunks = regions.filter_map(|(r, c)| Some((r, c.as_ref()?)));
        let pages = chunks.flat_map(|(r, c)| {
            let pinned = c.iter().enumerate().filter(|&(_, &n)| n > 0);
            pinned.map(move |(i, _)| (r * REGION_PAGES + i) as u64)
        });
        pages.filter_map(|g| {
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
        let (r, i) = slot(page.page_number());
        if r >= self.regions.len() {
            self.regions.resize_with(r + 1, || None);
        }
        let region = self.regions.get_mut(r).ok_or(PinError { page })?;
        let n = &mut region.get_or_insert_with(|| Box::new([0; REGION_PAGES]))[i];
        // A page pinned 2^32 - 1 times is refused rather than wrapped.
        *n = n.checked_add(1).ok_or(PinError { page })?;
        self.pinned += usize::from(*n == 1);
        Ok(host)
    }

    fn unpin(&mut self, page: PhysAddr) {
        let (r, i) = slot(page.page_number());
        match self.regions.get_mut(r).and_then(Option::as_mut).map(|c| &mut c[i]) {
            Some(n) if *n > 0 => {
                *n -= 1;
                self.pinned -= usize::from(*n == 0);
            }
            _ => self.unbalanced += 1,
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

    /// Pins and unpins of pages below and above 4 GiB (and outside RAM),
    /// against a map of page -> pins: the same counts, pinned pages, host
    /// frames (in order) and unbalanced unpins.
    #[test]
    fn counts_as_a_map_does() {
        use proptest::prelude::*;
        use std::collections::BTreeMap;
        const HIGH: u64 = 1 << 32;
        let layout = GuestLayout::new(PhysAddr::new(0x100_0000), 0x40_0000)
            .with_high(PhysAddr::new(0x200_0000), 0x40_0000);
        // Pages of the first 3 MiB of each window and just past each.
        let page = prop_oneof![0u64..0x500, (HIGH >> PAGE_SHIFT)..(HIGH >> PAGE_SHIFT) + 0x500];
        let ops = proptest::collection::vec((any::<bool>(), page), 0..300);
        proptest!(|(ops in ops)| {
            let mut p = GuestPinner::new(layout);
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            let mut unbalanced = 0;
            for (pin, g) in ops {
                let gpa = PhysAddr::new(g << PAGE_SHIFT);
                if pin {
                    let r = p.pin(gpa);
                    prop_assert_eq!(r.is_ok(), layout.host_address(gpa, PAGE_SIZE).is_ok());
                    if r.is_ok() {
                        *model.entry(g).or_insert(0) += 1;
                    }
                } else {
                    p.unpin(gpa);
                    match model.get_mut(&g) {
                        Some(n) if *n > 1 => *n -= 1,
                        Some(_) => drop(model.remove(&g)),
                        None => unbalanced += 1,
                    }
                }
                prop_assert_eq!(p.pins(gpa), model.get(&g).copied().unwrap_or(0));
            }
            prop_assert_eq!(p.pinned_pages(), model.len());
            prop_assert_eq!(p.unbalanced_unpins(), unbalanced);
            let frames: Vec<PhysAddr> = model
                .keys()
                .map(|g| layout.host_address(PhysAddr::new(g << PAGE_SHIFT), PAGE_SIZE).unwrap())
                .collect();
            prop_assert_eq!(p.pinned_frames().collect::<Vec<_>>(), frames);
        });
    }
}
