//! Workload generators shared by the benchmarks in `benches/`.
