//! What the VMM (`viommu-eval`) and the guest agree on: the guest-physical
//! layout and the doorbell protocol. Compiled into both crates.
//!
//! The guest runs identity-mapped (virtual = guest-physical). It reports
//! progress by 64-bit writes to the doorbell page, which is not backed by
//! RAM, so every write is a `KVM_EXIT_MMIO` in any execution mode; its raw
//! samples go to RAM at [`RESULTS`], which the VMM reads after
//! [`DOORBELL_DONE`].

/// Guest RAM size, one memory slot at guest-physical 0.
pub const RAM_SIZE: u64 = 64 << 20;
/// Where the guest image is linked (`link.ld`) and loaded.
pub const IMAGE_BASE: u64 = 0x20_0000;
/// Initial stack pointer (grows down, below the image).
pub const STACK_TOP: u64 = 0x1F_F000;
/// The guest's PVM virtual interrupt-flag area (16 bytes, zero: interrupts
/// disabled), registered by the VMM on PVM hosts for a CPL 0 guest.
pub const PVM_VIF: u64 = 0xA000;
/// The VT-d remapping unit's register page (the DMAR table's register base
/// for the emulated unit); accesses exit to the VMM, which emulates it.
pub const VTD_BASE: u64 = 0xFED9_0000;
/// Control page right after the register page: guest-to-VMM events.
pub const DOORBELL: u64 = VTD_BASE + 0x1000;
/// Doorbell offset: the value written starts phase `value` (the VMM takes
/// a wall-clock timestamp and counts exits per phase).
pub const DOORBELL_PHASE: u64 = 0x0;
/// Doorbell offset: the guest is done and [`Results`] is valid.
pub const DOORBELL_DONE: u64 = 0x8;
/// Doorbell offset: the guest panicked; the value is a code.
pub const DOORBELL_PANIC: u64 = 0x10;

/// Page the VMM registers as KVM coalesced MMIO: writes are queued in a
/// ring by the host kernel instead of exiting (comparison only; a real
/// register page cannot be coalesced).
pub const COALESCED_PAGE: u64 = VTD_BASE + 0x2000;
/// Port the guest writes in the PIO phase (the VMM ignores the data).
pub const PROBE_PORT: u16 = 0x1000;

/// Doorbell offset: the faulting RIP of the exception reported through
/// [`DOORBELL_PANIC`] (written first).
pub const DOORBELL_FAULT_RIP: u64 = 0x18;
/// Doorbell offset: the error code of that exception (written first).
pub const DOORBELL_FAULT_ERR: u64 = 0x20;
/// Value written to [`DOORBELL_PANIC`] by the Rust panic handler; an
/// exception writes its vector (0..=255) instead.
pub const PANIC_RUST: u64 = 0x100;

/// Exception stubs (`.text.vectors` in `link.ld`): stub `v` of the IDT is at
/// `VECTOR_STUBS + v * VECTOR_STUB_SIZE`.
pub const VECTOR_STUBS: u64 = IMAGE_BASE + 0x1000;
/// Bytes per exception stub.
pub const VECTOR_STUB_SIZE: u64 = 16;

/// Guest-physical address of the [`Results`] header.
pub const RESULTS: u64 = 0x100_0000;
/// Guest-physical address of the sample arrays (u64 each), in the order
/// `rdtsc, mmio_write, mmio_read, loop (LOOP_ROUNDS used), pio, coalesced`,
/// each array `SAMPLES` long.
pub const SAMPLE_BASE: u64 = RESULTS + 0x1000;
/// Samples per timed operation.
pub const SAMPLES: u64 = 2000;
/// Rounds of the timed loop.
pub const LOOP_ROUNDS: u64 = 16;
/// Iterations per round of the timed loop.
pub const LOOP_ITERS: u64 = 20_000;
/// Instructions per iteration of the timed loop (`add; dec; jnz`).
pub const LOOP_INSNS: u64 = 3;
/// Register offset the MMIO probe writes and reads (VT-d FECTL_REG's
/// neighbour FEDATA_REG, 0x3C: a plain 32-bit read/write register, §11.4.4).
pub const PROBE_REG: u64 = 0x3C;

/// Word the VMM writes before the guest starts (bits below).
pub const CONFIG: u64 = RESULTS + 0x800;
/// [`CONFIG`] bit: skip the port-write phase. Set for PVM's native
/// supervisor mode on this host, where `out` (a #GP at hardware CPL 3 that
/// the host should emulate) ends the VM with a triple fault.
pub const CONFIG_SKIP_PIO: u64 = 1 << 0;

/// [`CONFIG`] bit: run the evaluation (the DMA driver's receive loop with
/// the parameters at [`EVAL_PARAMS`]) instead of the probe.
pub const CONFIG_EVAL: u64 = 1 << 1;
/// Where the VMM writes the evaluation's parameters
/// (`viommu_eval_driver::Params::to_words`).
pub const EVAL_PARAMS: u64 = RESULTS + 0x900;
/// Where the guest leaves the evaluation's report
/// (`viommu_eval_driver::Report::to_words`).
pub const EVAL_REPORT: u64 = RESULTS + 0xA00;
/// Doorbell offset: the NIC's receive doorbell; the value is the number
/// of posted receive ring slots (from slot 0). The device model completes
/// them before the guest resumes (`viommu_eval_driver::Doorbell::Receive`).
pub const DOORBELL_NIC: u64 = 0x28;
/// Doorbell offset: the NIC's transmit doorbell; the value is the number
/// of posted transmit ring slots. The device model sends them, then
/// delivers the client's next requests, before the guest resumes
/// (`viommu_eval_driver::Doorbell::Transmit`).
pub const DOORBELL_NIC_TX: u64 = 0x30;

/// Phases the guest announces through [`DOORBELL_PHASE`].
pub mod phase {
    /// Back-to-back RDTSC (timer overhead).
    pub const RDTSC: u64 = 1;
    /// The timed loop.
    pub const LOOP: u64 = 2;
    /// 32-bit MMIO write, then read, of the VT-d register page.
    pub const MMIO: u64 = 3;
    /// 32-bit port write (`out`): an exit without a page fault.
    pub const PIO: u64 = 4;
    /// 32-bit write to the coalesced page: handled in the host kernel,
    /// no exit to the VMM.
    pub const COALESCED: u64 = 5;
    /// Everything done.
    pub const END: u64 = 6;
    /// Evaluation: unit bring-up.
    pub const BRINGUP: u64 = 7;
    /// Evaluation: the workload (receive loop or request-response).
    pub const RECEIVE: u64 = 8;
}

/// Value of [`Results::magic`] once the guest filled the samples.
pub const MAGIC: u64 = 0x7669_6f6d_6d75_6576; // "viommuev"

/// Header the guest writes at [`RESULTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Results {
    /// [`MAGIC`] when valid.
    pub magic: u64,
    /// Nonzero if the guest found itself at hardware CPL 3 (PVM native).
    pub cpl3: u64,
    /// Value the guest read back from [`PROBE_REG`] on the last iteration.
    pub last_read: u64,
}

/// Byte offset of the `index`th sample array within [`SAMPLE_BASE`].
#[must_use]
pub const fn sample_array(index: u64) -> u64 {
    SAMPLE_BASE + index * SAMPLES * 8
}
