//! The DMA API on the software VT-d: bring-up from a DMAR table, attach and
//! detach (caching mode included), reserved regions, map, scatter-gather,
//! coherent memory, shut-down; what the device reaches is asked of the unit.

use std::time::Duration;

use iommu_platform::{PhysMem, RegionFrames, StdClock};
use vtd_dma::{Direction, DmaConfig, DmaDomain, Error, Iova, NoClock, PhysAddr, SourceId};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{Access, EmuConfig, Emulator};
use vtd_regs::desc::DescType;
use vtd_regs::dmar::{DeviceScopeKind, DmarFlags, DmarWriter, DrhdFlags};
use vtd_regs::regs::{GlobalBits, Gsts};

const RAM: u64 = 16 << 20;
const BASE: PhysAddr = PhysAddr::new(0xfed9_0000);
const NIC: SourceId = SourceId::from_raw(0x0008); // 00:01.0
const USB: SourceId = SourceId::from_raw(0x0010); // 00:02.0
/// 16 KiB the USB controller keeps using (an RMRR).
const RMRR: (u64, u64) = (0x80_0000, 0x80_3fff);

type Ram = &'static HeapMemory;
type Frames = &'static RegionFrames<64>;
type Emu = &'static Emulator<Ram>;
type Domain = DmaDomain<(Ram, Frames, StdClock), Emu>;

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// Runs `test` on a thread with a big stack: with its default fixed
/// capacities a domain holds its registry, flush queue and IOVA tree inline
/// (about 210 KB), and a debug build copies it several times on its way out
/// of the constructors.
fn on_big_stack(test: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(16 << 20).spawn(test).unwrap().join().unwrap();
}

/// Simulated RAM with frames for tables in its top half, and a unit.
struct Machine {
    ram: Ram,
    frames: Frames,
    emu: Emu,
}

impl Machine {
    fn new(cfg: EmuConfig) -> Self {
        let ram = leak(HeapMemory::new(RAM as usize));
        let frames = leak(RegionFrames::new(PhysAddr::new(RAM / 2), PhysAddr::new(RAM)).unwrap());
        let emu = leak(Emulator::new(ram, cfg).unwrap());
        Machine { ram, frames, emu }
    }

    fn platform(&self) -> (Ram, Frames, StdClock) {
        (self.ram, self.frames, StdClock::new())
    }

    /// The DMAR table of the machine: one unit covering both devices, and
    /// the USB controller's reserved region.
    fn dmar(buf: &mut [u8]) -> &[u8] {
        let endpoint = DeviceScopeKind::PciEndpoint;
        DmarWriter::new(buf, 39, DmarFlags::INTR_REMAP)
            .and_then(|w| w.drhd(DrhdFlags::empty(), 0, BASE))
            .and_then(|w| w.device(endpoint, 0, 0, &[(1, 0)]))
            .and_then(|w| w.device(endpoint, 0, 0, &[(2, 0)]))
            .and_then(|w| w.rmrr(0, PhysAddr::new(RMRR.0), PhysAddr::new(RMRR.1)))
            .and_then(|w| w.device(endpoint, 0, 0, &[(2, 0)]))
            .and_then(|w| w.finish())
            .unwrap()
    }

    fn domain(&self, config: DmaConfig) -> Domain {
        let mut buf = [0u8; 256];
        let emu = self.emu;
        let regs = |base| (base == BASE).then_some(emu);
        DmaDomain::from_dmar(self.platform(), Self::dmar(&mut buf), NIC, regs, config).unwrap()
    }

    fn dma(&self, device: SourceId, iova: Iova, access: Access) -> Option<PhysAddr> {
        self.emu.translate(device, iova, access).ok()
    }

    fn status(&self) -> Gsts {
        vtd_regs::Mmio::read_reg(&self.emu)
    }
}

#[test]
fn bring_up_from_the_dmar_table_and_map() {
    on_big_stack(|| {
        let m = Machine::new(EmuConfig::qemu());
        let mut dma = m.domain(DmaConfig::strict());
        assert_eq!(dma.dmar_unit().register_base(), BASE);
        assert_eq!(dma.dmar_unit().devices(), [NIC, USB]);
        assert!(m.status().contains(GlobalBits::TE | GlobalBits::QIE));
        let buf = PhysAddr::new(0x12_3450);
        let iova = dma.map(buf, 1500, Direction::FromDevice).unwrap();
        assert_eq!(m.dma(NIC, iova, Access::Write), None, "not attached yet");
        dma.attach(NIC).unwrap();
        assert_eq!(m.dma(NIC, iova, Access::Write), Some(buf));
        assert_eq!(m.dma(NIC, iova, Access::Read), None, "from the device: write-only");
        assert_eq!(m.dma(USB, iova, Access::Write), None, "another device");
        // A frame written by the device, page by page through the unit.
        m.emu.dma_write(NIC, iova, &[0xab; 1500]).unwrap();
        let mut back = [0u8; 1500];
        m.ram.read_bytes(buf, &mut back).unwrap();
        assert!(back.iter().all(|b| *b == 0xab));
        let beyond = Iova::new(iova.as_u64() + 0x1000);
        assert!(matches!(m.emu.dma_write(NIC, beyond, &[0; 16]), Err(vtd_emu::DmaError::Fault(_))));
        dma.unmap(iova, 1500).unwrap();
        assert_eq!(m.dma(NIC, iova, Access::Write), None, "strict: gone at unmap");
        dma.detach(NIC).unwrap();
        assert_eq!(dma.detach(NIC), Err(Error::NotAttached(NIC)));
    });
}

#[test]
fn reserved_regions_are_identity_mapped_for_their_devices_and_never_handed_out() {
    on_big_stack(|| {
        let m = Machine::new(EmuConfig::qemu());
        let mut dma = m.domain(DmaConfig::lazy());
        let rmrr = Iova::new(RMRR.0 + 0x1234);
        assert_eq!(dma.dmar_unit().reserved_regions().len(), 1);
        dma.attach(NIC).unwrap();
        assert_eq!(m.dma(NIC, rmrr, Access::Read), None, "the NIC does not use the region");
        dma.attach(USB).unwrap();
        assert_eq!(m.dma(USB, rmrr, Access::Write), Some(PhysAddr::new(RMRR.0 + 0x1234)));
        // A 32-bit device's IOVAs come from just below 4 GiB down, and never
        // from the interrupt window or the reserved region.
        let mut config = DmaConfig::lazy();
        config.dma_limit = Iova::new(0xFFFF_FFFF);
        let m = Machine::new(EmuConfig::qemu());
        let mut dma = m.domain(config);
        for i in 0..1000u64 {
            let iova = dma.map(PhysAddr::new(i << 12), 4096, Direction::ToDevice).unwrap();
            let page = iova.as_u64() >> 12;
            assert!(!(0xFEE00..=0xFEEFF).contains(&page), "{iova:?} in the MSI window");
            assert!(!(RMRR.0 >> 12..=RMRR.1 >> 12).contains(&page), "{iova:?} in the RMRR");
            assert!(iova.as_u64() <= 0xFFFF_FFFF);
        }
    });
}

/// A first attach owes, under caching mode, a device-selective context-cache
/// invalidation (domain 0: a unit in caching mode may have cached the
/// not-present entry, §6.1) and the domain's IOTLB invalidation; without
/// caching mode, none (a write-buffer flush at most). The software VT-d
/// caches not-present leaves but not not-present contexts, so the count of
/// descriptors is the check; the device's DMA works either way.
#[test]
fn first_attach_invalidates_under_caching_mode_only() {
    on_big_stack(|| {
        for caching in [true, false] {
            let m = Machine::new(EmuConfig::qemu().with_caching_mode(caching));
            let mut dma = m.domain(DmaConfig::lazy());
            let iova = dma.map(PhysAddr::new(0x40_0000), 64, Direction::ToDevice).unwrap();
            let count = |dma: &mut Domain| {
                let s = dma.stats().invalidator;
                (s.descriptors_of(DescType::ContextCache), s.descriptors_of(DescType::Iotlb))
            };
            let before = count(&mut dma);
            dma.attach(NIC).unwrap();
            let after = count(&mut dma);
            let owed = if caching { (1, 1) } else { (0, 0) };
            assert_eq!((after.0 - before.0, after.1 - before.1), owed, "caching mode {caching}");
            assert_eq!(m.dma(NIC, iova, Access::Read), Some(PhysAddr::new(0x40_0000)));
        }
    });
}

#[test]
fn scatter_gather_and_coherent_memory() {
    on_big_stack(|| {
        let m = Machine::new(EmuConfig::qemu());
        let mut dma = m.domain(DmaConfig::optimistic());
        dma.attach(NIC).unwrap();
        let sg = [(PhysAddr::new(0x10_0000), 4096), (PhysAddr::new(0x30_0000), 100)];
        let at = dma.map_sg(&sg, Direction::ToDevice).unwrap();
        let last = Iova::new(at.as_u64() + 4096 + 99);
        assert_eq!(m.dma(NIC, last, Access::Read), Some(PhysAddr::new(0x30_0063)));
        dma.unmap_sg(at, &sg).unwrap();
        let frames_before = m.frames.in_use();
        let ring = dma.alloc_coherent(3 * 4096).unwrap();
        assert!(ring.phys().is_aligned(4 * 4096), "3 pages round up to an order-2 block");
        let frames_during = m.frames.in_use();
        assert!(frames_during >= frames_before + 4);
        let end = Iova::new(ring.iova().as_u64() + 3 * 4096 - 1);
        assert!(m.dma(NIC, end, Access::Write).is_some());
        assert_eq!(m.ram.read_u64(PhysAddr::new(ring.phys().as_u64() + 8)), Ok(0), "zeroed");
        let iova = ring.iova();
        dma.free_coherent(ring).unwrap();
        assert_eq!(
            m.dma(NIC, iova, Access::Write),
            None,
            "invalidated before the frames went back"
        );
        assert!(m.frames.in_use() <= frames_during - 4, "the block and any emptied table");
        assert!(matches!(dma.alloc_coherent(0), Err(Error::Map(_))));
    });
}

#[test]
fn configurations_it_cannot_honour_are_refused_before_the_hardware_is_touched() {
    on_big_stack(|| {
        let m = Machine::new(EmuConfig::qemu());
        let no_clock = (m.ram, m.frames, NoClock);
        let r = DmaDomain::new(no_clock, m.emu, DmaConfig::optimistic());
        assert_eq!(r.err(), Some(Error::Map(teardown::Error::TimeLimitWithoutClock)));
        let mut config = DmaConfig::lazy();
        config.flush.batch = 257;
        let r = DmaDomain::new(m.platform(), m.emu, config);
        assert!(matches!(r.err(), Some(Error::Map(teardown::Error::Invalidation(_)))));
        assert!(!m.status().contains(GlobalBits::TE), "untouched");
        assert_eq!(m.frames.in_use(), 0);
        // A device no unit covers, and a register page the platform cannot map.
        let mut buf = [0u8; 256];
        let dmar = Machine::dmar(&mut buf);
        let other = SourceId::new(0, 9, 0).unwrap();
        let r = DmaDomain::from_dmar(m.platform(), dmar, other, |_| Some(m.emu), DmaConfig::lazy());
        assert_eq!(r.err(), Some(Error::NoUnitFor(other)));
        let r = DmaDomain::from_dmar(m.platform(), dmar, NIC, |_| None::<Emu>, DmaConfig::lazy());
        assert_eq!(r.err(), Some(Error::NoRegisters(BASE)));
        let mut bad = dmar.to_vec();
        bad[9] ^= 1;
        let r = DmaDomain::from_dmar(m.platform(), &bad, NIC, |_| Some(m.emu), DmaConfig::lazy());
        assert!(matches!(r.err(), Some(Error::Dmar(_))));
    });
}

#[test]
fn units_without_a_queue_are_driven_through_the_registers() {
    on_big_stack(|| {
        let mut cfg = EmuConfig::qemu();
        cfg.ecap = cfg.ecap.with_qi(false);
        let m = Machine::new(cfg);
        let mut dma = m.domain(DmaConfig::lazy());
        dma.attach(NIC).unwrap();
        let iova = dma.map(PhysAddr::new(0x20_0000), 8, Direction::Bidirectional).unwrap();
        assert_eq!(m.dma(NIC, iova, Access::Read), Some(PhysAddr::new(0x20_0000)));
        dma.unmap(iova, 8).unwrap();
        dma.flush().unwrap();
        assert_eq!(m.dma(NIC, iova, Access::Read), None);
        let s = dma.stats().invalidator;
        assert!(s.register_commands > 0 && s.tail_writes == 0, "{s:?}");
    });
}

#[test]
fn shut_down_gives_everything_back() {
    on_big_stack(|| {
        let m = Machine::new(EmuConfig::qemu());
        let mut dma = m.domain(DmaConfig::optimistic());
        dma.attach(NIC).unwrap();
        dma.attach(USB).unwrap();
        for i in 0..300u64 {
            let iova = dma.map(PhysAddr::new(i << 12), 100, Direction::FromDevice).unwrap();
            dma.unmap(iova, 100).unwrap();
        }
        std::thread::sleep(Duration::from_millis(11));
        dma.poll().unwrap();
        let unit = dma.shut_down().unwrap();
        assert!(!unit.status().contains(GlobalBits::TE) && unit.queue().is_none());
        assert_eq!(m.frames.in_use(), 0, "tables and queue freed");
        // Translation is off: the unit passes requests through untranslated.
        let anywhere = Iova::new(0x12_3000);
        assert_eq!(m.dma(USB, anywhere, Access::Read), Some(PhysAddr::new(0x12_3000)));
    });
}
