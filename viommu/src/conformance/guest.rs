//! The guest the conformance checks play: its own root, context and
//! second-level tables in its RAM (built with `vtd-tables`), its registers
//! written as a driver writes them, its invalidation queue filled by hand,
//! descriptor by descriptor, so each check chooses exactly what the guest
//! sends (aligned or not, with or without IH, drains, waits).

use vtd_emu::SimFrameAllocator;
use vtd_regs::desc::{ContextCacheInv, Descriptor, IotlbInv, RawDescriptor, WaitDesc};
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{GlobalBits, Gsts, Iqa, Iqt, Rtaddr};
use vtd_regs::{
    ContextScope, DomainId, Drain, FrameAllocator, IotlbScope, Iova, Mmio, PAGE_SIZE, PhysAddr,
    SourceId,
};
use vtd_tables::{ContextManager, Perm, SlPageTable, TableConfig};

use crate::guest_mem::GuestRam;
use crate::host::HostIommu;
use crate::viommu::Viommu;

/// The domain id the guest puts its device in.
pub const GUEST_DOMAIN: DomainId = DomainId::new(3);

/// A guest driver over its vIOMMU `v`, with tables from `frames`.
pub struct Guest<'a, R: GuestRam + Clone, B: HostIommu> {
    pub(crate) v: &'a Viommu<R, B>,
    pub(crate) mem: R,
    pub(crate) frames: &'a SimFrameAllocator<R>,
    pub(crate) table: SlPageTable<R, &'a SimFrameAllocator<R>>,
    pub(crate) contexts: ContextManager<R, &'a SimFrameAllocator<R>>,
    /// The queue's base and the next slot.
    queue: Option<(PhysAddr, usize)>,
    /// Where wait descriptors write their status, and the last value.
    status: PhysAddr,
    sequence: u32,
}

impl<'a, R: GuestRam + Clone, B: HostIommu> Guest<'a, R, B> {
    /// A guest whose device `device` is attached to [`GUEST_DOMAIN`] in
    /// its context table; its unit untouched (translation off).
    pub fn new(
        v: &'a Viommu<R, B>,
        mem: R,
        frames: &'a SimFrameAllocator<R>,
        device: SourceId,
    ) -> Self {
        let cfg = v.unit().config();
        let tables = TableConfig::from_cap(cfg.cap, 39).expect("a 39-bit table");
        let table = SlPageTable::new(mem.clone(), frames, tables).expect("guest frames");
        let mut contexts = ContextManager::new(mem.clone(), frames).expect("guest frames");
        let _ = contexts.attach(device, GUEST_DOMAIN, &table).expect("guest frames");
        let status = frames.allocate(0).expect("guest frames");
        Self { v, mem, frames, table, contexts, queue: None, status, sequence: 0 }
    }

    /// The guest's register page.
    fn regs(&self) -> &'a Viommu<R, B> {
        self.v
    }

    /// Writes GCMD with `bit` switched `on` (other enables kept, as Linux
    /// keeps `iommu->gcmd`) and waits for GSTS to show it.
    pub fn command(&self, bit: GlobalBits, on: bool) {
        let mut r = self.regs();
        let status = Gsts(r.read32(vtd_regs::regs::offset::GSTS));
        r.write_reg(GlobalBits::command(status, bit, on));
        let now = Gsts(r.read32(vtd_regs::regs::offset::GSTS));
        assert_eq!(now.contains(bit), on || GlobalBits::ONE_SHOT.contains(bit), "{bit:?}");
    }

    /// Queued invalidation on, with a one-page queue whose IQA has `extra`
    /// address bits ORed in (bits the unit ignores, or not).
    pub fn enable_queue(&mut self, extra: u64) {
        let mut r = self.regs();
        let queue = self.frames.allocate(0).expect("guest frames");
        self.mem.zero_frame(queue).expect("guest RAM");
        r.write_reg(Iqt(0));
        let qs = QueueSize::from_order(0).expect("one page");
        let iqa = Iqa::new(PhysAddr::new(queue.as_u64() | extra), qs, DescriptorWidth::Bits128);
        r.write_reg(iqa);
        self.command(GlobalBits::QIE, true);
        self.queue = Some((queue, 0));
    }

    /// Root table, queued invalidation (see
    /// [`enable_queue`](Self::enable_queue)), translation on, then a global
    /// context and IOTLB invalidation: the guest's device translates
    /// through its table.
    pub fn bring_up_with_queue_at(&mut self, extra: u64) {
        let mut r = self.regs();
        r.write_reg(Rtaddr::new(self.contexts.root_table(), TranslationTableMode::Legacy));
        self.command(GlobalBits::SRTP, true);
        self.enable_queue(extra);
        self.command(GlobalBits::TE, true);
        let context = Descriptor::from(ContextCacheInv { scope: ContextScope::Global });
        let iotlb = Descriptor::from(IotlbInv { scope: IotlbScope::Global, drain: Drain::empty() });
        assert!(self.submit(&[context.encode(), iotlb.encode()]), "bring-up completes");
    }

    /// [`bring_up_with_queue_at`](Self::bring_up_with_queue_at) with no
    /// extra address bits.
    pub fn bring_up(&mut self) {
        self.bring_up_with_queue_at(0)
    }

    /// The slot the next descriptor goes to.
    pub fn next_slot(&self) -> PhysAddr {
        let (base, tail) = self.queue.expect("queued invalidation on");
        PhysAddr::new(base.as_u64() + tail as u64 * 16)
    }

    /// Writes `descs` at the tail, then a wait descriptor with a status
    /// write, moves the tail; returns whether the wait's status arrived
    /// (every descriptor before it completed).
    pub fn submit(&mut self, descs: &[RawDescriptor]) -> bool {
        self.sequence = self.sequence.wrapping_add(1);
        let wait = WaitDesc::NONE.with_status_write(self.status, self.sequence).expect("aligned");
        for d in descs.iter().copied().chain([Descriptor::from(wait).encode()]) {
            let at = self.next_slot();
            self.mem.write_bytes(at, &d.to_le_bytes()).expect("guest RAM");
            let (base, tail) = self.queue.expect("queued invalidation on");
            self.queue = Some((base, (tail + 1) % 256));
        }
        let (_, tail) = self.queue.expect("queued invalidation on");
        self.regs().write_reg(Iqt::from_index(tail, DescriptorWidth::Bits128));
        self.completed()
    }

    /// Whether the last wait's status arrived.
    pub fn completed(&self) -> bool {
        self.mem.read_u32(self.status) == Ok(self.sequence)
    }

    /// An IOTLB invalidation of `pages` pages from `iova` of the guest's
    /// domain as Linux before 6.9 sends it (`iommu_flush_iotlb_psi`): the
    /// mask of the page count rounded up to a power of two, widened until
    /// the aligned block covers the range when the address is not aligned
    /// to it, and the address itself not aligned down (hardware ignores
    /// the bits below the mask).
    pub fn psi(iova: Iova, pages: u64, ih: bool) -> RawDescriptor {
        let pfn = iova.page_number();
        let bitmask = pages.next_power_of_two() - 1;
        let mut am = u64::from(bitmask.count_ones());
        if pfn & bitmask != 0 {
            let shared = !(pfn ^ (pfn + pages - 1)) & !bitmask;
            am = u64::from(shared.trailing_zeros());
        }
        let qw0 = 0x32 | u64::from(GUEST_DOMAIN.raw()) << 16;
        RawDescriptor::new(qw0, iova.as_u64() & !0xfff | u64::from(ih) << 6 | am)
    }

    /// Maps `[iova, iova + len)` to `[gpa, gpa + len)` in the guest's table
    /// and invalidates it (caching mode); returns whether it completed.
    pub fn map(&mut self, iova: Iova, gpa: PhysAddr, len: u64, perm: Perm) -> bool {
        self.table.map_range(iova, gpa, len, perm).expect("guest table");
        self.submit(&[Self::psi(iova, len / PAGE_SIZE, false)])
    }

    /// Unmaps `[iova, iova + len)` from the guest's table, invalidates it
    /// (IH set) and releases the table frames; returns whether it
    /// completed.
    pub fn unmap(&mut self, iova: Iova, len: u64) -> bool {
        let token = self.table.unmap_range(iova, len).expect("guest table");
        let done = self.submit(&[Self::psi(iova, len / PAGE_SIZE, true)]);
        self.table.release(token).expect("own table");
        done
    }
}
