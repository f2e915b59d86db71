#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| viommu_fuzz::viommu_nested(data));
