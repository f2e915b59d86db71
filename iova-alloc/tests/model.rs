//! Property tests of the tree and of the cache (several handles) against a
//! reference interval set: a `BTreeMap` of occupied ranges and a brute-force
//! search for the highest aligned free placement. Allocations are held as
//! leases or, after `into_range`, as plain ranges; both paths are checked.

use std::collections::BTreeMap;

use iova_alloc::{AllocError, FixedIovaCache, IovaLease, IovaRange, IovaTree, Node, Window};
use proptest::prelude::*;
use vtd_regs::{Iova, PAGE_SHIFT};

/// The reference: occupied ranges by start page, `(last page, reserved)`.
#[derive(Default, Debug)]
struct Model {
    ranges: BTreeMap<u64, (u64, bool)>,
}

impl Model {
    fn overlapping(&self, start: u64, last: u64) -> impl Iterator<Item = (u64, u64, bool)> + '_ {
        self.ranges
            .range(..=last)
            .rev()
            .map(|(&s, &(l, r))| (s, l, r))
            .take_while(move |&(_, l, _)| l >= start)
    }

    fn is_free(&self, start: u64, last: u64) -> bool {
        self.overlapping(start, last).next().is_none()
    }

    /// The highest `align`-aligned start of `pages` free pages in
    /// `base..=hi`.
    fn best(&self, base: u64, hi: u64, pages: u64) -> Option<u64> {
        let align = pages.next_power_of_two();
        let mut s = (hi + 1).checked_sub(pages)? & !(align - 1);
        loop {
            if s < base {
                return None;
            }
            if self.is_free(s, s + pages - 1) {
                return Some(s);
            }
            s = s.checked_sub(align)?;
        }
    }

    fn exact(&self, r: IovaRange) -> Option<bool> {
        match self.ranges.get(&r.start_page()) {
            Some(&(last, reserved)) if last == r.last_page() => Some(reserved),
            _ => None,
        }
    }

    fn owner(&self, pfn: u64) -> Option<(IovaRange, bool)> {
        let (s, l, r) = self.overlapping(pfn, pfn).next()?;
        Some((IovaRange::from_pages(s, l - s + 1).unwrap(), r))
    }

    /// Applies a reservation the way the allocator should; the error if not.
    fn reserve(&mut self, window: Window, r: IovaRange) -> Result<(), AllocError> {
        if !window.contains(r) {
            return Err(AllocError::OutOfWindow);
        }
        let hits: Vec<_> = self.overlapping(r.start_page(), r.last_page()).collect();
        if hits.iter().any(|&(_, _, reserved)| !reserved) {
            return Err(AllocError::Overlap);
        }
        let (mut lo, mut hi) = (r.start_page(), r.last_page());
        for (s, l, _) in hits {
            self.ranges.remove(&s);
            lo = lo.min(s);
            hi = hi.max(l);
        }
        self.ranges.insert(lo, (hi, true));
        Ok(())
    }

    fn live(&self) -> usize {
        self.ranges.values().filter(|&&(_, r)| !r).count()
    }
}

/// The byte address of the end of page `pfn`, as a DMA limit.
fn limit_of(pfn: u64) -> Iova {
    Iova::new(((pfn + 1) << PAGE_SHIFT) - 1)
}

const NO_LIMIT: u64 = u64::MAX;

/// How the test holds each live allocation, by start page: its lease, or
/// `None` once turned into a plain range.
type Held = BTreeMap<u64, Option<IovaLease>>;

#[derive(Clone, Debug)]
enum Op {
    /// Allocate `pages` through handle `h`, below page `limit` (or none);
    /// hold it as a plain range if `as_range`, else as a lease.
    Alloc { h: usize, pages: u64, limit: u64, as_range: bool },
    /// Free the `sel`-th live allocation through handle `h` (by lease or by
    /// address, as held), then maybe again by address.
    Free { h: usize, sel: usize, twice: bool },
    /// Turn the `sel`-th live allocation, if leased, into a plain range.
    IntoRange { h: usize, sel: usize },
    /// Give handle `h` a lease from another allocator instance.
    Foreign { h: usize },
    /// Free an arbitrary range.
    Bogus { h: usize, start: u64, pages: u64 },
    /// Reserve a range.
    Reserve { start: u64, pages: u64 },
    /// Look up the owner of a page.
    Owner { pfn: u64 },
    /// Return handle `h`'s magazines.
    Flush { h: usize },
    /// Return the depot.
    FlushDepot,
}

fn ops(base: u64, limit: u64) -> impl Strategy<Value = Vec<Op>> {
    let pages = prop_oneof![4 => 1u64..=4, 2 => 1u64..=40, 1 => 1u64..=200];
    let lim = prop_oneof![3 => Just(NO_LIMIT), 1 => base..=limit];
    let op = prop_oneof![
        12 => (0..3usize, pages.clone(), lim, prop::bool::weighted(0.3))
            .prop_map(|(h, pages, limit, as_range)| Op::Alloc { h, pages, limit, as_range }),
        8 => (0..3usize, any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(h, sel, twice)| Op::Free { h, sel, twice }),
        2 => (0..3usize, any::<usize>()).prop_map(|(h, sel)| Op::IntoRange { h, sel }),
        1 => (0..3usize).prop_map(|h| Op::Foreign { h }),
        2 => (0..3usize, 0..limit + 8, pages.clone())
            .prop_map(|(h, start, pages)| Op::Bogus { h, start, pages }),
        1 => (base - 4..limit + 4, 1u64..=64)
            .prop_map(|(start, pages)| Op::Reserve { start, pages }),
        2 => (0..limit + 8).prop_map(|pfn| Op::Owner { pfn }),
        1 => (0..3usize).prop_map(|h| Op::Flush { h }),
        1 => Just(Op::FlushDepot),
    ];
    prop::collection::vec(op, 1..300)
}

/// A live allocation of the model, picked by `sel`.
fn pick(model: &Model, sel: usize) -> Option<IovaRange> {
    let live: Vec<_> = model.ranges.iter().filter(|(_, v)| !v.1).collect();
    let (&s, &(l, _)) = *live.get(sel % live.len().max(1))?;
    Some(IovaRange::from_pages(s, l - s + 1).unwrap())
}

const BASE: u64 = 8;
const LIMIT: u64 = 1023;

/// What a free by address of `r` must return: a reservation is refused as
/// such, an allocation held as a plain range is freed, anything else (a
/// leased range, a range never handed out) is not allocated.
fn expected_free_range(model: &Model, held: &Held, r: IovaRange) -> Result<(), AllocError> {
    match model.exact(r) {
        Some(true) => Err(AllocError::Reserved),
        Some(false) if matches!(held.get(&r.start_page()), Some(None)) => Ok(()),
        _ => Err(AllocError::NotAllocated),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The tree alone: every result is the model's highest aligned free
    /// placement; errors are exactly the model's.
    #[test]
    fn tree_matches_model(ops in ops(BASE, LIMIT)) {
        let window = Window::from_pages(BASE, LIMIT).unwrap();
        let mut tree = IovaTree::<heapless::Vec<Node, 1024>>::new_fixed(window);
        let mut model = Model::default();
        let mut held = Held::new();
        for op in ops {
            match op {
                Op::Alloc { pages, limit, as_range, .. } => {
                    let hi = limit.min(LIMIT);
                    let dma = if limit == NO_LIMIT { Iova::new(u64::MAX) } else { limit_of(limit) };
                    match tree.alloc(pages, dma) {
                        Ok(lease) => {
                            let r = lease.range();
                            prop_assert_eq!(Some(r.start_page()), model.best(BASE, hi, pages));
                            prop_assert_eq!(r.pages(), pages);
                            prop_assert!(window.contains(r) && r.last_page() <= hi);
                            prop_assert_eq!(r.start_page() % pages.next_power_of_two(), 0);
                            model.ranges.insert(r.start_page(), (r.last_page(), false));
                            let lease = if as_range {
                                prop_assert_eq!(tree.into_range(lease), Ok(r));
                                None
                            } else {
                                Some(lease)
                            };
                            held.insert(r.start_page(), lease);
                        }
                        Err(e) => {
                            prop_assert_eq!(e, AllocError::Exhausted);
                            prop_assert_eq!(model.best(BASE, hi, pages), None);
                        }
                    }
                }
                Op::Free { sel, twice, .. } => {
                    if let Some(r) = pick(&model, sel) {
                        let freed = match held.remove(&r.start_page()).flatten() {
                            Some(lease) => tree.free(lease),
                            None => tree.free_range(r),
                        };
                        prop_assert_eq!(freed, Ok(()));
                        model.ranges.remove(&r.start_page());
                        if twice {
                            prop_assert_eq!(tree.free_range(r), Err(AllocError::NotAllocated));
                        }
                    }
                }
                Op::IntoRange { sel, .. } => {
                    let r = pick(&model, sel);
                    if let Some(lease) = r.and_then(|r| held.get_mut(&r.start_page())?.take()) {
                        prop_assert_eq!(tree.into_range(lease), Ok(r.unwrap()));
                    }
                }
                Op::Foreign { .. } => {
                    // A lease of the same range from another tree frees
                    // nothing here.
                    let mut other = IovaTree::<heapless::Vec<Node, 1>>::new_fixed(window);
                    let lease = other.alloc(1, Iova::new(u64::MAX)).unwrap();
                    prop_assert_eq!(tree.free(lease), Err(AllocError::ForeignLease));
                }
                Op::Bogus { start, pages, .. } => {
                    let r = IovaRange::from_pages(start, pages).unwrap();
                    let expected = expected_free_range(&model, &held, r);
                    prop_assert_eq!(tree.free_range(r), expected);
                    if expected.is_ok() {
                        model.ranges.remove(&start);
                        held.remove(&start);
                    }
                }
                Op::Reserve { start, pages } => {
                    let r = IovaRange::from_pages(start, pages).unwrap();
                    prop_assert_eq!(tree.reserve(r), model.reserve(window, r));
                }
                Op::Owner { pfn } => {
                    let iova = Iova::new(pfn << PAGE_SHIFT);
                    prop_assert_eq!(tree.owner_of(iova), model.owner(pfn).map(|o| o.0));
                }
                Op::Flush { .. } | Op::FlushDepot => {}
            }
            prop_assert_eq!(tree.allocated(), model.live());
        }
    }

    /// The cache with three handles: allocations never overlap each other
    /// or reservations and honour window, limit and alignment; frees of live
    /// leases and ranges succeed through any handle; double, foreign and
    /// reserved frees by address, frees by address of leased ranges and
    /// leases of another cache are typed errors; exhaustion matches the
    /// model once every cache is returned; after flushing, the tree holds
    /// exactly the live ranges.
    #[test]
    fn cache_matches_model(ops in ops(BASE, 4 * LIMIT + 3)) {
        // 4095: the live map covers 2048..4096, the rest is untracked.
        const TOP: u64 = 4 * LIMIT + 3;
        let window = Window::from_pages(BASE, TOP).unwrap();
        let cache = FixedIovaCache::<1024, 2, 2048>::new_fixed(window);
        let mut hs: Vec<_> = (0..3).map(|_| cache.handle()).collect();
        let mut model = Model::default();
        let mut held = Held::new();
        for op in ops {
            match op {
                Op::Alloc { h, pages, limit, as_range } => {
                    let hi = limit.min(TOP);
                    let dma = if limit == NO_LIMIT { Iova::new(u64::MAX) } else { limit_of(limit) };
                    let given = if pages <= 32 { pages.next_power_of_two() } else { pages };
                    let mut result = hs[h].alloc(pages, dma);
                    if let Err(AllocError::Exhausted) = result {
                        // Other handles may hold the space: return all, retry.
                        hs.iter_mut().for_each(|h| h.flush());
                        cache.flush_depot();
                        let best = model.best(BASE, hi, given);
                        result = hs[h].alloc(pages, dma);
                        prop_assert_eq!(result.as_ref().map(|l| l.range().start_page()).ok(), best);
                    }
                    if let Ok(lease) = result {
                        let r = lease.range();
                        prop_assert_eq!(r.pages(), given);
                        prop_assert!(window.contains(r) && r.last_page() <= hi);
                        prop_assert_eq!(r.start_page() % given.next_power_of_two(), 0);
                        let free = model.is_free(r.start_page(), r.last_page());
                        prop_assert!(free, "{:?} overlaps", r);
                        model.ranges.insert(r.start_page(), (r.last_page(), false));
                        let lease = if as_range {
                            prop_assert_eq!(hs[h].into_range(lease), Ok(r));
                            None
                        } else {
                            Some(lease)
                        };
                        held.insert(r.start_page(), lease);
                    }
                }
                Op::Free { h, sel, twice } => {
                    if let Some(r) = pick(&model, sel) {
                        let freed = match held.remove(&r.start_page()).flatten() {
                            Some(lease) => hs[h].free(lease),
                            None => hs[h].free_range(r),
                        };
                        prop_assert_eq!(freed, Ok(()));
                        model.ranges.remove(&r.start_page());
                        if twice {
                            let again = hs[(h + 1) % 3].free_range(r);
                            prop_assert_eq!(again, Err(AllocError::NotAllocated));
                            prop_assert_eq!(hs[h].free_range(r), Err(AllocError::NotAllocated));
                        }
                    }
                }
                Op::IntoRange { h, sel } => {
                    let r = pick(&model, sel);
                    if let Some(lease) = r.and_then(|r| held.get_mut(&r.start_page())?.take()) {
                        prop_assert_eq!(hs[h].into_range(lease), Ok(r.unwrap()));
                    }
                }
                Op::Foreign { h } => {
                    // A lease of the same range from another cache frees
                    // nothing here.
                    let other = FixedIovaCache::<4, 1, 4>::new_fixed(window);
                    let lease = other.handle().alloc(1, Iova::new(u64::MAX)).unwrap();
                    prop_assert_eq!(hs[h].free(lease), Err(AllocError::ForeignLease));
                }
                Op::Bogus { h, start, pages } => {
                    let r = IovaRange::from_pages(start, pages).unwrap();
                    let expected = expected_free_range(&model, &held, r);
                    prop_assert_eq!(hs[h].free_range(r), expected);
                    if expected.is_ok() {
                        model.ranges.remove(&start);
                        held.remove(&start);
                    }
                }
                Op::Reserve { start, pages } => {
                    // Cached ranges count as allocated: return them first.
                    hs.iter_mut().for_each(|h| h.flush());
                    let r = IovaRange::from_pages(start, pages).unwrap();
                    prop_assert_eq!(cache.reserve(r), model.reserve(window, r));
                }
                Op::Owner { pfn } => {
                    // A range cached in a magazine still has an owner.
                    let iova = Iova::new(pfn << PAGE_SHIFT);
                    match (cache.owner_of(iova), model.owner(pfn)) {
                        (Some(r), None) => prop_assert!(
                            model.is_free(r.start_page(), r.last_page()) && r.contains(iova),
                            "{:?} is not a cached range",
                            r
                        ),
                        (got, want) => prop_assert_eq!(got, want.map(|o| o.0)),
                    }
                }
                Op::Flush { h } => hs[h].flush(),
                Op::FlushDepot => cache.flush_depot(),
            }
        }
        drop(hs);
        cache.flush_depot();
        prop_assert_eq!(cache.with_tree(|t| t.allocated()), model.live());
        for pfn in BASE..=TOP {
            let iova = Iova::new(pfn << PAGE_SHIFT);
            prop_assert_eq!(cache.owner_of(iova), model.owner(pfn).map(|o| o.0));
        }
        for (&s, &(l, _)) in &model.ranges {
            let r = IovaRange::from_pages(s, l - s + 1).unwrap();
            prop_assert_eq!(cache.owner_of(r.start()), Some(r));
            prop_assert_eq!(cache.with_tree(|t| t.owner_of(r.last())), Some(r));
        }
        // Every live lease and range still frees, exactly once.
        let mut h = cache.handle();
        for (start, lease) in held {
            let r = model.owner(start).unwrap().0;
            let freed = match lease {
                Some(lease) => h.free(lease),
                None => h.free_range(r),
            };
            prop_assert_eq!(freed, Ok(()));
            prop_assert_eq!(h.free_range(r), Err(AllocError::NotAllocated));
        }
        drop(h);
        cache.flush_depot();
        prop_assert_eq!(cache.with_tree(|t| t.allocated()), 0);
    }
}

/// Concurrent handles: allocations from two threads never overlap (leases
/// freed on the way are recycled), and when both threads free the same
/// ranges by address at once each range is freed exactly once.
#[test]
fn concurrent_handles_free_each_range_once() {
    const WINDOW: Window = match Window::from_pages(1, (1 << 16) - 1) {
        Ok(w) => w,
        Err(_) => panic!("bad window"),
    };
    static CACHE: FixedIovaCache<8192, 4, { 1 << 16 }> = FixedIovaCache::new_fixed(WINDOW);
    let cache = &CACHE;
    let per_thread: Vec<Vec<IovaRange>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    let mut h = cache.handle();
                    let mut out = Vec::new();
                    let mut x = 0x1234_5678_9ABC_DEF1u64 ^ t;
                    for _ in 0..3000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        out.push(h.alloc(1 + x % 16, Iova::new(u64::MAX)).unwrap());
                        if x.is_multiple_of(3) {
                            let lease = out.swap_remove((x as usize >> 8) % out.len());
                            h.free(lease).unwrap();
                        }
                    }
                    let out: Vec<IovaRange> =
                        out.into_iter().map(|lease| h.into_range(lease).unwrap()).collect();
                    std::mem::forget(h); // keep its magazines out of the count below
                    out
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<IovaRange> = per_thread.concat();
    all.sort();
    for pair in all.windows(2) {
        assert!(!pair[0].overlaps(pair[1]), "{:?} overlaps {:?}", pair[0], pair[1]);
    }
    let freed: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let all = &all;
                s.spawn(move || {
                    let mut h = cache.handle();
                    all.iter().filter(|&&r| h.free_range(r).is_ok()).count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(freed, all.len());
}
