//! The no_std gate (see Cargo.toml). Naming each crate forces it to be linked.
#![no_std]
#![no_main]

use core::panic::PanicInfo;

#[allow(unused_imports)]
use {
    invalidation as _, iommu_platform as _, irq_remap as _, iova_alloc as _, teardown as _, viommu as _,
    viommu_eval_driver as _, viommu_unikernel as _, vtd_dma as _, vtd_emu as _, vtd_regs as _,
    vtd_tables as _,
};

#[cfg(feature = "alloc")]
extern crate alloc;

/// A kernel supplies its own allocator; this one only has to exist.
#[cfg(feature = "alloc")]
struct NoHeap;

// SAFETY: `alloc` always reports exhaustion (null), which the contract allows;
// `dealloc` is never called with a block this allocator handed out.
#[cfg(feature = "alloc")]
unsafe impl alloc::alloc::GlobalAlloc for NoHeap {
    unsafe fn alloc(&self, _layout: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}

#[cfg(feature = "alloc")]
#[global_allocator]
static HEAP: NoHeap = NoHeap;

#[panic_handler]
fn panic(_info: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
