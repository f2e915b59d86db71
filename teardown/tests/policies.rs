//! Each reuse policy on the software VT-d: what a device can reach after
//! each map and unmap, asked of the unit (its IOTLB), not of the mapper.

mod common;

use std::time::Duration;

use common::*;
use invalidation::FlushConfig;
use teardown::{Error, MapperConfig, NoPinning, Reuse};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PhysAddr};
use vtd_tables::{Access, Perm};

fn config(reuse: Reuse, flush: FlushConfig) -> MapperConfig {
    MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) }
}

fn rig(reuse: Reuse, flush: FlushConfig) -> Rig<NoPinning> {
    Rig::new(config(reuse, flush), NoPinning, EmuConfig::qemu())
}

const BUF: PhysAddr = PhysAddr::new(0x12_3450);

#[test]
fn single_use_strict_revokes_at_unmap() {
    let mut r = rig(Reuse::SingleUse, FlushConfig::strict());
    let iova = r.mapper.map(BUF, 1500, Perm::READ_WRITE).unwrap();
    assert_eq!(iova.page_offset(), 0x450);
    assert_eq!(r.dma(iova, Access::Write), Some(BUF));
    r.mapper.unmap(iova, 1500).unwrap();
    assert_eq!(r.dma(iova, Access::Read), None, "strict: no access after unmap returns");
    assert_eq!(r.mapper.pending(), 0);
    let again = r.mapper.map(BUF, 1500, Perm::READ_WRITE).unwrap();
    assert_eq!(r.mapper.counters().reuse_hits, 0);
    assert_eq!(r.dma(again, Access::Read), Some(BUF));
}

#[test]
fn read_only_mappings_refuse_device_writes() {
    let mut r = rig(Reuse::SingleUse, FlushConfig::strict());
    let iova = r.mapper.map(BUF, 64, Perm::READ).unwrap();
    assert_eq!(r.dma(iova, Access::Read), Some(BUF));
    assert_eq!(r.dma(iova, Access::Write), None);
}

#[test]
fn multi_page_unaligned_buffers_map_every_page() {
    let mut r = rig(Reuse::SingleUse, FlushConfig::strict());
    let phys = PhysAddr::new(0x20_0ff0);
    let iova = r.mapper.map(phys, 0x2020, Perm::READ).unwrap();
    for off in [0u64, 0x10, 0x1010, 0x2010, 0x201f] {
        assert_eq!(
            r.dma(Iova::new(iova.as_u64() + off), Access::Read),
            Some(PhysAddr::new(phys.as_u64() + off))
        );
    }
    assert_eq!(r.mapper.unmap(iova, 0x10), Err(Error::LengthMismatch { iova, len: 0x10 }));
    r.mapper.unmap(iova, 0x2020).unwrap();
    assert_eq!(r.dma(iova, Access::Read), None);
    assert_eq!(r.mapper.unmap(iova, 0x2020), Err(Error::NotMapped { iova }));
}

#[test]
fn shared_mappings_are_counted() {
    let mut r = rig(Reuse::Shared, FlushConfig::strict());
    let a = r.mapper.map(BUF, 100, Perm::READ).unwrap();
    let b = r.mapper.map(BUF, 100, Perm::READ).unwrap();
    assert_eq!(a, b);
    assert_eq!(r.mapper.counters().reuse_hits, 1);
    // A write mapping of a page mapped read-only is a new mapping, and the
    // read-only one stays read-only.
    let c = r.mapper.map(PhysAddr::new(0x40_0000), 8, Perm::READ).unwrap();
    let d = r.mapper.map(PhysAddr::new(0x40_0000), 8, Perm::READ_WRITE).unwrap();
    assert_ne!(c, d);
    assert_eq!(r.dma(c, Access::Write), None);
    r.mapper.unmap(a, 100).unwrap();
    assert_eq!(r.dma(a, Access::Read), Some(BUF), "one user left");
    r.mapper.unmap(b, 100).unwrap();
    assert_eq!(r.dma(a, Access::Read), None);
}

#[test]
fn persistent_mappings_stay_up_to_the_quota() {
    let mut r = rig(Reuse::Persistent { quota: Some(2) }, FlushConfig::strict());
    let bufs = [0x10_0000u64, 0x11_0000, 0x12_0000].map(PhysAddr::new);
    let iovas: Vec<_> = bufs.iter().map(|&b| r.mapper.map(b, 4096, Perm::READ).unwrap()).collect();
    for (&i, &b) in iovas.iter().zip(&bufs) {
        r.mapper.unmap(i, 4096).unwrap();
        let kept = r.dma(i, Access::Read) == Some(b);
        assert_eq!(kept, b != bufs[2], "the first two are kept, the third is over quota");
    }
    assert_eq!(r.mapper.map(bufs[0], 4096, Perm::READ).unwrap(), iovas[0]);
    assert_eq!(r.mapper.counters().reuse_hits, 1);
}

#[test]
fn optimistic_reuses_stale_mappings_and_reclaims_at_the_quota() {
    let quota = 8;
    let mut r = rig(
        Reuse::Optimistic { quota, time_limit: Duration::from_millis(10) },
        FlushConfig::deferred(64, Duration::from_millis(10)),
    );
    let iova = r.mapper.map(BUF, 1500, Perm::READ_WRITE).unwrap();
    r.mapper.unmap(iova, 1500).unwrap();
    assert_eq!(r.mapper.stale(), 1);
    assert_eq!(r.dma(iova, Access::Read), Some(BUF), "stale: still mapped");
    assert_eq!(r.mapper.map(BUF, 1500, Perm::READ_WRITE).unwrap(), iova);
    assert_eq!(r.mapper.stale(), 0);
    r.mapper.unmap(iova, 1500).unwrap();
    let writes = r.mapper.invalidator().counters().tail_writes;
    let mut iovas = vec![iova];
    for n in 1..quota as u64 {
        let b = PhysAddr::new(0x30_0000 + n * 0x1000);
        let i = r.mapper.map(b, 100, Perm::READ).unwrap();
        r.mapper.unmap(i, 100).unwrap();
        iovas.push(i);
    }
    assert_eq!(r.mapper.stale(), 0, "the quota was reached: all reclaimed");
    assert_eq!(
        r.mapper.invalidator().counters().tail_writes - writes,
        1,
        "one batched invalidation"
    );
    assert_eq!(r.mapper.counters().reclaims, 1);
    for i in iovas {
        assert_eq!(r.dma(i, Access::Read), None);
    }
}

#[test]
fn optimistic_reclaims_after_the_time_limit() {
    let mut r = rig(
        Reuse::Optimistic { quota: 64, time_limit: Duration::from_millis(10) },
        FlushConfig::deferred(64, Duration::from_millis(10)),
    );
    let iova = r.mapper.map(BUF, 1500, Perm::READ).unwrap();
    r.mapper.unmap(iova, 1500).unwrap();
    r.clock.advance(9_000_000);
    r.mapper.poll().unwrap();
    assert_eq!(r.dma(iova, Access::Read), Some(BUF));
    r.clock.advance(1_000_000);
    r.mapper.poll().unwrap();
    assert_eq!(r.dma(iova, Access::Read), None);
}

#[test]
fn every_frame_comes_back() {
    for reuse in [
        Reuse::SingleUse,
        Reuse::Shared,
        Reuse::Optimistic { quota: 4, time_limit: Duration::from_secs(1) },
    ] {
        for flush in [
            FlushConfig::strict(),
            FlushConfig::deferred(16, Duration::from_millis(1)),
            FlushConfig::asynchronous(4, Duration::from_millis(1)),
        ] {
            let mut r = rig(reuse, flush);
            let baseline = r.frames.live_frames();
            let mut live = Vec::new();
            for n in 0..300u64 {
                let b = PhysAddr::new((n * 0x3_1000) % (8 << 20));
                live.push((r.mapper.map(b, 0x1800, Perm::READ_WRITE).unwrap(), b));
                if n % 3 != 0 {
                    let (i, _) = live.remove(0);
                    r.mapper.unmap(i, 0x1800).unwrap();
                }
            }
            for (i, b) in &live {
                assert_eq!(r.dma(*i, Access::Write), Some(*b), "{reuse:?} {flush:?}");
            }
            for (i, _) in live.drain(..) {
                r.mapper.unmap(i, 0x1800).unwrap();
            }
            r.mapper.flush().unwrap();
            assert_eq!(r.mapper.mappings(), 0);
            assert_eq!(r.mapper.pending(), 0);
            assert_eq!(r.mapper.counters().release_errors, 0);
            assert!(r.frames.live_frames() <= baseline, "{reuse:?} {flush:?}: table frames leaked");
        }
    }
}

#[test]
fn caching_mode_invalidates_on_map() {
    let mut r = Rig::new(
        config(Reuse::SingleUse, FlushConfig::strict()),
        NoPinning,
        EmuConfig::qemu().with_caching_mode(true),
    );
    let iova = r.mapper.map(BUF, 100, Perm::READ).unwrap();
    assert_eq!(r.mapper.counters().map_invalidations, 1);
    assert_eq!(r.dma(iova, Access::Read), Some(BUF));
}

#[test]
fn a_refused_pin_undoes_the_map() {
    let mut pinner = CountingPinner::with_offset(1 << 20);
    pinner.refuse = Some(5);
    let mut r =
        Rig::new(config(Reuse::SingleUse, FlushConfig::strict()), pinner, EmuConfig::qemu());
    let e = r.mapper.map(PhysAddr::new(0x3000), 0x3000, Perm::READ).unwrap_err();
    assert!(matches!(e, Error::Pin(_)));
    assert_eq!(r.mapper.pinner().total(), 0, "pins of the failed map are dropped");
    assert_eq!(r.mapper.mappings(), 0);
}
