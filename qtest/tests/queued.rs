//! Queued invalidation on QEMU's VT-d (§6.5.2): descriptors encoded by
//! `vtd_regs::desc`, submitted through `RemappingUnit`'s queue registers.
//! A page-selective IOTLB descriptor ends a stale translation, a wait
//! descriptor writes its status, and a descriptor with a reserved bit set
//! stops the queue with FSTS.IQE until software recovers.

mod common;

use common::{DID, Guest, pattern, start};
use viommu_qtest::IommuOptions;
use vtd_regs::desc::{IotlbInv, WaitDesc};
use vtd_regs::regs::{DescriptorWidth, FaultType, Iqa, QueueErrorInfo, QueueSize};
use vtd_regs::{
    ContextScope, Descriptor, Drain, FaultReason, IotlbScope, Iova, PAGE_SIZE, PhysAddr, PhysMem,
    RawDescriptor, UnitError,
};
use vtd_tables::Perm;

const IOVA: Iova = Iova::new(0x4000_0000);
const WIDTH: DescriptorWidth = DescriptorWidth::Bits128;
const PAGE: usize = PAGE_SIZE as usize;
/// How many times the status word is read before giving up.
const POLLS: usize = 1000;

/// A one-page invalidation queue in guest RAM.
struct Queue {
    base: PhysAddr,
    tail: usize,
}

impl Queue {
    fn enable(g: &mut Guest<'_>) -> Self {
        let base = g.page();
        let iqa = Iqa::new(base, QueueSize::from_order(0).unwrap(), WIDTH);
        g.unit.enable_queued_invalidation(iqa).unwrap();
        Queue { base, tail: 0 }
    }

    /// Writes `raw` into the next slot (not yet handed to the unit).
    fn push_raw(&mut self, g: &Guest<'_>, raw: RawDescriptor) {
        let slot = PhysAddr::new(self.base.as_u64() + (self.tail * WIDTH.bytes()) as u64);
        g.mem.write_bytes(slot, &raw.to_le_bytes()).unwrap();
        self.tail += 1;
    }

    fn push(&mut self, g: &Guest<'_>, d: impl Into<Descriptor>) {
        let mut slot = [0u8; 16];
        d.into().write(WIDTH, &mut slot).unwrap();
        self.push_raw(g, RawDescriptor::from_le_bytes(slot));
    }

    /// Queues `d` and a wait descriptor writing `token` to `status`, hands
    /// both to the unit and waits for the status write.
    fn submit_and_wait(&mut self, g: &mut Guest<'_>, d: impl Into<Descriptor>, token: u32) {
        let status = self.status_word();
        g.mem.write_u32(status, 0).unwrap();
        self.push(g, d);
        self.push(g, WaitDesc::NONE.with_status_write(status, token).unwrap());
        g.unit.write_queue_tail(self.tail).unwrap();
        let done = (0..POLLS).any(|_| g.mem.read_u32(status).unwrap() == token);
        assert!(done, "wait descriptor status {token:#x} never written");
        assert_eq!(g.unit.queue_head().unwrap(), self.tail);
    }

    /// A status word in the queue page's last slot, which the tests never
    /// reach.
    fn status_word(&self) -> PhysAddr {
        PhysAddr::new(self.base.as_u64() + PAGE_SIZE - 16)
    }
}

fn page_scope(iova: Iova) -> IotlbInv {
    IotlbInv { scope: IotlbScope::pages(DID, iova, 0, false).unwrap(), drain: Drain::empty() }
}

#[test]
fn page_selective_descriptor_ends_a_stale_translation() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    let page = g.page();
    g.map(IOVA, page, Perm::READ_WRITE);
    g.enable();
    let mut q = Queue::enable(&mut g);
    g.mem.write_bytes(page, &pattern(4, PAGE)).unwrap();

    // Cache the translation, unmap: the stale entry still serves.
    g.edu.read_memory(IOVA, 0, 64).unwrap();
    let owed = g.unmap(IOVA);
    g.edu.write_memory(0, Iova::new(IOVA.as_u64() + 0x400), 64).unwrap();
    let mut out = vec![0; 64];
    g.mem.read_bytes(PhysAddr::new(page.as_u64() + 0x400), &mut out).unwrap();
    assert_eq!(out, pattern(4, PAGE)[..64]);
    g.assert_no_fault();

    // While the queue is on, register-based invalidation is not allowed.
    assert_eq!(
        g.unit.invalidate_iotlb(IotlbScope::Global, Drain::empty()),
        Err(UnitError::QueuedInvalidationEnabled)
    );
    assert_eq!(
        g.unit.invalidate_context(ContextScope::Global),
        Err(UnitError::QueuedInvalidationEnabled)
    );

    // A descriptor for another page changes nothing...
    q.submit_and_wait(&mut g, page_scope(Iova::new(IOVA.as_u64() + PAGE_SIZE)), 0x1111);
    g.edu.write_memory(0, IOVA, 64).unwrap();
    g.assert_no_fault();
    // ...the one for this page ends the translation.
    q.submit_and_wait(&mut g, page_scope(IOVA), 0x2222);
    g.table.release(owed).unwrap();
    g.edu.write_memory(0, IOVA, 64).unwrap();
    g.assert_fault(FaultType::Write, FaultReason::WriteNotPermitted, IOVA);
    assert!(g.unit.take_queue_error().is_none());
    qemu.check().unwrap();
}

#[test]
fn reserved_bit_stops_the_queue_until_recovery() {
    let qemu = start(&IommuOptions::default());
    let mut g = Guest::new(&qemu);
    let page = g.page();
    g.map(IOVA, page, Perm::READ_WRITE);
    g.enable();
    let mut q = Queue::enable(&mut g);
    q.submit_and_wait(&mut g, page_scope(IOVA), 0x1);

    // A global IOTLB descriptor with reserved bit 8 of quadword 0 set.
    let good = Descriptor::from(IotlbInv { scope: IotlbScope::Global, drain: Drain::empty() });
    let bad = good.encode();
    let bad = RawDescriptor::new(bad.qw0() | 1 << 8, bad.qw1());
    let at = q.tail;
    q.push_raw(&g, bad);
    g.unit.write_queue_tail(q.tail).unwrap();

    let err = g.unit.take_queue_error().expect("FSTS.IQE");
    // QEMU (VER 1.0) has no IQERCD: it reads as 0, "no detail".
    assert!(
        matches!(err.queue, Some(QueueErrorInfo::NotAvailable | QueueErrorInfo::ReservedField)),
        "{err:?}"
    );
    assert_eq!(err.head.index(WIDTH), at);
    assert_eq!(g.unit.queue_head().unwrap(), at);

    // Recovery: drop the bad descriptor (IQT = IQH; the error is cleared),
    // then the queue runs again from there.
    q.tail = at;
    g.unit.write_queue_tail(q.tail).unwrap();
    q.submit_and_wait(&mut g, good, 0x2);
    assert!(g.unit.take_queue_error().is_none());
    qemu.check().unwrap();
}
