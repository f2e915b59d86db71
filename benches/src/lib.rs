//! Workloads of the benchmarks in `benches/`; the test bed they run on is
//! `viommu_examples::Testbed`.
