//! What one run measured ([`RunResult`]): the driver's report, what the
//! device, the VMM, the vIOMMU and the sidecore saw, and the statistics of
//! the driver's per-buffer or per-request samples ([`OpStats`]).

use std::time::Duration;

use viommu::ViommuCounters;
use viommu_eval_driver::{Policy, Report, Workload, layout};
use vtd_regs::{PhysAddr, PhysMem};

use crate::{
    frontend::Frontend, nic::NicCounters, settings::Job, sidecore::SidecoreStats, stats::Summary,
};

/// The result of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    /// The measurement it is for.
    pub job: Job,
    /// Front end.
    pub frontend: Frontend,
    /// Policy.
    pub policy: Policy,
    /// What the driver measured.
    pub report: Report,
    /// Register accesses that reached the VMM (exits) or were charged
    /// (modelled) during the workload.
    pub exits: u64,
    /// What the device did.
    pub nic: NicCounters,
    /// The sidecore's work, for sidecore runs.
    pub sidecore: Option<SidecoreStats>,
    /// Pins and unpins of guest pages by the vIOMMU during the workload,
    /// for runs on a vIOMMU.
    pub pins: Option<PinCounts>,
    /// The most guest pages the vIOMMU held pinned at a DMA of the device
    /// (the shadowing vIOMMU: the pages mapped; the nested one: all guest
    /// RAM, pinned before the guest ran; under the policy *none*, the
    /// pass-through domain's: all guest RAM), for runs on a vIOMMU.
    pub pinned_peak: Option<u64>,
    /// TSC cycles the VMM spent serving register exits (the vIOMMU's
    /// emulation and shadowing, not the exit itself) during the workload,
    /// for trap-and-emulate runs in a VM.
    pub vmm_cycles: Option<u64>,
    /// Wall time of the run, setup included.
    pub wall: Duration,
    /// Statistics of the driver's samples.
    pub samples: OpStats,
}

/// Guest pages the vIOMMU pinned and unpinned (its `GuestPinner`'s work,
/// as `viommu::ViommuCounters` counts it; none by the nested vIOMMU,
/// which pins all guest RAM before the guest runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinCounts {
    /// Pins taken.
    pub pins: u64,
    /// Pins dropped (each after the physical unit's invalidation).
    pub unpins: u64,
}

impl PinCounts {
    /// The vIOMMU's counts now.
    #[must_use]
    pub fn of(c: ViommuCounters) -> Self {
        Self { pins: c.pins, unpins: c.unpins }
    }

    /// What was counted since `start`.
    #[must_use]
    pub fn since(self, start: Self) -> Self {
        Self {
            pins: self.pins.saturating_sub(start.pins),
            unpins: self.unpins.saturating_sub(start.unpins),
        }
    }
}

/// Statistics of the driver's samples: one per buffer (receive stream) or
/// per request (request-response), in TSC cycles.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpStats {
    /// Receive stream: median cycles of one map and of one unmap.
    pub map_unmap_median: (u64, u64),
    /// Mean cycles per buffer (map + completion to end of unmap) or per
    /// request (its processing and its share of the transmit
    /// completions), preempted ones dropped.
    pub mean: f64,
    /// Median cycles per buffer or request, all samples.
    pub median: u64,
    /// 99th percentile, all samples.
    pub p99: u64,
    /// Samples taken as preempted ([`PREEMPTED_CYCLES`]) and dropped from
    /// `mean`.
    pub preempted: u64,
    /// Request-response: mean frames per response.
    pub frames: f64,
}

/// A sample more than this many TSC cycles (385 us at 2.6 GHz) above the
/// run's median is taken as preempted: longer than any batched flush or
/// reclaim these runs do (a few exits, under 300,000 cycles), shorter
/// than a scheduler time slice. The host's CPUs are shared, so the vCPU
/// (or the sidecore) loses the CPU now and then; those samples would
/// measure the scheduler.
pub const PREEMPTED_CYCLES: u64 = 1_000_000;

impl OpStats {
    /// The statistics of the samples the driver left in `mem` for `ops`
    /// buffers (`Workload::Receive`) or requests.
    pub fn read<M: PhysMem>(mem: &M, workload: Workload, ops: u64) -> Result<Self, String> {
        let n = ops.min(layout::MAX_SAMPLES);
        let (mut map, mut unmap, mut totals) = (Vec::new(), Vec::new(), Vec::new());
        let mut frames = 0;
        for i in 0..n {
            let at = |w: u64| PhysAddr::new(layout::SAMPLES + i * layout::SAMPLE_BYTES + w * 8);
            let read = |w| mem.read_u64(at(w)).map_err(|e| e.to_string());
            let (a, b, c) = (read(0)?, read(1)?, read(2)?);
            // Receive: map, unmap, completion to end of unmap. Requests:
            // processing, frames, share of the transmit completions.
            totals.push(a.saturating_add(c));
            match workload {
                Workload::Receive => {
                    map.push(a);
                    unmap.push(b);
                }
                Workload::RequestResponse => frames += b,
            }
        }
        let all = Summary::of(&totals);
        let limit = all.median.saturating_add(PREEMPTED_CYCLES);
        let kept: Vec<u64> = totals.iter().copied().filter(|&t| t <= limit).collect();
        Ok(OpStats {
            map_unmap_median: (Summary::of(&map).median, Summary::of(&unmap).median),
            mean: Summary::of(&kept).mean,
            median: all.median,
            p99: all.p99,
            preempted: n - kept.len() as u64,
            frames: frames as f64 / n.max(1) as f64,
        })
    }
}

impl RunResult {
    /// Buffers (receive stream) or requests the run was measured over.
    #[must_use]
    pub fn ops(&self) -> u64 {
        match self.job.workload() {
            Workload::Receive => self.report.buffers,
            Workload::RequestResponse => self.report.requests,
        }
    }

    fn per_op(&self, x: u64) -> f64 {
        x as f64 / self.ops().max(1) as f64
    }

    /// Median cycles per map (receive stream).
    #[must_use]
    pub fn map_median(&self) -> u64 {
        self.samples.map_unmap_median.0
    }
    /// Median cycles per unmap (receive stream).
    #[must_use]
    pub fn unmap_median(&self) -> u64 {
        self.samples.map_unmap_median.1
    }
    /// Mean cycles per map.
    #[must_use]
    pub fn map_cycles(&self) -> f64 {
        self.report.map_cycles as f64 / self.report.buffers.max(1) as f64
    }
    /// Mean cycles per unmap.
    #[must_use]
    pub fn unmap_cycles(&self) -> f64 {
        self.report.unmap_cycles as f64 / self.report.buffers.max(1) as f64
    }
    /// Mean driver cycles per buffer or request, preempted ones dropped
    /// (see [`PREEMPTED_CYCLES`]).
    #[must_use]
    pub fn cycles_per_op(&self) -> f64 {
        self.samples.mean
    }
    /// What the best of a configuration's repeated runs minimises (host
    /// noise only adds to it): mean cycles per buffer or request for the
    /// throughput jobs, the 99th percentile of the round trip for the
    /// latency job (its median hardly moves; its tail is where a
    /// preempted vCPU or sidecore shows).
    #[must_use]
    pub fn noise(&self) -> f64 {
        match self.job {
            Job::Latency => self.samples.p99 as f64,
            Job::Stream | Job::Web => self.cycles_per_op(),
        }
    }
    /// Mean loop cycles per buffer or request, doorbells excluded,
    /// preemption included.
    #[must_use]
    pub fn loop_cycles_per_op(&self) -> f64 {
        self.per_op(self.report.loop_cycles)
    }
    /// VMM cycles per register exit serving it (trap & emulate in a VM).
    #[must_use]
    pub fn vmm_cycles_per_exit(&self) -> Option<f64> {
        self.vmm_cycles.map(|c| c as f64 / self.exits.max(1) as f64)
    }
    /// Exits (or charged accesses) per buffer or request.
    #[must_use]
    pub fn exits_per_op(&self) -> f64 {
        self.per_op(self.exits)
    }
    /// IQT writes per buffer or request.
    #[must_use]
    pub fn iqt_per_op(&self) -> f64 {
        self.per_op(self.report.iqt_writes)
    }
    /// Maps that reused a mapping, per buffer or request.
    #[must_use]
    pub fn reuse_per_op(&self) -> f64 {
        self.per_op(self.report.reuse_hits)
    }
    /// Guest pages pinned and unpinned by the vIOMMU per buffer or
    /// request, for runs on a vIOMMU.
    #[must_use]
    pub fn pins_per_op(&self) -> Option<(f64, f64)> {
        self.pins.map(|p| (self.per_op(p.pins), self.per_op(p.unpins)))
    }
}

/// The driver's report, if the run did what it was asked: no error, every
/// buffer received (stream), or every request served and every response
/// received whole and intact by the client (request-response).
pub fn check(
    report: Report,
    nic: &NicCounters,
    params: &viommu_eval_driver::Params,
) -> Result<Report, String> {
    if report.error != 0 {
        let what = match report.error {
            1 => "remapping unit",
            2 => "tables",
            3 => {
                "invalidation (detail: 1 queue full, 2 timeout, 3 unsupported, 4 out of frames, 5 memory, 6 unit, 7 descriptor, 8 queue error)"
            }
            4 => "queue setup",
            5 => "mapping",
            6 => "memory",
            7 => "device did not complete (detail: buffer or request)",
            8 => "wrong data (detail: buffer or request)",
            9 => "parameters out of range",
            _ => "unknown",
        };
        return Err(format!(
            "driver error {} [{what}], detail {} (device: {nic:?})",
            report.error, report.error_seq
        ));
    }
    let n = params.buffers;
    let done = match params.workload {
        Workload::Receive => report.buffers == n && nic.frames == n,
        Workload::RequestResponse => {
            report.requests == n && nic.requests == n && nic.responses == n && nic.bad_frames == 0
        }
    };
    if !done {
        return Err(format!(
            "{:?}: asked for {n}, the driver did {} buffers and {} requests (device: {nic:?})",
            params.workload, report.buffers, report.requests
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_emu::mem::HeapMemory;

    fn samples(words: &[(u64, u64, u64)]) -> HeapMemory {
        let mem = HeapMemory::new(layout::RAM_SIZE as usize);
        for (i, &(a, b, c)) in words.iter().enumerate() {
            let at = layout::SAMPLES + i as u64 * layout::SAMPLE_BYTES;
            for (w, v) in [a, b, c].into_iter().enumerate() {
                mem.write_u64(PhysAddr::new(at + w as u64 * 8), v).expect("in RAM");
            }
        }
        mem
    }

    #[test]
    fn a_preempted_sample_is_dropped_from_the_mean_not_from_the_tail() {
        let mut words = vec![(100, 50, 900); 99];
        words.push((100, 50, 900 + 2 * PREEMPTED_CYCLES));
        let mem = samples(&words);
        let s = OpStats::read(&&mem, Workload::Receive, 100).expect("stats");
        assert_eq!((s.map_unmap_median, s.median, s.preempted), ((100, 50), 1000, 1));
        assert!((s.mean - 1000.0).abs() < 1e-9, "{}", s.mean);
        let r = OpStats::read(&&mem, Workload::RequestResponse, 100).expect("stats");
        assert_eq!((r.median, r.preempted, r.frames), (1000, 1, 50.0));
    }
}
