//! The unikernel's receive path (`examples/unikernel`) on QEMU's
//! `intel-iommu`: the unit found in the DMAR table QEMU builds (read
//! through fw_cfg), the edu device attached, 1000 buffers mapped with
//! optimistic reuse over deferred invalidation; edu writes a frame through
//! the IOMMU into every 50th buffer, which must land exactly there.

mod common;

use common::start;
use std::cell::Cell;

use iommu_platform::{Clock, Instant};
use viommu_qtest::{Edu, GuestFrames, IommuOptions, QtestMem, QtestMmio, VTD_BASE};
use viommu_unikernel::{BUFFERS, FRAME, RING, receive};
use vtd_regs::{FrameAllocator, Iova, PhysAddr, PhysMem};

/// Runs `test` on a thread with a big stack: the DMA API's default fixed
/// capacities hold its tables inline, and a debug build copies them.
fn on_big_stack(test: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(16 << 20).spawn(test).unwrap().join().unwrap();
}

/// A clock that advances 1 µs per reading: the driver's deadlines count
/// its own steps, not qtest's round trips (which a loaded machine stretches
/// past the 10 ms optimistic time limit, and reuse would then vary).
#[derive(Clone, Default)]
struct StepClock(Cell<u64>);

impl Clock for StepClock {
    fn now(&self) -> Instant {
        self.0.set(self.0.get() + 1_000);
        Instant(self.0.get())
    }
}

fn receive_on(options: IommuOptions) {
    let qemu = start(&options);
    let dmar = qemu.acpi_table(*b"DMAR").expect("QEMU's DMAR table");
    let (mem, frames) = (QtestMem::new(&qemu), GuestFrames::default());
    let edu = Edu::probe(&qemu).unwrap();
    let frame: Vec<u8> = (0..FRAME).map(|i| (i * 7 + 1) as u8).collect();
    // Load edu's buffer with the frame while translation is still off
    // (its DMA goes to physical addresses then).
    let scratch = frames.allocate(0).unwrap();
    mem.write_bytes(scratch, &frame).unwrap();
    edu.read_memory(Iova::new(scratch.as_u64()), 0, FRAME as usize).unwrap();
    let ring = frames.allocate(5).unwrap(); // 128 KiB for 64 buffers 2 KiB apart
    let (mut n, mut written) = (0, 0);
    let mut nic = |iova: Iova, buffer: PhysAddr| {
        if n % 50 == 0 {
            mem.write_bytes(buffer, &[0; FRAME as usize]).unwrap();
            edu.write_memory(0, iova, FRAME as usize).unwrap();
            let mut got = vec![0; FRAME as usize];
            mem.read_bytes(buffer, &mut got).unwrap();
            assert_eq!(got, frame, "buffer {n} at {buffer:?} through {iova:?}");
            written += 1;
        }
        n += 1;
    };
    let registers = |base| (base == VTD_BASE).then(|| QtestMmio::new(&qemu));
    let platform = (mem, frames.clone(), StepClock::default());
    let report = receive(platform, &dmar, registers, edu.source_id(), ring, &mut nic).unwrap();
    assert_eq!((report.maps, written), (BUFFERS, BUFFERS.div_ceil(50)));
    // Two buffers share a page, and reuse is by page: the ring's pages are
    // mapped once each.
    assert_eq!(report.maps - report.reused, RING / 2);
    // Attach, the last batch; in caching mode each fresh mapping too (§6.1).
    let fresh = if options.caching_mode { RING / 2 } else { 0 };
    assert!(report.tail_writes <= 4 + fresh, "{report:?}");
    qemu.check().unwrap();
}

#[test]
fn unikernel_receives_through_qemus_intel_iommu() {
    on_big_stack(|| receive_on(IommuOptions::default()));
}

#[test]
fn unikernel_receives_through_qemus_intel_iommu_in_caching_mode() {
    on_big_stack(|| receive_on(IommuOptions { caching_mode: true, ..IommuOptions::default() }));
}
