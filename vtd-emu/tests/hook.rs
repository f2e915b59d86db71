//! The hook (`vtd_emu::hook`): the unit tells its embedder what it
//! executes, decoded once, before it completes; and a stalled invalidation
//! holds the queue or the register command back without an error.

use vtd_emu::hook::{Change, Hook, Invalidation, Outcome, UnitView};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::desc::{
    ContextCacheInv, IecInv, IecScope, IotlbInv, Pasid, PasidCacheInv, PasidCacheScope,
    PasidDevTlbInv, PasidIotlbInv, PasidIotlbScope, RawDescriptor, WaitDesc,
};
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{Ccmd, Gcmd, GlobalBits, Iqa, Iqh, Iqt, Irta, Rtaddr};
use vtd_regs::{
    ContextScope, Descriptor, DomainId, Drain, FrameAllocator, IotlbScope, Iova, Mmio, PhysAddr,
    PhysMem,
};

/// What the hook saw, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Inv(Invalidation),
    Change(Change),
}

/// Records what it sees; reads the wait status word when told of an
/// invalidation (to show the wait after it has not completed yet); stalls
/// while `stall` is set.
#[derive(Default)]
struct Recorder {
    seen: Vec<Seen>,
    status_at_invalidation: Vec<u32>,
    stall: bool,
}

const STATUS: PhysAddr = PhysAddr::new(0x9000);

impl<M: PhysMem> Hook<M> for Recorder {
    fn invalidate(&mut self, unit: &UnitView<'_, M>, inv: Invalidation) -> Outcome {
        if self.stall {
            return Outcome::Stall;
        }
        self.status_at_invalidation.push(unit.memory().read_u32(STATUS).unwrap());
        self.seen.push(Seen::Inv(inv));
        Outcome::Complete
    }

    fn changed(&mut self, _unit: &UnitView<'_, M>, change: Change) {
        self.seen.push(Seen::Change(change));
    }
}

type Emu = Emulator<&'static HeapMemory, 64, 16, Recorder>;

struct Rig {
    mem: &'static HeapMemory,
    emu: Emu,
    queue: Iqa,
}

fn rig(cfg: EmuConfig) -> Rig {
    let mem: &'static HeapMemory = Box::leak(Box::new(HeapMemory::new(1 << 20)));
    let emu = Emulator::with_hook(mem, cfg, Recorder::default()).unwrap();
    let frames = SimFrameAllocator::new(mem, PhysAddr::new(0x10000), PhysAddr::new(1 << 20));
    let base = frames.allocate(0).unwrap();
    let queue = Iqa::new(base, QueueSize::from_order(0).unwrap(), DescriptorWidth::Bits128);
    let r = Rig { mem, emu, queue };
    assert_eq!(r.seen(), [Seen::Change(Change::Reset)], "told of the reset state once");
    r
}

impl Rig {
    fn seen(&self) -> Vec<Seen> {
        self.emu.with_hook_mut(|h| std::mem::take(&mut h.seen))
    }

    fn post(&self, slot: usize, d: RawDescriptor) {
        let at = PhysAddr::new(self.queue.base().as_u64() + slot as u64 * 16);
        self.mem.write_bytes(at, &d.to_le_bytes()).unwrap();
    }

    fn enable_queue(&self) {
        let mut e = &self.emu;
        e.write_reg(Iqt(0));
        e.write_reg(self.queue);
        e.write_reg(Gcmd::from_bits(GlobalBits::QIE));
    }
}

fn iotlb(scope: IotlbScope) -> RawDescriptor {
    Descriptor::from(IotlbInv { scope, drain: Drain::empty() }).encode()
}

fn wait(data: u32) -> RawDescriptor {
    Descriptor::from(WaitDesc::NONE.with_status_write(STATUS, data).unwrap()).encode()
}

#[test]
fn queued_invalidations_reach_the_hook_before_the_wait_completes() {
    let r = rig(EmuConfig::qemu());
    r.enable_queue();
    assert_eq!(r.seen(), [Seen::Change(Change::QueuedInvalidation(true))]);
    let page = IotlbScope::pages(DomainId::new(3), Iova::new(0x5000), 0, true).unwrap();
    let device = ContextScope::Device {
        domain: DomainId::new(0),
        source: vtd_regs::SourceId::from_raw(8),
        function_mask: vtd_regs::FunctionMask::None,
    };
    r.post(0, Descriptor::from(ContextCacheInv { scope: device }).encode());
    r.post(1, iotlb(page));
    // Linux 6.1's unaligned PSI: decoded once, as hardware does.
    r.post(2, RawDescriptor::new(0x400f2, 0x203003));
    r.post(3, Descriptor::from(IecInv { scope: IecScope::entries(0x40, 2).unwrap() }).encode());
    r.post(4, wait(7));
    (&r.emu).write_reg(Iqt::from_index(5, DescriptorWidth::Bits128));
    let block = IotlbScope::pages(DomainId::new(4), Iova::new(0x20_0000), 3, false).unwrap();
    assert_eq!(
        r.seen(),
        [
            Seen::Inv(Invalidation::ContextCache(device)),
            Seen::Inv(Invalidation::Iotlb(page)),
            Seen::Inv(Invalidation::Iotlb(block)),
            Seen::Inv(Invalidation::InterruptEntries(IecScope::entries(0x40, 2).unwrap())),
        ]
    );
    // The wait's status was written only after every invalidation.
    assert_eq!(r.emu.with_hook_mut(|h| h.status_at_invalidation.clone()), [0, 0, 0, 0]);
    assert_eq!(r.mem.read_u32(STATUS).unwrap(), 7);
}

#[test]
fn the_hook_sees_the_scope_the_unit_performs() {
    // A unit with 8-bit domain ids and no page-selective invalidation: a
    // page request is performed domain-selective, domain ids are cut.
    let mut cfg = EmuConfig::qemu();
    cfg.cap = cfg.cap.with_nd(vtd_regs::regs::DomainBits::from_field(2)).with_psi(false);
    let r = rig(cfg);
    r.enable_queue();
    r.seen();
    let page = IotlbScope::pages(DomainId::new(0x1203), Iova::new(0x5000), 0, false).unwrap();
    r.post(0, iotlb(page));
    (&r.emu).write_reg(Iqt::from_index(1, DescriptorWidth::Bits128));
    assert_eq!(r.seen(), [Seen::Inv(Invalidation::Iotlb(IotlbScope::Domain(DomainId::new(3))))]);
    // An address mask beyond MAMV is refused before the hook sees it.
    let r = rig(EmuConfig::qemu());
    r.enable_queue();
    r.seen();
    r.post(0, iotlb(IotlbScope::pages(DomainId::new(1), Iova::new(0), 19, false).unwrap()));
    (&r.emu).write_reg(Iqt::from_index(1, DescriptorWidth::Bits128));
    assert!(r.emu.fault_status().iqe());
    assert_eq!(r.seen(), []);
}

#[test]
fn register_commands_and_state_changes_reach_the_hook() {
    let r = rig(EmuConfig::qemu());
    let mut e = &r.emu;
    e.write_reg(Rtaddr::new(PhysAddr::new(0x3000 | 1 << 45), TranslationTableMode::Legacy));
    e.write_reg(Gcmd::from_bits(GlobalBits::SRTP));
    e.write_reg(Gcmd::from_bits(GlobalBits::TE));
    e.write_reg(Irta::new(PhysAddr::new(0x4000), 7, false));
    e.write_reg(Gcmd::from_bits(GlobalBits::TE | GlobalBits::SIRTP));
    e.write_reg(Gcmd::from_bits(GlobalBits::TE | GlobalBits::IRE));
    let mut unit = vtd_regs::RemappingUnit::new(&r.emu).unwrap();
    unit.invalidate_context(ContextScope::Domain(DomainId::new(5))).unwrap();
    let page = IotlbScope::pages(DomainId::new(5), Iova::new(0x8000), 1, false).unwrap();
    unit.invalidate_iotlb(page, Drain::empty()).unwrap();
    let root = Rtaddr::new(PhysAddr::new(0x3000), TranslationTableMode::Legacy);
    assert_eq!(
        r.seen(),
        [
            Seen::Change(Change::RootTable(root)),
            Seen::Change(Change::Translation(true)),
            Seen::Change(Change::InterruptTable(Irta::new(PhysAddr::new(0x4000), 7, false))),
            Seen::Change(Change::InterruptRemapping(true)),
            Seen::Inv(Invalidation::ContextCache(ContextScope::Domain(DomainId::new(5)))),
            Seen::Inv(Invalidation::Iotlb(page)),
        ]
    );
}

#[test]
fn a_stalled_invalidation_holds_the_queue_until_it_completes() {
    let r = rig(EmuConfig::qemu());
    r.enable_queue();
    r.seen();
    r.post(0, iotlb(IotlbScope::Global));
    r.post(1, wait(9));
    r.emu.with_hook_mut(|h| h.stall = true);
    (&r.emu).write_reg(Iqt::from_index(2, DescriptorWidth::Bits128));
    // No error, no progress, no completion.
    assert!(!r.emu.fault_status().iqe());
    assert_eq!(r.emu.read_reg::<Iqh>(), Iqh(0));
    assert_eq!(r.mem.read_u32(STATUS).unwrap(), 0);
    assert_eq!(r.emu.process(), Iqh(0));
    r.emu.with_hook_mut(|h| h.stall = false);
    assert_eq!(r.emu.process(), Iqh::from_index(2, DescriptorWidth::Bits128));
    assert_eq!(r.mem.read_u32(STATUS).unwrap(), 9);
    assert_eq!(r.seen(), [Seen::Inv(Invalidation::Iotlb(IotlbScope::Global))]);
}

#[test]
fn a_stalled_register_command_stays_pending_until_polled() {
    let r = rig(EmuConfig::qemu());
    r.emu.with_hook_mut(|h| h.stall = true);
    let mut e = &r.emu;
    e.write_reg(Ccmd::invalidate(ContextScope::Global));
    assert!(e.read_reg::<Ccmd>().icc(), "still pending");
    r.emu.with_hook_mut(|h| h.stall = false);
    // Software polling ICC sees it done once the hook lets it complete.
    let done = e.read_reg::<Ccmd>();
    assert!(!done.icc());
    assert_eq!(done.caig(), Some(vtd_regs::Granularity::Global));
    assert_eq!(r.seen(), [Seen::Inv(Invalidation::ContextCache(ContextScope::Global))]);
}

#[test]
fn pasid_based_invalidations_reach_the_hook_as_performed() {
    // A scalable-mode unit with 8-bit domain ids and a 256-bit queue.
    let mut cfg = EmuConfig::scalable();
    cfg.cap = cfg.cap.with_nd(vtd_regs::regs::DomainBits::from_field(2));
    let mut r = rig(cfg);
    r.queue = Iqa::new(r.queue.base(), QueueSize::from_order(0).unwrap(), DescriptorWidth::Bits256);
    r.enable_queue();
    r.seen();
    let pasid = Pasid::new(0x12345).unwrap();
    let pc =
        PasidCacheInv { scope: PasidCacheScope::Pasid { domain: DomainId::new(0x105), pasid } };
    let pages = PasidIotlbScope::pages(Iova::new(0x4000), 2, true).unwrap();
    let pi = PasidIotlbInv { domain: DomainId::new(0x207), pasid, scope: pages };
    let wide = [Descriptor::from(pc), Descriptor::from(pi), Descriptor::from(WaitDesc::NONE)];
    for (slot, d) in wide.into_iter().enumerate() {
        let at = PhysAddr::new(r.queue.base().as_u64() + slot as u64 * 32);
        r.mem.write_bytes(at, &d.encode_wide().to_le_bytes()).unwrap();
    }
    (&r.emu).write_reg(Iqt::from_index(3, DescriptorWidth::Bits256));
    assert!(!r.emu.fault_status().iqe());
    let cut_pc = PasidCacheScope::Pasid { domain: DomainId::new(5), pasid };
    assert_eq!(
        r.seen(),
        [
            Seen::Inv(Invalidation::PasidCache(cut_pc)),
            Seen::Inv(Invalidation::PasidIotlb(PasidIotlbInv { domain: DomainId::new(7), ..pi })),
        ]
    );
}

#[test]
fn a_device_tlb_times_out_a_pasid_based_invalidation_too() {
    let mut cfg = EmuConfig::scalable();
    cfg.ecap = cfg.ecap.with_device_tlb(true);
    let mut r = rig(cfg);
    r.queue = Iqa::new(r.queue.base(), QueueSize::from_order(0).unwrap(), DescriptorWidth::Bits256);
    r.enable_queue();
    r.seen();
    let sid = vtd_regs::SourceId::from_raw(0x10);
    assert!(r.emu.set_device_tlb_response(sid, vtd_emu::DevTlbResponse::TimeOut));
    let inv = PasidDevTlbInv {
        sid,
        pfsid: sid,
        pasid: Pasid::new(5).unwrap(),
        max_pending: 0,
        global: false,
        range: vtd_regs::desc::AtsRange::page(Iova::new(0x3000)),
    };
    let at = r.queue.base();
    r.mem.write_bytes(at, &Descriptor::from(inv).encode_wide().to_le_bytes()).unwrap();
    (&r.emu).write_reg(Iqt::from_index(1, DescriptorWidth::Bits256));
    assert!(r.emu.fault_status().ite(), "ITE");
    assert_eq!(r.seen(), [Seen::Inv(Invalidation::PasidDevTlb(inv))]);
}
