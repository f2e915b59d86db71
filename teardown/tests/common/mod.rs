//! A test rig: a mapper over the software VT-d, with a device at 00:01.0
//! attached to domain 1, and a clock the test moves.
#![allow(dead_code, unreachable_pub)] // reason: shared by several test binaries

use std::cell::Cell;
use std::collections::HashMap;

use invalidation::{Clock, Instant, Invalidation, Invalidator, QueuedInvalidator};
use iova_alloc::{IovaTree, Node, Window};
use teardown::{Mapper, MapperConfig, PagePinner, PinError};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::regs::QueueSize;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{ContextScope, DomainId, Iova, PhysAddr, RemappingUnit, SourceId};
use vtd_tables::{Access, ContextManager, SlPageTable, TableConfig};

pub type Mem = &'static HeapMemory;
pub type Frames = &'static SimFrameAllocator<Mem>;
pub type Emu = Emulator<Mem>;
pub type TestMapper<P> = Mapper<
    Mem,
    Frames,
    IovaTree<Vec<Node>>,
    QueuedInvalidator<&'static Emu, Mem>,
    &'static TestClock,
    P,
    1024,
    256,
>;

/// Simulated RAM: data buffers live below `FRAMES_START`, tables above.
pub const RAM: u64 = 32 << 20;
pub const FRAMES_START: u64 = 16 << 20;
pub const DEVICE: SourceId = SourceId::from_raw(0x0008);
pub const DOMAIN: DomainId = DomainId::new(1);

#[derive(Default)]
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
        let mem: Mem = leak(HeapMemory::new(RAM as usize));
        let frames: Frames =
            leak(SimFrameAllocator::new(mem, PhysAddr::new(FRAMES_START), PhysAddr::new(RAM)));
        let emu: &'static Emu = leak(Emulator::new(mem, emu_config).unwrap());
        let clock = leak(TestClock::default());
        let mut unit = RemappingUnit::new(emu).unwrap();
        let table =
            SlPageTable::new(mem, frames, TableConfig::from_cap(unit.cap(), 39).unwrap()).unwrap();
        let mut contexts = ContextManager::new(mem, frames).unwrap();
        let _attached = contexts.attach(DEVICE, DOMAIN, &table).unwrap();
        unit.set_root_table(contexts.root_table(), TranslationTableMode::Legacy).unwrap();
        unit.enable_translation().unwrap();
        // Dropping the context manager frees nothing: its tables stay.
        let mut inv = QueuedInvalidator::new(unit, mem, frames, QueueSize::from_order(0).unwrap())
            .map_err(|(e, _)| e)
            .unwrap();
        inv.invalidate([Invalidation::Context(ContextScope::Global)]).unwrap();
        // IOVA pages 1 .. 2^27 (512 GiB, inside the 39-bit domain).
        let space = IovaTree::new(Window::from_pages(1, (1 << 27) - 1).unwrap(), Vec::new());
        let mapper = Mapper::new(table, space, inv, pinner, clock, config);
        Rig { mapper, emu, frames, clock }
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
