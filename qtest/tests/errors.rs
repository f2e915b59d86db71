//! QEMU's failures reach the test as typed errors: a refused command, a
//! QEMU that died (with its stderr), and errors of the `Mmio`/`PhysMem`
//! adapters, which cannot return them, kept for `Qemu::check`.

mod common;

use viommu_qtest::{Error, IommuOptions, QtestMem, QtestMmio, RAM_SIZE};
use vtd_regs::{MemError, Mmio, PhysAddr, PhysMem};

#[test]
fn refused_commands_and_out_of_range_accesses_are_errors() {
    let qemu = common::start(&IommuOptions::default());
    let q = qemu.qtest();
    assert!(matches!(q.command("no_such_command"), Err(Error::Refused { .. })));
    // The connection survives a refused command.
    assert_eq!(q.readl(viommu_qtest::VTD_BASE), Ok(0x10));

    let mem = QtestMem::new(&qemu);
    let end = PhysAddr::new(RAM_SIZE);
    assert_eq!(mem.read_u64(end), Err(MemError::OutOfRange { addr: end, len: 8 }));
    // Refused before reaching QEMU: nothing to record.
    qemu.check().unwrap();

    let mut mmio = QtestMmio::new(&qemu);
    assert_eq!(mmio.read64(0x1000), u64::MAX);
    mmio.write32(0x1A, 0);
    assert!(matches!(qemu.check(), Err(Error::OutOfRange { .. })));
}

#[test]
fn a_dead_qemu_is_reported_with_its_stderr() {
    let qemu = common::start(&IommuOptions::default());
    // A `read` without its length makes QEMU abort instead of answering.
    let e = qemu.qtest().command("read 0x0").unwrap_err();
    let Error::Closed { stderr } = &e else { panic!("expected Closed, got {e:?}") };
    assert!(!stderr.is_empty());
    // Every later command fails the same way, and the adapters record it.
    assert_eq!(qemu.qtest().readl(PhysAddr::new(0)), Err(e.clone()));
    assert_eq!(QtestMmio::new(&qemu).read32(0), u32::MAX);
    assert_eq!(qemu.check(), Err(e));
}
