//! The unikernel's receive path (`examples/unikernel`, no_std) on a
//! simulated machine: a software VT-d behind a DMAR table; the NIC writes
//! each frame into its buffer through the unit, page by page.
//!
//! `cargo run --release -p viommu-examples --bin unikernel`

use viommu_examples::Machine;
use viommu_unikernel::{FRAME, receive};

fn main() {
    let machine = Machine::new();
    let frame = [0x5a; FRAME as usize];
    let nic = |iova, _| machine.unit.dma_write(Machine::NIC, iova, &frame).expect("NIC DMA");
    let registers = |base| machine.registers(base);
    let dmar = machine.dmar();
    let report = receive(machine.platform(), dmar, registers, Machine::NIC, Machine::RING, nic)
        .expect("the driver runs");
    println!("{report:?}");
    println!(
        "{} frames received, {} buffers mapped afresh, {} queue tail writes",
        report.maps,
        report.maps - report.reused,
        report.tail_writes
    );
}
