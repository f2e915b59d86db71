//! Workloads of the benchmarks in `benches/`; the test bed they run on is
//! `viommu_examples::Testbed`, the vIOMMU benchmarks' host is [`host`].

pub mod host;
