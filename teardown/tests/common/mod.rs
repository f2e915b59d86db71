//! A test rig: a mapper over the software VT-d, with a device at 00:01.0
//! attached to domain 1, and a clock the test moves.
#![allow(dead_code, unreachable_pub)] // reason: shared by several test binaries

use std::cell::Cell;
use std::collections::HashMap;

use invalidation::{Clock, Instant};
use iova_alloc::{IovaTree, Node, Window};
use teardown::{Fixed, Mapper, MapperConfig, PagePinner, PinError};
pub use viommu_examples::{DEVICE, DOMAIN, Emu, Frames, Inv, Mem, Testbed};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PhysAddr};
use vtd_tables::Access;

pub type TestMapper<P> =
    Mapper<(Mem, Frames, &'static TestClock), IovaTree<Vec<Node>>, Inv, Fixed, P>;

/// Simulated RAM: data buffers live below `FRAMES_START`, tables above.
pub const RAM: u64 = 32 << 20;
pub const FRAMES_START: u64 = 16 << 20;

#[derive(Default, Clone)]
pub struct TestClock(pub Cell<u64>);

impl Clock for TestClock {
    fn now(&self) -> Instant {
        Instant(self.0.get())
    }
}

impl TestClock {
    pub fn advance(&self, ns: u64) {
        self.0.set(self.0.get() + ns);
    }
}

pub struct Rig<P: PagePinner> {
    pub mapper: TestMapper<P>,
    pub emu: &'static Emu,
    pub frames: Frames,
    pub clock: &'static TestClock,
}

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

impl<P: PagePinner> Rig<P> {
    pub fn new(config: MapperConfig, pinner: P, emu_config: EmuConfig) -> Self {
        let bed = Testbed::with_memory(emu_config, RAM, FRAMES_START);
        let clock = leak(TestClock::default());
        // IOVA pages 1 .. 2^27 (512 GiB, inside the 39-bit domain).
        let space = IovaTree::new(Window::from_pages(1, (1 << 27) - 1).unwrap(), Vec::new());
        let platform = bed.platform(clock);
        let mapper = Mapper::new(platform, bed.table, space, bed.inv, pinner, config)
            .expect("a configuration the mapper honours");
        Rig { mapper, emu: bed.emu, frames: bed.frames, clock }
    }

    /// A device access through the unit (and its IOTLB).
    pub fn dma(&self, iova: Iova, access: Access) -> Option<PhysAddr> {
        self.emu.translate(DEVICE, iova, access).ok()
    }
}

/// A pinner that backs guest page g with host frame g + `offset` and counts
/// pins per guest page.
#[derive(Default)]
pub struct CountingPinner {
    pub offset: u64,
    pub pins: HashMap<u64, u32>,
    /// A guest page number whose pin fails.
    pub refuse: Option<u64>,
}

impl CountingPinner {
    pub fn with_offset(offset: u64) -> Self {
        CountingPinner { offset, ..Default::default() }
    }

    pub fn pinned(&self, guest_page: u64) -> bool {
        self.pins.get(&guest_page).copied().unwrap_or(0) > 0
    }

    pub fn total(&self) -> u32 {
        self.pins.values().sum()
    }
}

impl PagePinner for CountingPinner {
    fn pin(&mut self, page: PhysAddr) -> Result<PhysAddr, PinError> {
        if self.refuse == Some(page.page_number()) {
            return Err(PinError { page });
        }
        *self.pins.entry(page.page_number()).or_default() += 1;
        Ok(PhysAddr::new(page.as_u64() + self.offset))
    }

    fn unpin(&mut self, page: PhysAddr) {
        let n = self.pins.get_mut(&page.page_number()).expect("unpin of a page never pinned");
        assert!(*n > 0, "unpin of an unpinned page");
        *n -= 1;
    }
}
