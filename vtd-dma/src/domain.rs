//! [`DmaDomain`]: one remapping unit and one domain, brought up, with the
//! devices attached to it and the buffers mapped for them.

use heapless::Vec;
use invalidation::{FlushStats, Invalidation, Invalidator, InvalidatorCounters, UnitInvalidator};
use iommu_platform::{FrameAllocator, PAGE_SHIFT, PAGE_SIZE, PhysMem, Platform, Storage};
use iova_alloc::{IovaRange, IovaTree, Window};
use teardown::{Capacity, Fixed, Mapper, MapperConfig, MapperCounters, NoPinning};
use vtd_regs::{DomainId, Iova, Mmio, PhysAddr, RemappingUnit, SourceId};
use vtd_tables::{ContextManager, Perm, SlPageTable, TableConfig};

use crate::config::{Direction, DmaConfig};
use crate::dmar::{DmarUnit, MAX_DEVICES, MAX_REGIONS};
use crate::{Error, Result};

/// The interrupt (MSI) address window, which DMA addresses must never
/// alias: `0xFEE0_0000..=0xFEEF_FFFF` (VT-d §3.15, §5.1).
const MSI_WINDOW: (u64, u64) = (0xFEE0_0000 >> PAGE_SHIFT, 0xFEEF_FFFF >> PAGE_SHIFT);

/// The widest IOVA space a domain gets by default: a 4-level table.
const DEFAULT_WIDTH: u8 = 48;

/// The mapping layer of a domain on platform `P` with unit registers `R`.
type DomainMapper<P, R, K> =
    Mapper<P, IovaTree<<K as Capacity>::Nodes>, UnitInvalidator<R, <P as Platform>::Mem>, K>;

/// Coherent memory ([`DmaDomain::alloc_coherent`]): zeroed frames mapped
/// read-write for the device, until given back with
/// [`DmaDomain::free_coherent`]. The CPU reaches it through the platform's
/// memory at [`phys`](Self::phys); the device at [`iova`](Self::iova).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "coherent memory is given back with free_coherent"]
pub struct Coherent {
    phys: PhysAddr,
    iova: Iova,
    len: u64,
    order: u8,
}

impl Coherent {
    /// Where the CPU reaches it.
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }
    /// Where the device reaches it.
    pub fn iova(&self) -> Iova {
        self.iova
    }
    /// Its length in bytes, as asked.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether it is empty (never: `alloc_coherent` refuses 0 bytes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a domain has done: the mapping layer's counters, the flush
/// queue's, and the invalidator's (each queue tail write is a VM exit under
/// an emulated IOMMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaStats {
    /// Maps, unmaps, reuse hits, teardowns, table updates.
    pub mapper: MapperCounters,
    /// Unmaps queued, batches posted, waits.
    pub flush: FlushStats,
    /// Descriptors, queue tail writes, register commands.
    pub invalidator: InvalidatorCounters,
}

/// The DMA API of one VT-d remapping unit and one domain: what a driver
/// holds to give its devices DMA access to memory, and nothing more.
///
/// - Bring-up: [`from_dmar`](Self::from_dmar) finds the unit a device is
///   behind in the DMAR table; [`new`](Self::new) takes a unit's registers.
///   Either takes the unit over (translation and queued invalidation off),
///   builds the root, context and domain tables, and turns remapping on
///   with the queue (or the registers, on units without one).
/// - Devices: [`attach`](Self::attach) and [`detach`](Self::detach), with
///   the invalidations they owe done inside (under caching mode too); the
///   reserved regions (RMRRs) of a device are identity-mapped when it
///   attaches, and never handed out as IOVAs.
/// - Buffers: [`map`](Self::map) / [`unmap`](Self::unmap) (Linux's
///   `dma_map_single`), [`map_sg`](Self::map_sg) /
///   [`unmap_sg`](Self::unmap_sg) into one contiguous IOVA range
///   (`iommu_dma_map_sg`), [`alloc_coherent`](Self::alloc_coherent) /
///   [`free_coherent`](Self::free_coherent).
///
/// Under the hood it is a [`teardown::Mapper`] with the reuse and flush
/// policies of the [`DmaConfig`]: an unmapped buffer's IOVA is handed out
/// again only after the invalidation covering it completed. Call
/// [`poll`](Self::poll) from a timer to bound deferred invalidation and
/// stale mappings in time.
///
/// The driver names the platform `P` and the register access `R` (`K`, the
/// capacities, defaults to 1024 mappings and 256 pending teardowns).
///
/// ```
/// use iommu_platform::StdClock; // `vtd_dma::StdClock` with the `std` feature
/// use vtd_dma::{Direction, DmaConfig, DmaDomain, PhysAddr, SourceId};
/// use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator, mem::HeapMemory};
///
/// // The platform: RAM, frames for tables, a clock; and a software VT-d.
/// let ram = HeapMemory::new(8 << 20);
/// let frames = SimFrameAllocator::new(&ram, PhysAddr::new(4 << 20), PhysAddr::new(8 << 20));
/// let unit = Emulator::new(&ram, EmuConfig::qemu()).unwrap();
///
/// let mut dma = DmaDomain::new((&ram, &frames, StdClock::new()), &unit, DmaConfig::optimistic())?;
/// let nic = SourceId::new(0, 1, 0).unwrap();
/// dma.attach(nic)?;
/// let iova = dma.map(PhysAddr::new(0x10_0000), 1500, Direction::FromDevice)?;
/// // ... the NIC writes a frame at `iova` ...
/// dma.unmap(iova, 1500)?;
/// assert_eq!(dma.map(PhysAddr::new(0x10_0000), 1500, Direction::FromDevice)?, iova); // reused
/// # Ok::<(), vtd_dma::Error>(())
/// ```
pub struct DmaDomain<P: Platform, R: Mmio, K: Capacity = Fixed> {
    mapper: DomainMapper<P, R, K>,
    contexts: ContextManager<P::Mem, P::Frames>,
    unit: DmarUnit,
    /// Which of the unit's reserved regions are identity-mapped.
    regions_mapped: [bool; MAX_REGIONS],
    devices: Vec<SourceId, MAX_DEVICES>,
    domain: DomainId,
}

impl<P: Platform, R: Mmio> DmaDomain<P, R> {
    /// Brings up the unit behind `regs` (its register page) on `platform`
    /// with `config`, and an empty domain on it.
    ///
    /// # Errors
    /// As [`bring_up`](Self::bring_up).
    pub fn new(platform: P, regs: R, config: DmaConfig) -> Result<Self> {
        let unit = DmarUnit::from_parts(PhysAddr::ZERO, &[])?;
        Self::bring_up(platform, regs, unit, config, Fixed)
    }

    /// Brings up the unit the DMAR table `dmar` (VT-d §8) puts `device`
    /// behind: finds its DRHD, maps its registers with `map_registers` (the
    /// platform's: a kernel maps the page uncached), and keeps the reserved
    /// regions of its devices, which are identity-mapped when they attach.
    ///
    /// # Errors
    /// [`Error::Dmar`] and [`Error::NoUnitFor`] from the table,
    /// [`Error::NoRegisters`] if `map_registers` gives none, and those of
    /// [`bring_up`](Self::bring_up).
    pub fn from_dmar(
        platform: P,
        dmar: &[u8],
        device: SourceId,
        map_registers: impl FnOnce(PhysAddr) -> Option<R>,
        config: DmaConfig,
    ) -> Result<Self> {
        let unit = DmarUnit::for_device(dmar, device)?;
        let base = unit.register_base();
        let regs = map_registers(base).ok_or(Error::NoRegisters(base))?;
        Self::bring_up(platform, regs, unit, config, Fixed)
    }
}

impl<P: Platform, R: Mmio, K: Capacity> DmaDomain<P, R, K> {
    /// Brings up the unit behind `regs`, described by `unit` (its reserved
    /// regions), with capacities `capacity`:
    ///
    /// 1. checks `config` (before the hardware is touched);
    /// 2. takes the unit over: translation and queued invalidation off;
    /// 3. builds the domain's table (as wide as the unit's MGAW allows, at
    ///    most 48 bits, or `config.address_width`) and the root and context
    ///    tables, from the platform's frames;
    /// 4. turns remapping on: queue, root table, global context and IOTLB
    ///    invalidation, translation (Linux's order, §6.5, §10.4.4);
    /// 5. reserves the interrupt window and the reserved regions in the
    ///    IOVA space, which starts at page 1 (IOVA 0 is never handed out).
    ///
    /// # Errors
    /// [`Error::Map`] for a configuration the mapping layer cannot honour,
    /// [`Error::Unit`] if the unit does not answer, [`Error::Table`] and
    /// [`Error::Invalidation`] for the bring-up steps. A unit that failed
    /// after its root table was set keeps its tables (never freed while it
    /// may walk them).
    pub fn bring_up(
        platform: P,
        regs: R,
        unit: DmarUnit,
        config: DmaConfig,
        capacity: K,
    ) -> Result<Self> {
        let mapper_config = MapperConfig {
            reuse: config.reuse,
            flush: config.flush,
            domain: config.domain,
            dma_limit: config.dma_limit,
        };
        mapper_config.validate::<P::Clock>(capacity.pending().len())?;
        let mut hw = RemappingUnit::with_budget(regs, config.poll_budget)?;
        hw.disable_translation()?;
        hw.disable_queued_invalidation()?;
        let width = config.address_width.unwrap_or(hw.cap().mgaw().bits().min(DEFAULT_WIDTH));
        let (mem, frames) = (platform.mem(), platform.frames());
        let table =
            SlPageTable::new(mem.clone(), frames.clone(), TableConfig::from_cap(hw.cap(), width)?)?;
        let contexts = ContextManager::new(mem.clone(), frames.clone())?;
        let inv = UnitInvalidator::enable_remapping(
            hw,
            contexts.root_table(),
            mem,
            &frames,
            config.queue_size,
        )
        .map_err(|rejected| Error::Invalidation(rejected.error))?;
        let last_page = (1u64 << (width - PAGE_SHIFT as u8)) - 1;
        let mut space = IovaTree::new(Window::from_pages(1, last_page)?, capacity.nodes());
        reserve(&mut space, MSI_WINDOW)?;
        for r in unit.reserved_regions() {
            reserve(&mut space, (r.base().page_number(), r.limit().page_number()))?;
        }
        let mapper =
            Mapper::with_capacity(platform, table, space, inv, NoPinning, mapper_config, capacity)?;
        Ok(DmaDomain {
            mapper,
            contexts,
            unit,
            regions_mapped: [false; MAX_REGIONS],
            devices: Vec::new(),
            domain: config.domain,
        })
    }

    /// Attaches `device` to the domain: identity-maps its reserved regions,
    /// points its context entry at the domain's table, and performs the
    /// invalidation that owes (§6.5.3.3): of the old domain if it had one;
    /// for a first attach on a unit in caching mode, the device's cached
    /// not-present context (domain 0) and the domain's IOTLB (§6.1); else a
    /// write-buffer flush where CAP.RWBF asks for one. Attaching an
    /// attached device does nothing.
    ///
    /// # Errors
    /// [`Error::TooManyEntries`] beyond [`MAX_DEVICES`] devices, and the
    /// table's, mapping layer's and invalidation's errors.
    pub fn attach(&mut self, device: SourceId) -> Result<()> {
        if self.devices.contains(&device) {
            return Ok(());
        }
        if self.devices.is_full() {
            return Err(Error::TooManyEntries);
        }
        for (region, mapped) in self.unit.reserved_regions().iter().zip(&mut self.regions_mapped) {
            if !*mapped && region.devices().contains(&device) {
                let at = region.base();
                self.mapper.map_at(Iova::new(at.as_u64()), at, region.len(), Perm::READ_WRITE)?;
                *mapped = true;
            }
        }
        let change = self.contexts.attach(device, self.domain, self.mapper.table())?;
        let inv = self.mapper.invalidator();
        match change.previous {
            Some(old) => inv.invalidate(Invalidation::context_changed(device, old))?,
            None if inv.caps().caching_mode => {
                inv.invalidate(Invalidation::context_created(device, self.domain))?
            }
            None => inv.unit().write_buffer_flush()?,
        }
        self.devices.push(device).map_err(|_| Error::TooManyEntries)
    }

    /// Blocks `device` (clears its context entry) and waits until the unit
    /// forgot its context and the domain's translations it cached
    /// (§6.5.3.3). The domain's mappings stay.
    ///
    /// # Errors
    /// [`Error::NotAttached`], and the table's and invalidation's errors.
    pub fn detach(&mut self, device: SourceId) -> Result<()> {
        let at =
            self.devices.iter().position(|d| *d == device).ok_or(Error::NotAttached(device))?;
        let change = self.contexts.detach(device)?;
        if let Some(old) = change.previous {
            self.mapper.invalidator().invalidate(Invalidation::context_changed(device, old))?;
        }
        self.devices.swap_remove(at);
        Ok(())
    }

    /// Maps the buffer `[phys, phys + len)` for DMA in `direction` and
    /// returns the IOVA of `phys` (Linux's `dma_map_single`).
    ///
    /// # Errors
    /// [`Error::Map`]: an empty buffer, no IOVA left, the mapping layer
    /// full, a table or invalidation failure.
    #[inline]
    pub fn map(&mut self, phys: PhysAddr, len: u64, direction: Direction) -> Result<Iova> {
        Ok(self.mapper.map(phys, len, direction.perm())?)
    }

    /// Unmaps the buffer [`map`](Self::map) returned `iova` for, `len` as
    /// mapped. Its IOVA is handed out again only after the invalidation
    /// covering it completed (at once under strict invalidation).
    ///
    /// # Errors
    /// [`Error::Map`]: not mapped, a length that does not match, an
    /// invalidation failure.
    #[inline]
    pub fn unmap(&mut self, iova: Iova, len: u64) -> Result<()> {
        Ok(self.mapper.unmap(iova, len)?)
    }

    /// Maps the scatter-gather list `segments` (each `(phys, len)`) into one
    /// contiguous IOVA range for DMA in `direction`, each segment in the
    /// page after the one before, at its own page offset (Linux's
    /// `iommu_dma_map_sg`); returns the IOVA of the first byte, and
    /// [`teardown::sg_iova`] gives each segment's.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn map_sg(&mut self, segments: &[(PhysAddr, u64)], direction: Direction) -> Result<Iova> {
        Ok(self.mapper.map_sg(segments, direction.perm())?)
    }

    /// Unmaps what [`map_sg`](Self::map_sg) mapped at `iova` for the same
    /// `segments`.
    ///
    /// # Errors
    /// As [`unmap`](Self::unmap).
    pub fn unmap_sg(&mut self, iova: Iova, segments: &[(PhysAddr, u64)]) -> Result<()> {
        Ok(self.mapper.unmap_sg(iova, segments)?)
    }

    /// Allocates `len` bytes of zeroed memory from the platform's frames
    /// and maps them read-write for the domain's devices (Linux's
    /// `dma_alloc_coherent`). The CPU reaches it through the platform's
    /// memory ([`PhysMem`]), never through a Rust reference.
    ///
    /// # Errors
    /// [`Error::OutOfFrames`], [`Error::Memory`], or the mapping's.
    pub fn alloc_coherent(&mut self, len: u64) -> Result<Coherent> {
        if len == 0 {
            return Err(Error::Map(teardown::Error::Empty));
        }
        let pages = len.div_ceil(PAGE_SIZE);
        let order = u8::try_from(u64::BITS - (pages - 1).leading_zeros())
            .map_err(|_| Error::OutOfFrames)?;
        let frames = self.mapper.platform().frames();
        let phys = frames.allocate(order).ok_or(Error::OutOfFrames)?;
        let mem = self.mapper.platform().mem();
        let zeroed = (0..pages)
            .try_for_each(|p| mem.zero_frame(PhysAddr::new(phys.as_u64() + (p << PAGE_SHIFT))));
        let mapped = zeroed.map_err(Error::Memory).and_then(|()| {
            self.mapper.map_sg(&[(phys, len)], Perm::READ_WRITE).map_err(Error::Map)
        });
        match mapped {
            Ok(iova) => Ok(Coherent { phys, iova, len, order }),
            Err(e) => {
                frames.deallocate(phys, order);
                Err(e)
            }
        }
    }

    /// Unmaps coherent memory, waits until the invalidation that removes it
    /// completed, and gives its frames back: a device can never reach them
    /// once they are handed out again.
    ///
    /// # Errors
    /// The mapping's (the frames are then kept).
    pub fn free_coherent(&mut self, memory: Coherent) -> Result<()> {
        self.mapper.unmap_sg(memory.iova, &[(memory.phys, memory.len)])?;
        self.mapper.drain_pending()?;
        self.mapper.platform().frames().deallocate(memory.phys, memory.order);
        Ok(())
    }

    /// Reaps completed invalidations, posts the due ones, tears down stale
    /// mappings past their time limit. Call it from a timer so that the
    /// stale window is bounded in time even when no map or unmap comes.
    ///
    /// # Errors
    /// An invalidation failure.
    pub fn poll(&mut self) -> Result<()> {
        Ok(self.mapper.poll()?)
    }

    /// Tears down every stale mapping and completes every pending
    /// invalidation: afterwards the device reaches exactly the live
    /// mappings.
    ///
    /// # Errors
    /// An invalidation failure.
    pub fn flush(&mut self) -> Result<()> {
        Ok(self.mapper.flush()?)
    }

    /// What the domain has done.
    pub fn stats(&mut self) -> DmaStats {
        DmaStats {
            mapper: *self.mapper.counters(),
            flush: *self.mapper.flush_stats(),
            invalidator: *self.mapper.invalidator().counters(),
        }
    }

    /// The remapping unit, for what the DMA API does not wrap (its fault
    /// records: [`RemappingUnit::drain_faults`]).
    pub fn unit(&mut self) -> &mut RemappingUnit<R> {
        self.mapper.invalidator().unit()
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        self.mapper.platform()
    }

    /// The domain id.
    pub fn domain(&self) -> DomainId {
        self.domain
    }

    /// The devices attached.
    pub fn devices(&self) -> &[SourceId] {
        &self.devices
    }

    /// The unit as the DMAR table described it.
    pub fn dmar_unit(&self) -> &DmarUnit {
        &self.unit
    }

    /// The mapping layer, for its counters and table.
    pub fn mapper(&self) -> &DomainMapper<P, R, K> {
        &self.mapper
    }

    /// Hands the unit back: detaches every device, completes every
    /// invalidation, turns translation and queued invalidation off and frees
    /// the tables and the queue.
    ///
    /// # Errors
    /// The first failure; what was not shut down is left as it is (its
    /// memory is not freed while the unit may still read it).
    pub fn shut_down(mut self) -> Result<RemappingUnit<R>> {
        while let Some(&device) = self.devices.first() {
            self.detach(device)?;
        }
        self.mapper.flush()?;
        let frames = self.mapper.platform().frames();
        let (table, _space, mut inv, _) = self.mapper.into_parts();
        inv.unit().disable_translation()?;
        let unit = inv.shutdown(&frames).map_err(|(e, _)| Error::Invalidation(e))?;
        let _ = table.destroy();
        let _ = self.contexts.destroy();
        Ok(unit)
    }
}

/// Reserves pages `first..=last` of `space` where they lie in its window.
fn reserve<S: iova_alloc::Store<iova_alloc::Node>>(
    space: &mut IovaTree<S>,
    (first, last): (u64, u64),
) -> Result<()> {
    let window = space.window();
    let (first, last) = (first.max(window.base()), last.min(window.limit()));
    if first > last {
        return Ok(());
    }
    Ok(space.reserve(IovaRange::from_pages(first, last - first + 1)?)?)
}
