//! The few C symbols the compiler emits calls to (`memcpy`, `memset`,
//! `memmove`, `memcmp`, `bcmp`), which a freestanding binary for
//! x86_64-unknown-linux-gnu must supply itself, written with string
//! instructions so that the compiler cannot turn them back into calls; and
//! the unwinding personality symbol the precompiled `core` references
//! (never called: the guest aborts on panic).

use core::arch::asm;

/// # Safety
/// C's `memcpy`: `n` bytes, valid and non-overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; `rep movsb` copies forward (DF=0 by ABI).
    unsafe {
        asm!("rep movsb", inout("rdi") dest => _, inout("rsi") src => _, inout("rcx") n => _,
             options(nostack, preserves_flags))
    };
    dest
}

/// # Safety
/// C's `memmove`: `n` bytes, valid, possibly overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dest is below src or past it.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: copy backwards with DF=1, restored to 0 as the ABI requires.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rdi") dest.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             inout("rcx") n => _, options(nostack))
    };
    dest
}

/// # Safety
/// C's `memset`: `n` bytes at `dest`, valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("rep stosb", inout("rdi") dest => _, inout("rcx") n => _, in("al") c as u8,
             options(nostack, preserves_flags))
    };
    dest
}

/// # Safety
/// C's `memcmp`: `n` bytes at both, valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n`, the caller's contract; volatile keeps this a loop.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// C's `bcmp`: as `memcmp`, only equality matters.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by the precompiled `core`; the guest never unwinds.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
