//! F&S-style strict protection on the software VT-d: buffers allocated in
//! order from a ring's contiguous IOVA region ([`IovaRing`],
//! [`IovaRings`]) and unmapped in batches ([`Mapper::unmap_batch`],
//! [`MapperHandle::unmap_batch`](teardown::MapperHandle::unmap_batch)),
//! each batch with one invalidation wait, checked against a reference
//! model by device accesses through the unit's IOTLB:
//! - after a batched unmap returns, no unmapped IOVA translates, and every
//!   buffer still mapped translates to its own pages;
//! - the invalidation hint (IH) is set only when no table frame was freed:
//!   a model of the unit's paging-structure caches (every non-leaf entry
//!   of the table before the batch, dropped by invalidations without the
//!   hint that cover its span, kept by those with it, VT-d §6.5.2.3) holds
//!   no freed frame once the batch has completed; and a batch that freed
//!   no frame invalidates with the hint only.
//!
//! The software VT-d caches leaf translations only (no paging-structure
//! caches), so the hint is checked against the model, not the unit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use invalidation::{FlushConfig, Invalidation, InvalidationCaps, Invalidator, Ticket};
use iommu_platform::{Inline, StdClock};
use iova_alloc::{IovaRange, IovaRing, IovaRings};
use proptest::prelude::*;
use teardown::SharedMapper;
use teardown::{Fixed, FlushScope, Mapper, MapperConfig, MapperHandle, NoPinning, Reuse};
use viommu_examples::{DEVICE, DOMAIN, Emu, Inv, Mem, Platform, Testbed};
use vtd_emu::EmuConfig;
use vtd_regs::{IotlbScope, Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::{Access, Perm, SharedSlTable, SlPte};

/// What the mappers asked of the unit.
#[derive(Default)]
struct Log {
    posted: Vec<Invalidation>,
    waits: u64,
}

/// The unit's invalidator, recording what is posted and waited for.
struct Recording {
    inner: Inv,
    log: Arc<Mutex<Log>>,
}

impl Invalidator for Recording {
    fn caps(&self) -> InvalidationCaps {
        self.inner.caps()
    }
    fn post<I: IntoIterator<Item = Invalidation>>(
        &mut self,
        batch: I,
    ) -> invalidation::Result<Ticket> {
        let batch: Vec<_> = batch.into_iter().collect();
        self.log.lock().unwrap().posted.extend(&batch);
        self.inner.post(batch)
    }
    fn is_complete(&mut self, ticket: Ticket) -> invalidation::Result<bool> {
        self.inner.is_complete(ticket)
    }
    fn wait(&mut self, ticket: Ticket) -> invalidation::Result<()> {
        self.log.lock().unwrap().waits += 1;
        self.inner.wait(ticket)
    }
}

const RING_SLOTS: usize = 64;
/// The rings' region: 2 x 4096 pages at 1 GiB.
const REGION: (u64, u64) = (0x4_0000, 8192);

fn config() -> MapperConfig {
    MapperConfig {
        reuse: Reuse::SingleUse,
        flush: FlushConfig::strict(),
        domain: DOMAIN,
        dma_limit: Iova::new(1 << 39),
    }
}

type Single = Mapper<Platform<StdClock>, IovaRing<RING_SLOTS>, Recording, Fixed<128, 64>>;
type Rings = IovaRings<2, RING_SLOTS>;
type Shared = SharedMapper<Platform<StdClock>, Rings, Recording, Fixed<128, 64>, Inline<2>>;
type Handle =
    MapperHandle<'static, Platform<StdClock>, Rings, Recording, Fixed<128, 64>, Inline<2>>;

/// The single-threaded mapper on one ring, or the shared one with a
/// handle (and a ring) per CPU.
enum Layer {
    Single(Box<Single>),
    Shared([Handle; 2]),
}

struct Rig {
    layer: Layer,
    log: Arc<Mutex<Log>>,
    emu: &'static Emu,
    mem: Mem,
    root: PhysAddr,
}

impl Rig {
    fn new(shared: bool) -> Rig {
        let bed = Testbed::new(EmuConfig::qemu());
        let log = Arc::new(Mutex::new(Log::default()));
        let platform = bed.platform(StdClock::new());
        let inv = Recording { inner: bed.inv, log: log.clone() };
        let root = bed.table.root();
        let region = IovaRange::from_pages(REGION.0, REGION.1).unwrap();
        let layer = if shared {
            let table = SharedSlTable::from(bed.table);
            let rings = Rings::new(region).unwrap();
            let scope = (config(), FlushScope::PerHandle);
            let m = SharedMapper::new(platform, table, rings, inv, scope, Fixed, Inline).unwrap();
            let m: &'static Shared = Box::leak(Box::new(m));
            Layer::Shared([m.handle(0).unwrap(), m.handle(1).unwrap()])
        } else {
            let ring = IovaRing::new(IovaRange::from_pages(REGION.0, REGION.1 / 2).unwrap());
            let m =
                Mapper::with_capacity(platform, bed.table, ring, inv, NoPinning, config(), Fixed);
            Layer::Single(Box::new(m.unwrap()))
        };
        Rig { layer, log, emu: bed.emu, mem: bed.mem, root }
    }

    fn map(&mut self, cpu: usize, phys: PhysAddr, len: u64) -> teardown::Result<Iova> {
        match &mut self.layer {
            Layer::Single(m) => m.map(phys, len, Perm::WRITE),
            Layer::Shared(h) => h[cpu % 2].map(phys, len, Perm::WRITE),
        }
    }

    fn unmap_batch(&mut self, cpu: usize, buffers: &[(Iova, u64)]) -> teardown::Result<()> {
        match &mut self.layer {
            Layer::Single(m) => m.unmap_batch(buffers),
            Layer::Shared(h) => h[cpu % 2].unmap_batch(buffers),
        }
    }

    fn unmap(&mut self, cpu: usize, iova: Iova, len: u64) -> teardown::Result<()> {
        match &mut self.layer {
            Layer::Single(m) => m.unmap(iova, len),
            Layer::Shared(h) => h[cpu % 2].unmap(iova, len),
        }
    }

    fn pending(&self) -> usize {
        match &self.layer {
            Layer::Single(m) => m.pending(),
            Layer::Shared(h) => h.iter().map(MapperHandle::pending).sum(),
        }
    }

    fn dma(&self, iova: Iova) -> Option<PhysAddr> {
        self.emu.translate(DEVICE, iova, Access::Write).ok()
    }

    /// Every table frame below the root and the IOVA span its entry
    /// translates: what a paging-structure cache may hold.
    fn tables(&self) -> HashMap<u64, (u64, u64)> {
        let mut out = HashMap::new();
        self.walk(self.root, 3, 0, &mut out);
        out
    }

    fn walk(&self, table: PhysAddr, level: u32, base: u64, out: &mut HashMap<u64, (u64, u64)>) {
        if level == 1 {
            return;
        }
        let shift = PAGE_SHIFT + 9 * (level - 1);
        for i in 0..512u64 {
            let e = SlPte(self.mem.read_u64(PhysAddr::new(table.as_u64() + i * 8)).unwrap());
            if !e.is_present() || e.is_superpage() {
                continue;
            }
            let start = base + (i << shift);
            out.insert(e.address().as_u64(), (start, 1 << shift));
            self.walk(e.address(), level - 1, start, out);
        }
    }
}

/// A buffer of the model.
#[derive(Clone, Copy, Debug)]
struct Live {
    iova: Iova,
    len: u64,
    phys: PhysAddr,
}

impl Live {
    /// The pages checked: first, last, and every 61st.
    fn pages(&self) -> impl Iterator<Item = (Iova, PhysAddr)> + '_ {
        let n = self.len.div_ceil(PAGE_SIZE);
        (0..n).filter(move |&p| p == n - 1 || p % 61 == 0).map(move |p| {
            let off = p << PAGE_SHIFT;
            (Iova::new(self.iova.as_u64() + off), PhysAddr::new(self.phys.as_u64() + off))
        })
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// `huge`: 300..700 pages (empties whole last-level tables when
    /// unmapped); `aligned`: a 2 MiB-aligned frame (superpages where the
    /// IOVA is aligned too).
    Map {
        cpu: usize,
        pages: u64,
        huge: bool,
        aligned: bool,
    },
    UnmapBatch {
        cpu: usize,
        picks: Vec<prop::sample::Index>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..2, 1u64..5, prop::bool::weighted(0.15), any::<bool>())
            .prop_map(|(cpu, pages, huge, aligned)| Op::Map { cpu, pages, huge, aligned }),
        1 => (0usize..2, prop::collection::vec(any::<prop::sample::Index>(), 1..10))
            .prop_map(|(cpu, picks)| Op::UnmapBatch { cpu, picks }),
    ]
}

fn run(shared: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut rig = Rig::new(shared);
    let mut live: Vec<Live> = Vec::new();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Map { cpu, pages, huge, aligned } => {
                let pages = if huge { 300 + pages * 100 } else { pages };
                let base = if aligned { 0x20_0000 } else { 0x1000 };
                let phys = PhysAddr::new(base + (n as u64 % 8) * 0x40_0000 + 0x123);
                let len = (pages << PAGE_SHIFT) - 0x123;
                // The ring may be full: a refusal is not the property here.
                if let Ok(iova) = rig.map(cpu, phys, len) {
                    live.push(Live { iova, len, phys });
                }
            }
            Op::UnmapBatch { cpu, picks } => {
                let mut picked: Vec<usize> =
                    picks.iter().map(|i| i.index(live.len().max(1))).collect();
                picked.sort_unstable();
                picked.dedup();
                picked.retain(|&i| i < live.len());
                let gone: Vec<Live> = picked.iter().rev().map(|&i| live.remove(i)).collect();
                // The device has cached every translation of the batch.
                for b in live.iter().chain(&gone) {
                    for (iova, phys) in b.pages() {
                        prop_assert_eq!(rig.dma(iova), Some(phys));
                    }
                }
                let before = rig.tables();
                let posted_before = rig.log.lock().unwrap().posted.len();
                let waits_before = rig.log.lock().unwrap().waits;
                let buffers: Vec<(Iova, u64)> = gone.iter().map(|b| (b.iova, b.len)).collect();
                rig.unmap_batch(cpu, &buffers).unwrap();

                // Completed: nothing unmapped is reachable, the rest is.
                prop_assert_eq!(rig.pending(), 0);
                for b in &gone {
                    for (iova, _) in b.pages() {
                        prop_assert_eq!(
                            rig.dma(iova),
                            None,
                            "{:?} reachable after its batch",
                            iova
                        );
                    }
                }
                for b in &live {
                    for (iova, phys) in b.pages() {
                        prop_assert_eq!(rig.dma(iova), Some(phys));
                    }
                }
                let log = rig.log.lock().unwrap();
                prop_assert_eq!(log.waits - waits_before, u64::from(!gone.is_empty()));

                // The paging-structure cache model: no freed frame cached.
                let after = rig.tables();
                let freed: Vec<u64> =
                    before.keys().filter(|f| !after.contains_key(f)).copied().collect();
                let mut cached = before;
                let batch = &log.posted[posted_before..];
                for inv in batch {
                    match inv {
                        Invalidation::Iotlb {
                            scope: IotlbScope::Pages { addr, order, leaf_only: false, .. },
                            ..
                        } => {
                            let (lo, hi) = (addr.as_u64(), addr.as_u64() + (PAGE_SIZE << order));
                            cached
                                .retain(|_, &mut (start, size)| start + size <= lo || hi <= start);
                        }
                        Invalidation::Iotlb { scope: IotlbScope::Pages { .. }, .. } => {}
                        Invalidation::Iotlb { .. } => cached.clear(),
                        _ => {}
                    }
                }
                for f in &freed {
                    prop_assert!(
                        !cached.contains_key(f),
                        "frame {:#x} freed with IH set over it",
                        f
                    );
                }
                if freed.is_empty() {
                    // Page-selective ones; a batch of too many blocks falls
                    // back to one domain-selective invalidation.
                    let unhinted = |inv: &Invalidation| {
                        matches!(
                            inv,
                            Invalidation::Iotlb {
                                scope: IotlbScope::Pages { leaf_only: false, .. },
                                ..
                            }
                        )
                    };
                    prop_assert!(
                        !batch.iter().any(unhinted),
                        "no frame freed, yet no hint: {:?}",
                        batch
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn batched_strict_unmap_single(ops in prop::collection::vec(op(), 1..60)) {
        run(false, ops)?;
    }

    #[test]
    fn batched_strict_unmap_shared(ops in prop::collection::vec(op(), 1..60)) {
        run(true, ops)?;
    }
}

/// A ring's 24 buffers unmapped one by one cost 24 waits and 24
/// descriptors; in one batch, one wait and a few page-selective
/// descriptors (one run of touching ranges); all with the hint, as no
/// table is freed.
#[test]
fn a_ring_batch_is_one_range_and_one_wait() {
    for shared in [false, true] {
        let mut rig = Rig::new(shared);
        // Keeps the last-level table: no frame is freed, every hint is set.
        rig.map(0, PhysAddr::new(0xf_f000), 100).unwrap();
        let mut cost = Vec::new();
        for batched in [false, true] {
            let bufs: Vec<(Iova, u64)> = (0..24u64)
                .map(|n| (rig.map(0, PhysAddr::new(0x10_0000 + n * 0x1000), 1500).unwrap(), 1500))
                .collect();
            let at = {
                let log = rig.log.lock().unwrap();
                (log.posted.len(), log.waits)
            };
            if batched {
                rig.unmap_batch(0, &bufs).unwrap();
            } else {
                for &(iova, len) in &bufs {
                    rig.unmap(0, iova, len).unwrap();
                }
            }
            let log = rig.log.lock().unwrap();
            let posted = &log.posted[at.0..];
            assert!(
                posted.iter().all(|i| matches!(
                    i,
                    Invalidation::Iotlb { scope: IotlbScope::Pages { leaf_only: true, .. }, .. }
                )),
                "{posted:?}"
            );
            cost.push((posted.len(), log.waits - at.1));
        }
        assert_eq!(cost[0], (24, 24));
        assert!(cost[1].0 <= 6 && cost[1].1 == 1, "batched: {:?}", cost[1]);
    }
}

/// The shared space hands each handle its own ring.
#[test]
fn each_handle_has_its_ring() {
    let rings = Rings::new(IovaRange::from_pages(REGION.0, REGION.1).unwrap()).unwrap();
    let (mut a, mut b) = (rings.handle(0), rings.handle(1));
    use teardown::IovaSpace;
    let la = IovaSpace::alloc(&mut a, 1, Iova::new(u64::MAX)).unwrap();
    let lb = IovaSpace::alloc(&mut b, 1, Iova::new(u64::MAX)).unwrap();
    assert_eq!(la.range().start_page(), REGION.0);
    assert_eq!(lb.range().start_page(), REGION.0 + REGION.1 / 2);
    IovaSpace::free(&mut a, lb).unwrap();
    IovaSpace::free(&mut b, la).unwrap();
}
