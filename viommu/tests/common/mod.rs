//! A host with one physical software VT-d (vtd-emu, QEMU's capabilities)
//! and guests with a vIOMMU each, whose drivers are this workspace's own
//! driver stack (RemappingUnit, QueuedInvalidator, teardown::Mapper) run
//! over the trapped register page.
#![allow(dead_code, unreachable_pub)] // reason: shared by several test binaries

use invalidation::{FlushConfig, NoClock, QueuedInvalidator};
use iova_alloc::{IovaTree, Node, Window};
use std::sync::Arc;
use teardown::{Fixed, Mapper, MapperConfig, NoPinning, Reuse};

use viommu::{
    Assignment, GuestLayout, GuestMemory, GuestPinner, Host, Native, Viommu, ViommuConfig,
};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::regs::QueueSize;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::{ContextScope, DomainId, Iova, PhysAddr, RemappingUnit, SourceId};
use vtd_tables::{ContextManager, SlPageTable, TableConfig};

pub type Mem = &'static HeapMemory;
pub type Frames = &'static SimFrameAllocator<Mem>;
pub type Emu = Emulator<Mem>;
pub type HostInv = QueuedInvalidator<&'static Emu, Mem>;
pub type TheHost = Host<Mem, Frames, HostInv>;
pub type GMem = GuestMemory<Mem>;
pub type GFrames = &'static SimFrameAllocator<GMem>;
pub type Backend = Native<Mem, Frames, HostInv, GuestPinner>;
pub type Vmmu = Viommu<GMem, Backend>;
pub type GuestInv<X> = QueuedInvalidator<X, GMem>;
pub type GuestMapper<X = &'static Vmmu> =
    Mapper<(GMem, GFrames, NoClock), IovaTree<Vec<Node>>, GuestInv<X>, Fixed<1024, 64>>;
/// The guest's register page under the sidecore.
pub type SidecoreRegs =
    viommu::sidecore::SidecoreMmio<'static, viommu::sidecore::RegisterPage, Vmmu>;

/// Host RAM: guest windows below `HOST_FRAMES`, host tables above.
pub const HOST_RAM: u64 = 96 << 20;
pub const HOST_FRAMES: u64 = 64 << 20;
/// Each guest: 16 MiB below 4 GiB (data below 8 MiB, the guest's tables
/// above), 4 MiB from 4 GiB.
pub const GUEST_LOW: u64 = 16 << 20;
pub const GUEST_FRAMES: u64 = 8 << 20;
pub const GUEST_HIGH: u64 = 4 << 20;
/// The assigned device as the guest sees it.
pub const GUEST_DEVICE: SourceId = SourceId::from_raw(0x0008);
pub const GUEST_DOMAIN: DomainId = DomainId::new(1);

pub fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

pub struct HostRig {
    pub mem: Mem,
    pub emu: &'static Emu,
    pub host: Arc<TheHost>,
}

impl HostRig {
    pub fn new() -> Self {
        let mem: Mem = leak(HeapMemory::new(HOST_RAM as usize));
        let frames: Frames =
            leak(SimFrameAllocator::new(mem, PhysAddr::new(HOST_FRAMES), PhysAddr::new(HOST_RAM)));
        let emu: &'static Emu = leak(Emulator::new(mem, EmuConfig::qemu()).unwrap());
        let unit = RemappingUnit::new(emu).unwrap();
        let tables = TableConfig::from_cap(unit.cap(), 39).unwrap();
        let contexts = ContextManager::new(mem, frames).unwrap();
        let qs = QueueSize::from_order(0).unwrap();
        let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, qs)
            .unwrap();
        let host = Host::new(mem, frames, contexts, inv, tables, DomainId::new(1));
        HostRig { mem, emu, host: Arc::new(host) }
    }

    /// The layout of guest `n` (0, 1, ...): low RAM at n * 16 MiB, high RAM
    /// at 32 MiB + n * 4 MiB.
    pub fn layout(n: u64) -> GuestLayout {
        GuestLayout::new(PhysAddr::new(n * GUEST_LOW), GUEST_LOW)
            .with_high(PhysAddr::new(2 * GUEST_LOW + n * GUEST_HIGH), GUEST_HIGH)
    }

    /// Guest `n`'s vIOMMU, with its device at host source id 00:(n+1).0.
    pub fn viommu(&self, n: u64, config: ViommuConfig) -> &'static Vmmu {
        let layout = Self::layout(n);
        let gmem = GuestMemory::new(self.mem, layout);
        let dev = Assignment { guest: GUEST_DEVICE, host: Self::host_device(n) };
        let backend = Native::new(self.host.clone(), GuestPinner::new(layout));
        leak(Viommu::new(gmem, backend, &[dev], config).unwrap())
    }

    /// The guest-physical address of guest `n` at host address `hpa`.
    pub fn guest_address(n: u64, hpa: PhysAddr) -> Option<PhysAddr> {
        let layout = Self::layout(n);
        let windows = [(0, GUEST_LOW), (viommu::HIGH_RAM_START, GUEST_HIGH)];
        windows.into_iter().find_map(|(gpa, len)| {
            let base = layout.host_address(PhysAddr::new(gpa), len).ok()?.as_u64();
            (base..base + len)
                .contains(&hpa.as_u64())
                .then(|| PhysAddr::new(gpa + hpa.as_u64() - base))
        })
    }

    pub fn host_device(n: u64) -> SourceId {
        SourceId::new(0, (n + 1) as u8, 0).unwrap()
    }
}

/// A device's DMA through the host unit, a blocked one reported to the
/// guest's unit, as a hypervisor does.
pub trait DeviceDma {
    /// The DMA of the device the guest knows as `guest`, at `iova`: where
    /// the host unit sends it, or the fault.
    fn dma(
        &self,
        host_unit: &Emu,
        guest: SourceId,
        iova: Iova,
        access: vtd_tables::Access,
    ) -> Result<PhysAddr, vtd_emu::Fault>;
}

impl DeviceDma for Vmmu {
    fn dma(
        &self,
        host_unit: &Emu,
        guest: SourceId,
        iova: Iova,
        access: vtd_tables::Access,
    ) -> Result<PhysAddr, vtd_emu::Fault> {
        let host = self.assignment(guest).expect("an assigned device").host;
        host_unit.translate(host, iova, access).inspect_err(|_| {
            self.report_host_fault(host, iova, access);
        })
    }
}

/// What the tests read of a vIOMMU on the native backend.
pub trait Inspect {
    /// Runs `f` on the guest's pinner.
    fn with_pinner<R>(&self, f: impl FnOnce(&GuestPinner) -> R) -> R;
    /// Every guest page mapped in the host, as (GIOVA, guest page).
    fn shadowed(&self) -> Vec<(Iova, PhysAddr)>;
}

impl Inspect for Vmmu {
    fn with_pinner<R>(&self, f: impl FnOnce(&GuestPinner) -> R) -> R {
        self.with_backend(|b| f(b.pinner()))
    }

    fn shadowed(&self) -> Vec<(Iova, PhysAddr)> {
        let mut pages = Vec::new();
        self.for_each_mapping(|m| {
            for off in (0..m.len).step_by(4096) {
                pages.push((Iova::new(m.iova.as_u64() + off), PhysAddr::new(m.gpa.as_u64() + off)));
            }
        });
        pages
    }
}

/// A guest's driver: the guest's own tables in its RAM, programmed through
/// its vIOMMU.
pub struct Guest<X: vtd_regs::Mmio = &'static Vmmu> {
    pub n: u64,
    pub viommu: &'static Vmmu,
    pub mem: GMem,
    pub frames: GFrames,
    pub mapper: GuestMapper<X>,
}

impl Guest {
    /// Brings up guest `n`: tables, root, translation, queued invalidation,
    /// the device attached to domain 1, a strict single-use mapper below
    /// `dma_limit`.
    pub fn new(rig: &HostRig, n: u64, dma_limit: u64) -> Self {
        Self::with_config(rig, n, dma_limit, ViommuConfig::qemu())
    }

    pub fn with_config(rig: &HostRig, n: u64, dma_limit: u64, config: ViommuConfig) -> Self {
        let viommu = rig.viommu(n, config);
        Guest::with_mmio(n, rig, viommu, viommu, dma_limit)
    }
}

impl<X: vtd_regs::Mmio> Guest<X> {
    /// Guest `n` on `viommu`, reaching its registers through `mmio`.
    pub fn with_mmio(
        n: u64,
        rig: &HostRig,
        viommu: &'static Vmmu,
        mmio: X,
        dma_limit: u64,
    ) -> Self {
        let mem = GuestMemory::new(rig.mem, HostRig::layout(n));
        let frames: GFrames = leak(SimFrameAllocator::new(
            mem,
            PhysAddr::new(GUEST_FRAMES),
            PhysAddr::new(GUEST_LOW),
        ));
        // A driver waits as long as it takes (a sidecore may be descheduled).
        let budget = vtd_regs::PollBudget::new(u32::MAX);
        let unit = RemappingUnit::with_budget(mmio, budget).unwrap();
        assert!(unit.cap().caching_mode());
        let table =
            SlPageTable::new(mem, frames, TableConfig::from_cap(unit.cap(), 39).unwrap()).unwrap();
        let mut contexts = ContextManager::new(mem, frames).unwrap();
        let _ = contexts.attach(GUEST_DEVICE, GUEST_DOMAIN, &table).unwrap();
        let qs = QueueSize::from_order(0).unwrap();
        let inv = QueuedInvalidator::enable_remapping(unit, contexts.root_table(), mem, frames, qs)
            .unwrap();
        let space = IovaTree::new(
            Window::from_pages(1, (dma_limit >> 12).min(1 << 27) - 1).unwrap(),
            Vec::new(),
        );
        let config = MapperConfig {
            reuse: Reuse::SingleUse,
            flush: FlushConfig::strict(),
            domain: GUEST_DOMAIN,
            dma_limit: Iova::new(dma_limit),
        };
        let mapper = Mapper::with_capacity(
            (mem, frames, NoClock),
            table,
            space,
            inv,
            NoPinning,
            config,
            Fixed,
        )
        .unwrap();
        Guest { n, viommu, mem, frames, mapper }
    }

    /// The host address of guest-physical `gpa`.
    pub fn host_address(&self, gpa: u64) -> PhysAddr {
        HostRig::layout(self.n).host_address(PhysAddr::new(gpa), 1).unwrap()
    }
}

/// A guest that drives its vIOMMU by hand: its tables in its RAM, the
/// registers through a `RemappingUnit`, the queue written descriptor by
/// descriptor; for tests of misbehaviour.
pub struct RawGuest {
    pub viommu: &'static Vmmu,
    pub mem: GMem,
    pub frames: GFrames,
    pub unit: RemappingUnit<&'static Vmmu>,
    pub table: SlPageTable<GMem, GFrames>,
    pub contexts: ContextManager<GMem, GFrames>,
    /// The queue frame and the next free slot, once enabled.
    pub queue: Option<(PhysAddr, usize)>,
}

impl RawGuest {
    /// Guest `n` with translation on, the device attached to domain 1 with
    /// a register-based context invalidation.
    pub fn new(rig: &HostRig, n: u64, config: ViommuConfig) -> Self {
        let viommu = rig.viommu(n, config);
        let mem = GuestMemory::new(rig.mem, HostRig::layout(n));
        let frames: GFrames = leak(SimFrameAllocator::new(
            mem,
            PhysAddr::new(GUEST_FRAMES),
            PhysAddr::new(GUEST_LOW),
        ));
        let mut unit = RemappingUnit::new(viommu).unwrap();
        let table =
            SlPageTable::new(mem, frames, TableConfig::from_cap(unit.cap(), 39).unwrap()).unwrap();
        let mut contexts = ContextManager::new(mem, frames).unwrap();
        let _ = contexts.attach(GUEST_DEVICE, GUEST_DOMAIN, &table).unwrap();
        unit.set_root_table(contexts.root_table(), TranslationTableMode::Legacy).unwrap();
        unit.enable_translation().unwrap();
        unit.invalidate_context(ContextScope::Global).unwrap();
        RawGuest { viommu, mem, frames, unit, table, contexts, queue: None }
    }

    /// Turns queued invalidation on with a one-page queue.
    pub fn enable_queue(&mut self) {
        use vtd_regs::FrameAllocator;
        let frame = self.frames.allocate(0).unwrap();
        let iqa = vtd_regs::regs::Iqa::new(
            frame,
            QueueSize::from_order(0).unwrap(),
            vtd_regs::regs::DescriptorWidth::Bits128,
        );
        self.unit.enable_queued_invalidation(iqa).unwrap();
        self.queue = Some((frame, 0));
    }

    /// Writes raw descriptors at the tail and moves the tail past them.
    pub fn submit(&mut self, descs: &[vtd_regs::RawDescriptor]) {
        use vtd_regs::PhysMem;
        let (frame, mut tail) = self.queue.unwrap();
        for d in descs {
            let at = PhysAddr::new(frame.as_u64() + (tail as u64) * 16);
            self.mem.write_bytes(at, &d.to_le_bytes()).unwrap();
            tail = (tail + 1) % 256;
        }
        self.queue = Some((frame, tail));
        self.unit.write_queue_tail(tail).unwrap();
    }

    /// An IOTLB invalidation of one page of domain 1, as a raw descriptor.
    pub fn iotlb_page(iova: Iova) -> vtd_regs::RawDescriptor {
        let scope = vtd_regs::IotlbScope::pages(GUEST_DOMAIN, iova, 0, false).unwrap();
        vtd_regs::Descriptor::Iotlb(vtd_regs::desc::IotlbInv {
            scope,
            drain: vtd_regs::Drain::empty(),
        })
        .encode()
    }

    /// A wait descriptor writing `data` at `status`.
    pub fn wait(status: PhysAddr, data: u32) -> vtd_regs::RawDescriptor {
        let w = vtd_regs::desc::WaitDesc::NONE.with_status_write(status, data).unwrap();
        vtd_regs::Descriptor::Wait(w).encode()
    }
}
