//! Mappings at an IOVA the caller chose (`Mapper::map_at`), as a vIOMMU
//! installs a guest's own IOVAs: pinned like any mapping, torn down like
//! any mapping, never drawn from or given back to the IOVA space.

mod common;

use std::time::Duration;

use common::*;
use invalidation::FlushConfig;
use teardown::{Error, MapperConfig, Reuse};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PhysAddr};
use vtd_tables::{Access, Perm};

/// Guest page g is backed by host frame g + 4 MiB.
const HOST_OFFSET: u64 = 4 << 20;

/// A rig whose pinner refuses guest page `refuse`.
fn rig(flush: FlushConfig, refuse: Option<u64>) -> Rig<CountingPinner> {
    let config = MapperConfig {
        reuse: Reuse::SingleUse,
        flush,
        domain: DOMAIN,
        dma_limit: Iova::new(1 << 32),
    };
    let pinner = CountingPinner { refuse, ..CountingPinner::with_offset(HOST_OFFSET) };
    Rig::new(config, pinner, EmuConfig::qemu())
}

// Low IOVAs: the rig's space allocates top-down from 512 GiB, far away.
const GIOVA: Iova = Iova::new(0x5_0000);
const GPA: PhysAddr = PhysAddr::new(0x3_0000);

#[test]
fn placed_mapping_reaches_the_pinned_frames_until_unmapped() {
    let mut r = rig(FlushConfig::strict(), None);
    r.mapper.map_at(GIOVA, GPA, 0x2000, Perm::READ_WRITE).unwrap();
    let host = PhysAddr::new(GPA.as_u64() + HOST_OFFSET);
    assert_eq!(r.dma(GIOVA, Access::Write), Some(host));
    assert_eq!(
        r.dma(Iova::new(GIOVA.as_u64() + 0x1fff), Access::Read),
        Some(PhysAddr::new(host.as_u64() + 0x1fff))
    );
    assert_eq!(r.mapper.pinner().total(), 2);
    assert_eq!(
        r.mapper.unmap(GIOVA, 0x1000),
        Err(Error::LengthMismatch { iova: GIOVA, len: 0x1000 })
    );
    r.mapper.unmap(GIOVA, 0x2000).unwrap();
    assert_eq!(r.dma(GIOVA, Access::Read), None);
    assert_eq!(r.mapper.pinner().total(), 0);
    // Nothing was given back to the space: it never handed the range out.
    assert_eq!(r.mapper.counters().release_errors, 0);
    assert_eq!(r.mapper.unmap(GIOVA, 0x2000), Err(Error::NotMapped { iova: GIOVA }));
    // Allocated mappings still work beside placed ones.
    let iova = r.mapper.map(GPA, 0x1000, Perm::READ).unwrap();
    assert_ne!(iova, GIOVA);
    assert_eq!(r.dma(iova, Access::Read), Some(host));
}

#[test]
fn placed_mappings_are_checked() {
    let mut r = rig(FlushConfig::strict(), Some(0x41));
    let odd = Iova::new(GIOVA.as_u64() + 8);
    assert_eq!(r.mapper.map_at(odd, GPA, 0x10, Perm::READ), Err(Error::Misplaced { iova: odd }));
    assert_eq!(r.mapper.map_at(GIOVA, GPA, 0, Perm::READ), Err(Error::Empty));
    r.mapper.map_at(GIOVA, GPA, 0x1000, Perm::READ).unwrap();
    // Overlapping at the start and further in: refused, nothing pinned.
    let again = r.mapper.map_at(GIOVA, PhysAddr::new(0x9000), 0x1000, Perm::READ);
    assert!(matches!(again, Err(Error::Table(vtd_tables::Error::AlreadyMapped { .. }))));
    let before = Iova::new(GIOVA.as_u64() - 0x1000);
    let over = r.mapper.map_at(before, PhysAddr::new(0x9000), 0x2000, Perm::READ);
    assert!(matches!(over, Err(Error::Table(vtd_tables::Error::AlreadyMapped { .. }))));
    r.mapper.flush().unwrap();
    assert_eq!(r.dma(before, Access::Read), None, "the half-done map was undone");
    assert!(!r.mapper.pinner().pinned(0x9));
    assert_eq!(r.mapper.pinner().total(), 1);
    // A page that cannot be pinned: nothing mapped, nothing pinned.
    let refused =
        r.mapper.map_at(Iova::new(0x10_0000), PhysAddr::new(0x40_000), 0x2000, Perm::READ);
    assert!(matches!(refused, Err(Error::Pin(_))));
    r.mapper.flush().unwrap();
    assert_eq!(r.dma(Iova::new(0x10_0000), Access::Read), None);
    assert_eq!(r.mapper.pinner().total(), 1);
    assert_eq!(r.mapper.counters().release_errors, 0);
}

#[test]
fn deferred_placed_teardown_unpins_after_the_flush() {
    let mut r = rig(FlushConfig::deferred(64, Duration::from_secs(1)), None);
    for i in 0..8u64 {
        let page = PhysAddr::new(GPA.as_u64() + (i << 12));
        r.mapper.map_at(Iova::new(GIOVA.as_u64() + (i << 12)), page, 0x1000, Perm::READ).unwrap();
    }
    for i in 0..8u64 {
        r.mapper.unmap(Iova::new(GIOVA.as_u64() + (i << 12)), 0x1000).unwrap();
    }
    assert_eq!(r.mapper.pending(), 8);
    assert_eq!(r.mapper.pinner().total(), 8, "pinned until the invalidation completes");
    r.mapper.flush().unwrap();
    assert_eq!(r.mapper.pending(), 0);
    assert_eq!(r.mapper.pinner().total(), 0);
    assert_eq!(r.dma(GIOVA, Access::Read), None);
}
