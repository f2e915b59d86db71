//! The vIOMMU's guarantees (`viommu::conformance`) on the native VT-d
//! backend, with the software VT-d as the host's unit.

mod common;

use common::*;
use viommu::conformance::{self, Harness};
use viommu::{Assignment, GuestPinner, Native};
use vtd_regs::{Iova, PhysAddr};
use vtd_tables::Access;

/// Guest 0 of a host with the software VT-d.
struct NativeHarness {
    rig: HostRig,
}

impl Harness for NativeHarness {
    type Ram = GMem;
    type Backend = Backend;

    fn ram(&self) -> GMem {
        viommu::GuestMemory::new(self.rig.mem, HostRig::layout(0))
    }

    fn backend(&mut self) -> Backend {
        Native::new(self.rig.host.clone(), GuestPinner::new(HostRig::layout(0)))
    }

    fn device(&self) -> Assignment {
        Assignment { guest: GUEST_DEVICE, host: HostRig::host_device(0) }
    }

    fn table_frames(&self) -> core::ops::Range<PhysAddr> {
        PhysAddr::new(GUEST_FRAMES)..PhysAddr::new(GUEST_FRAMES + (1 << 20))
    }

    fn data(&self) -> core::ops::Range<PhysAddr> {
        PhysAddr::new(2 << 20)..PhysAddr::new(GUEST_FRAMES)
    }

    fn dma(&mut self, iova: Iova, access: Access) -> Option<PhysAddr> {
        let hpa = self.rig.emu.translate(HostRig::host_device(0), iova, access).ok()?;
        HostRig::guest_address(0, hpa)
    }
}

fn harness() -> NativeHarness {
    NativeHarness { rig: HostRig::new() }
}

viommu::conformance_tests!(harness());

/// All of them on one host, one vIOMMU after the other: a vIOMMU that
/// goes away leaves the device blocked and nothing mapped or pinned.
#[test]
fn all_on_one_host() {
    conformance::run_all(&mut harness());
}
