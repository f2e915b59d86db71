//! A test rig: an emulator over leaked simulated memory, a frame allocator,
//! and helpers that write root, context and second-level entries with the
//! `vtd-tables` entry types.
#![allow(dead_code, unreachable_pub)] // reason: shared by several test binaries, each uses a part

use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::Descriptor;
use vtd_regs::regs::Iqa;
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::unit::RemappingUnit;
use vtd_regs::{DomainId, FrameAllocator, Iova, PageSize, PhysAddr, PhysMem, SourceId};
use vtd_tables::pte::{entry_address, index};
use vtd_tables::{ContextEntry, Perm, RootEntry, SlPte, TranslationType};

/// Simulated RAM per rig.
pub const RAM: usize = 4 << 20;

pub type Emu = Emulator<&'static HeapMemory, 64, 16>;

pub struct Rig {
    pub mem: &'static HeapMemory,
    pub frames: SimFrameAllocator<&'static HeapMemory>,
    pub emu: Emu,
    pub root: PhysAddr,
}

pub fn sid(bus: u8, dev: u8, f: u8) -> SourceId {
    SourceId::new(bus, dev, f).unwrap()
}

impl Rig {
    pub fn new(cfg: EmuConfig) -> Self {
        let mem: &'static HeapMemory = Box::leak(Box::new(HeapMemory::new(RAM)));
        let frames = SimFrameAllocator::new(mem, PhysAddr::new(0x1000), PhysAddr::new(RAM as u64));
        let emu = Emulator::with_caches(mem, cfg).unwrap();
        let mut rig = Self { mem, frames, emu, root: PhysAddr::ZERO };
        rig.root = rig.frame();
        rig
    }

    pub fn qemu() -> Self {
        Self::new(EmuConfig::qemu())
    }

    /// A zeroed 4 KiB frame.
    pub fn frame(&self) -> PhysAddr {
        let f = self.frames.allocate(0).unwrap();
        self.mem.zero_frame(f).unwrap();
        f
    }

    /// A driver handle on the emulator.
    pub fn unit(&self) -> RemappingUnit<&Emu> {
        RemappingUnit::new(&self.emu).unwrap()
    }

    /// Sets the root table and enables translation, as a driver does.
    pub fn enable(&self) {
        let mut u = self.unit();
        u.set_root_table(self.root, TranslationTableMode::Legacy).unwrap();
        u.enable_translation().unwrap();
    }

    /// The context table of `bus`, created if missing.
    pub fn context_table(&self, bus: u8) -> PhysAddr {
        let re = RootEntry::read(self.mem, self.root, bus).unwrap();
        if re.present() {
            return re.context_table();
        }
        let t = self.frame();
        RootEntry::new(t).write(self.mem, self.root, bus).unwrap();
        t
    }

    /// Attaches `source` to domain `did` with a new, empty second-level
    /// table of depth `agaw`; returns the table.
    pub fn attach(&self, source: SourceId, did: u16, agaw: Agaw) -> PhysAddr {
        let slpt = self.frame();
        self.set_context(
            source,
            ContextEntry::translated(DomainId::new(did), slpt, agaw, TranslationType::Untranslated),
        );
        slpt
    }

    pub fn set_context(&self, source: SourceId, ce: ContextEntry) {
        let t = self.context_table(source.bus());
        ce.write(self.mem, t, source).unwrap();
    }

    /// The address of the entry mapping `iova` at `level`, creating the
    /// tables above it.
    pub fn slot(&self, slpt: PhysAddr, agaw: Agaw, iova: Iova, level: u8) -> PhysAddr {
        let mut table = slpt;
        let mut l = agaw.levels();
        while l > level {
            let at = entry_address(table, index(iova, l));
            let e = SlPte(self.mem.read_u64(at).unwrap());
            table = if e.is_present() {
                e.address()
            } else {
                let t = self.frame();
                self.mem.write_u64(at, SlPte::table(t).0).unwrap();
                t
            };
            l -= 1;
        }
        entry_address(table, index(iova, level))
    }

    pub fn map(
        &self,
        slpt: PhysAddr,
        agaw: Agaw,
        iova: u64,
        phys: u64,
        perm: Perm,
        size: PageSize,
    ) {
        let at = self.slot(slpt, agaw, Iova::new(iova), size.level());
        self.mem.write_u64(at, SlPte::leaf(PhysAddr::new(phys), perm, size).0).unwrap();
    }

    pub fn unmap(&self, slpt: PhysAddr, agaw: Agaw, iova: u64, size: PageSize) {
        let at = self.slot(slpt, agaw, Iova::new(iova), size.level());
        self.mem.write_u64(at, SlPte::EMPTY.0).unwrap();
    }

    /// A queue of 2^`order` pages of `width` descriptors.
    pub fn queue(&self, order: u8, width: DescriptorWidth) -> Iqa {
        let base = self.frames.allocate(order).unwrap();
        for i in 0..(1u64 << order) {
            self.mem.zero_frame(PhysAddr::new(base.as_u64() + i * 4096)).unwrap();
        }
        Iqa::new(base, QueueSize::from_order(order).unwrap(), width)
    }

    /// Writes `d` into slot `index` of the queue `iqa`.
    pub fn put(&self, iqa: Iqa, index: usize, d: Descriptor) {
        let width = iqa.width();
        let mut slot = [0u8; 32];
        d.write(width, &mut slot).unwrap();
        self.put_raw(iqa, index, &slot[..width.bytes()]);
    }

    /// Writes raw bytes into slot `index` of the queue `iqa`.
    pub fn put_raw(&self, iqa: Iqa, index: usize, bytes: &[u8]) {
        let at = iqa.base().as_u64() + (index * iqa.width().bytes()) as u64;
        self.mem.write_bytes(PhysAddr::new(at), bytes).unwrap();
    }
}
