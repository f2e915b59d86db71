//! The evaluation guest: runs identity-mapped in 64-bit mode (entered by
//! the VMM, no firmware), times RDTSC itself, a fixed loop, 32-bit
//! accesses to the emulated VT-d register page, a port write and a
//! coalesced-MMIO write, and leaves raw samples in RAM for the VMM (layout
//! in `abi.rs`). No floating point and no formatting: the VMM does the
//! statistics.
#![no_std]
#![no_main]

#[allow(dead_code)] // reason: shared with the VMM, which uses other items
mod abi;
mod eval;
mod libc_shim;
mod ram;

use core::arch::{asm, global_asm, x86_64::_rdtsc};

global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    mov rsp, {stack}",
    "    call {main}",
    "2:  jmp 2b",
    stack = const abi::STACK_TOP,
    main = sym guest_main,
);

// One 16-byte stub per vector (the IDT built by the VMM points here): push a
// zero error code where the CPU pushes none, push the vector, and report
// vector, RIP and error code through the doorbell page.
global_asm!(
    ".section .text.vectors, \"ax\"",
    ".altmacro",
    ".macro vector_stub v",
    "    .balign 16",
    "    .if (\\v == 8) || (\\v >= 10 && \\v <= 14) || (\\v == 17) || (\\v == 21) || (\\v == 29) || (\\v == 30)",
    "    .else",
    "    push 0",
    "    .endif",
    "    push \\v",
    "    jmp {common}",
    ".endm",
    ".set vec_i, 0",
    ".rept 256",
    "    vector_stub %vec_i",
    "    .set vec_i, vec_i+1",
    ".endr",
    common = sym exception_common,
);

#[unsafe(naked)]
extern "C" fn exception_common() -> ! {
    core::arch::naked_asm!(
        "mov rax, [rsp + 16]",
        "mov [{rip}], rax",
        "mov rax, [rsp + 8]",
        "mov [{err}], rax",
        "mov rax, [rsp]",
        "mov [{panic}], rax",
        "2: jmp 2b",
        rip = const abi::DOORBELL + abi::DOORBELL_FAULT_RIP,
        err = const abi::DOORBELL + abi::DOORBELL_FAULT_ERR,
        panic = const abi::DOORBELL + abi::DOORBELL_PANIC,
    )
}

/// Writes a 64-bit value to guest-physical `addr` (identity-mapped).
pub(crate) fn write64(addr: u64, value: u64) {
    // SAFETY: the VMM maps `addr` (RAM or an MMIO page it emulates) 1:1.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

pub(crate) fn doorbell(offset: u64, value: u64) {
    write64(abi::DOORBELL + offset, value);
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects.
    unsafe { _rdtsc() }
}

/// `iters` iterations of `add; dec; jnz` (abi::LOOP_INSNS instructions).
fn spin(iters: u64) -> u64 {
    let mut acc: u64 = 0;
    // SAFETY: register-only loop.
    unsafe {
        asm!(
            "2:",
            "add {acc}, {n}",
            "dec {n}",
            "jnz 2b",
            acc = inout(reg) acc,
            n = inout(reg) iters => _,
            options(nomem, nostack),
        );
    }
    acc
}

fn current_cpl() -> u64 {
    let cs: u16;
    // SAFETY: reads the CS selector.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    u64::from(cs & 3)
}

extern "C" fn guest_main() -> ! {
    // SAFETY: RAM; the VMM wrote the word before starting the guest.
    let config = unsafe { core::ptr::read_volatile(abi::CONFIG as *const u64) };
    if config & abi::CONFIG_EVAL != 0 {
        eval::main();
    }
    probe_main(config)
}

fn probe_main(config: u64) -> ! {
    let rdtsc_out = abi::sample_array(0);
    let write_out = abi::sample_array(1);
    let read_out = abi::sample_array(2);
    let loop_out = abi::sample_array(3);

    doorbell(abi::DOORBELL_PHASE, abi::phase::RDTSC);
    for i in 0..abi::SAMPLES {
        let t0 = rdtsc();
        let t1 = rdtsc();
        write64(rdtsc_out + i * 8, t1.wrapping_sub(t0));
    }

    doorbell(abi::DOORBELL_PHASE, abi::phase::LOOP);
    for i in 0..abi::LOOP_ROUNDS {
        let t0 = rdtsc();
        core::hint::black_box(spin(abi::LOOP_ITERS));
        let t1 = rdtsc();
        write64(loop_out + i * 8, t1.wrapping_sub(t0));
    }

    doorbell(abi::DOORBELL_PHASE, abi::phase::MMIO);
    let reg = (abi::VTD_BASE + abi::PROBE_REG) as *mut u32;
    let mut last = 0u32;
    for i in 0..abi::SAMPLES {
        let t0 = rdtsc();
        // SAFETY: the VMM emulates the VT-d register page at VTD_BASE.
        unsafe { core::ptr::write_volatile(reg, i as u32) };
        let t1 = rdtsc();
        // SAFETY: as above.
        last = unsafe { core::ptr::read_volatile(reg) };
        let t2 = rdtsc();
        write64(write_out + i * 8, t1.wrapping_sub(t0));
        write64(read_out + i * 8, t2.wrapping_sub(t1));
    }

    doorbell(abi::DOORBELL_PHASE, abi::phase::PIO);
    let pio_out = abi::sample_array(4);
    let pio_samples = if config & abi::CONFIG_SKIP_PIO != 0 { 0 } else { abi::SAMPLES };
    for i in 0..pio_samples {
        let t0 = rdtsc();
        // SAFETY: the VMM serves the port; IOPL/CPL permit it (see vm.rs).
        unsafe {
            asm!("out dx, eax", in("dx") abi::PROBE_PORT, in("eax") i as u32, options(nomem, nostack))
        };
        let t1 = rdtsc();
        write64(pio_out + i * 8, t1.wrapping_sub(t0));
    }

    doorbell(abi::DOORBELL_PHASE, abi::phase::COALESCED);
    let coalesced_out = abi::sample_array(5);
    let coalesced = abi::COALESCED_PAGE as *mut u32;
    for i in 0..abi::SAMPLES {
        let t0 = rdtsc();
        // SAFETY: the VMM registers this page as coalesced MMIO.
        unsafe { core::ptr::write_volatile(coalesced, i as u32) };
        let t1 = rdtsc();
        write64(coalesced_out + i * 8, t1.wrapping_sub(t0));
    }

    doorbell(abi::DOORBELL_PHASE, abi::phase::END);

    write64(abi::RESULTS + 8, current_cpl());
    write64(abi::RESULTS + 16, u64::from(last));
    write64(abi::RESULTS, abi::MAGIC);
    doorbell(abi::DOORBELL_DONE, 1);
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    doorbell(abi::DOORBELL_PANIC, abi::PANIC_RUST);
    loop {
        core::hint::spin_loop();
    }
}
