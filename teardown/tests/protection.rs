//! Protection properties over long random sequences, checked by device
//! accesses through the software VT-d (its IOTLB and tables), never by the
//! mapper's own bookkeeping.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use invalidation::{FlushConfig, FlushMode};
use proptest::prelude::*;
use teardown::{MapperConfig, Reuse};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PAGE_SIZE, PhysAddr};
use vtd_tables::{Access, Perm};

/// Guest pages are backed by host frames this far up.
const HOST_OFFSET: u64 = 8 << 20;
const QUOTA: usize = 6;
const BATCH: usize = 5;
const LIMIT: Duration = Duration::from_millis(2);

#[derive(Clone, Debug)]
enum Op {
    Map { buf: u64, len: u64, write: bool },
    Unmap { which: usize },
    Tick { ns: u64 },
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..12, 1u64..9000, any::<bool>()).prop_map(|(buf, len, write)| Op::Map { buf, len, write }),
        4 => any::<usize>().prop_map(|which| Op::Unmap { which }),
        1 => (0u64..3_000_000).prop_map(|ns| Op::Tick { ns }),
        1 => Just(Op::Poll),
    ]
}

fn reuse() -> impl Strategy<Value = Reuse> {
    prop_oneof![
        Just(Reuse::SingleUse),
        Just(Reuse::Shared),
        Just(Reuse::Persistent { quota: Some(4) }),
        Just(Reuse::Optimistic { quota: QUOTA, time_limit: LIMIT }),
    ]
}

fn flush() -> impl Strategy<Value = FlushConfig> {
    prop_oneof![
        Just(FlushConfig::strict()),
        Just(FlushConfig::deferred(BATCH, LIMIT)),
        Just(FlushConfig::asynchronous(BATCH, LIMIT)),
    ]
}

/// A buffer of guest memory: page-offset start so buffers straddle pages.
fn buffer(n: u64) -> PhysAddr {
    PhysAddr::new(0x10_0000 + n * 0x1_8000 + (n * 0x2a0) % PAGE_SIZE)
}

struct Live {
    iova: Iova,
    len: u64,
    phys: PhysAddr,
    perm: Perm,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn device_reaches_only_what_the_policy_allows(
        reuse in reuse(),
        flush in flush(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let config = MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) };
        let mut r = Rig::new(config, CountingPinner::with_offset(HOST_OFFSET), EmuConfig::qemu());
        let mut live: Vec<Live> = Vec::new();
        // Every IOVA page ever handed out -> the guest page it was mapped to
        // last, and when (clock ns) it was last unmapped.
        let mut handed: HashMap<u64, (u64, Option<u64>)> = HashMap::new();
        // When the mapper was last called (unmap or poll): time bounds are
        // enforced on calls.
        let mut last_call = 0u64;
        for op in ops {
            match op {
                Op::Map { buf, len, write } => {
                    let phys = buffer(buf);
                    let perm = if write { Perm::READ_WRITE } else { Perm::READ };
                    let iova = r.mapper.map(phys, len, perm).unwrap();
                    prop_assert_eq!(iova.page_offset(), phys.page_offset());
                    let pages = (phys.page_offset() + len).div_ceil(PAGE_SIZE);
                    for p in 0..pages {
                        handed.insert(iova.page_number() + p, (phys.page_number() + p, None));
                    }
                    live.push(Live { iova, len, phys, perm });
                }
                Op::Unmap { which } if !live.is_empty() => {
                    let l = live.remove(which % live.len());
                    r.mapper.unmap(l.iova, l.len).unwrap();
                    last_call = r.clock.0.get();
                    let still = |p: u64| live.iter().any(|o| {
                        let first = o.iova.page_number();
                        (first..=(o.iova.as_u64() + o.len - 1) / PAGE_SIZE).contains(&p)
                    });
                    let pages = (l.iova.page_offset() + l.len).div_ceil(PAGE_SIZE);
                    for p in l.iova.page_number()..l.iova.page_number() + pages {
                        if !still(p)
                            && let Some(h) = handed.get_mut(&p)
                        {
                            h.1 = Some(r.clock.0.get());
                        }
                    }
                }
                Op::Unmap { .. } => {}
                Op::Tick { ns } => r.clock.advance(ns),
                Op::Poll => {
                    r.mapper.poll().unwrap();
                    last_call = r.clock.0.get();
                }
            }
            let now = r.clock.0.get();
            let polled_since = |at: u64| last_call > at + 2 * LIMIT.as_nanos() as u64;
            // 1. Live buffers are reachable, at the right frame, with the right permission.
            for l in &live {
                for off in [0, l.len - 1] {
                    let iova = Iova::new(l.iova.as_u64() + off);
                    let host = PhysAddr::new(l.phys.as_u64() + off + HOST_OFFSET);
                    prop_assert_eq!(r.dma(iova, Access::Read), Some(host), "live buffer unreachable or redirected");
                    let w = r.dma(iova, Access::Write);
                    prop_assert_eq!(w.is_some(), l.perm.contains(Perm::WRITE), "write permission wrong");
                }
            }
            // 2. Unmapped IOVAs: never a frame this IOVA was not mapped to,
            //    never an unpinned frame, and not at all once the policy's
            //    window is over.
            let mut stale = 0;
            for (&page, &(guest, unmapped_at)) in &handed {
                let Some(at) = unmapped_at else { continue };
                let Some(host) = r.dma(Iova::new(page * PAGE_SIZE), Access::Read) else { continue };
                stale += 1;
                prop_assert_eq!(host.page_number(), guest + (HOST_OFFSET >> 12), "translation to a page never mapped there");
                prop_assert!(r.mapper.pinner().pinned(guest), "device reaches an unpinned page");
                // Strict single-use: nothing survives the unmap call. Every
                // other policy: nothing survives its time bound (the reclaim
                // limit, then the flush deadline), once the mapper is called.
                let strict = reuse == Reuse::SingleUse && flush.mode == FlushMode::Strict;
                let timed_out = !matches!(reuse, Reuse::Persistent { .. } | Reuse::Shared)
                    && now.saturating_sub(at) > 2 * LIMIT.as_nanos() as u64
                    && polled_since(at);
                prop_assert!(!strict && !timed_out, "access through {page:#x} after its window");
            }
            // 3. The stale window is bounded in count.
            let bound = match (reuse, flush.mode) {
                (Reuse::Persistent { .. }, _) => usize::MAX,
                (Reuse::Shared, _) => usize::MAX,
                (Reuse::Optimistic { .. }, FlushMode::Strict) => QUOTA * 3,
                (Reuse::Optimistic { .. }, _) => (QUOTA + BATCH) * 3,
                (_, FlushMode::Strict) => 0,
                _ => BATCH * 3,
            };
            prop_assert!(stale <= bound, "{stale} stale pages > {bound}");
        }
        // After a flush: every pin left belongs to a live (or kept) mapping.
        r.mapper.flush().unwrap();
        for (&page, &(_, unmapped_at)) in &handed {
            if unmapped_at.is_some() && !matches!(reuse, Reuse::Persistent { .. }) {
                prop_assert_eq!(r.dma(Iova::new(page * PAGE_SIZE), Access::Read), None);
            }
        }
        // One pin per page per mapping; reuse policies share one mapping
        // between the live maps of the same pages and permission.
        let pages = |l: &Live| (l.phys.page_offset() + l.len).div_ceil(PAGE_SIZE);
        let live_pages: u64 = if reuse == Reuse::SingleUse {
            live.iter().map(pages).sum()
        } else {
            let keys: std::collections::HashSet<_> =
                live.iter().map(|l| (l.phys.page_number(), pages(l), l.perm)).collect();
            keys.iter().map(|k| k.1).sum()
        };
        if !matches!(reuse, Reuse::Persistent { .. }) {
            prop_assert_eq!(u64::from(r.mapper.pinner().total()), live_pages, "pins left over");
        }
        prop_assert_eq!(r.mapper.counters().release_errors, 0);
    }
}
