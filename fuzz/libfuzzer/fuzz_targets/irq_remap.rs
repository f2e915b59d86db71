#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| viommu_fuzz::irq_remap(data));
