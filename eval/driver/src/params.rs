//! What one run measures ([`Params`]: a policy and a workload) and what it
//! found ([`Report`]), with a fixed word encoding: the VMM writes the
//! parameters into guest RAM and reads the report back from it.

use core::time::Duration;

use invalidation::FlushConfig;
use teardown::{MapperConfig, Reuse};
use vtd_regs::Iova;

use crate::layout::DOMAIN;

/// The mapping policy of a run: the seed's three, asynchronous
/// invalidation, and the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No IOMMU: the device gets physical addresses; nothing is mapped.
    NoIommu,
    /// Single-use mappings, strict invalidation on every unmap.
    Secure,
    /// Single-use mappings, deferred (batched) invalidation, Linux's lazy
    /// mode: batches of 250 or 10 ms.
    Relaxed,
    /// Single-use mappings, asynchronous invalidation: batches as
    /// [`Policy::Relaxed`]'s, posted with their wait descriptor without
    /// waiting; the batch's IOVAs come back when a later call sees it
    /// completed (`invalidation::FlushMode::Async`).
    Async,
    /// Optimistic teardown: stale mappings reused on a hit, reclaimed in one
    /// deferred batch at the quota or time limit.
    Optimistic,
}

impl Policy {
    /// Every policy, baseline first.
    pub const ALL: [Policy; 5] =
        [Policy::NoIommu, Policy::Secure, Policy::Relaxed, Policy::Async, Policy::Optimistic];

    /// The policies with an IOMMU, as the tables order them.
    pub const PROTECTED: [Policy; 4] =
        [Policy::Secure, Policy::Relaxed, Policy::Async, Policy::Optimistic];

    /// Short name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Policy::NoIommu => "none",
            Policy::Secure => "secure",
            Policy::Relaxed => "relaxed",
            Policy::Async => "async",
            Policy::Optimistic => "optimistic",
        }
    }

    const fn code(self) -> u64 {
        match self {
            Policy::NoIommu => 0,
            Policy::Secure => 1,
            Policy::Relaxed => 2,
            Policy::Optimistic => 3,
            Policy::Async => 4,
        }
    }

    const fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Policy::NoIommu),
            1 => Some(Policy::Secure),
            2 => Some(Policy::Relaxed),
            3 => Some(Policy::Optimistic),
            4 => Some(Policy::Async),
            _ => None,
        }
    }
}

/// What the driver does with the NIC in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Receive a stream of frames ([`crate::nic_loop`]): netperf TCP_STREAM's
    /// receive side.
    Receive,
    /// Serve requests ([`crate::request_response`]): each request arrives in
    /// a receive buffer, its response leaves in transmit buffers the device
    /// reads; the shape of a web server (many outstanding requests, pages
    /// of several frames) or of netperf UDP_RR (one outstanding request,
    /// one small response).
    RequestResponse,
}

impl Workload {
    const fn code(self) -> u64 {
        match self {
            Workload::Receive => 0,
            Workload::RequestResponse => 1,
        }
    }

    const fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Workload::Receive),
            1 => Some(Workload::RequestResponse),
            _ => None,
        }
    }
}

/// Linux's deferred-flush batch (`IOVA_FQ_SIZE` was 256; 250 leaves room).
pub const DEFERRED_BATCH: usize = 250;
/// Linux's deferred-flush deadline.
pub const DEFERRED_DEADLINE: Duration = Duration::from_millis(10);

/// The parameters of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The mapping policy.
    pub policy: Policy,
    /// What the driver does.
    pub workload: Workload,
    /// [`Workload::Receive`]: buffers to receive;
    /// [`Workload::RequestResponse`]: requests to serve.
    pub buffers: u64,
    /// Buffers posted per doorbell (at most [`crate::ring::SLOTS`]).
    pub batch: u64,
    /// Optimistic teardown: stale mappings that trigger a reclaim.
    pub quota: u64,
    /// Optimistic teardown: oldest a stale mapping may get, microseconds.
    pub time_limit_us: u64,
    /// TSC cycles of protocol work per buffer (the rest of a network
    /// stack's per-packet cost; see the eval README).
    pub work_cycles: u64,
    /// TSC frequency in kHz, for deadlines.
    pub tsc_khz: u64,
    /// [`Workload::RequestResponse`]: requests outstanding at once (the
    /// client's concurrency, at most [`crate::ring::SLOTS`]).
    pub concurrency: u64,
    /// [`Workload::RequestResponse`]: TSC cycles of application work per
    /// request (on top of [`work_cycles`](Self::work_cycles) per frame).
    pub request_cycles: u64,
    /// [`Workload::RequestResponse`]: smallest response, bytes.
    pub response_min: u64,
    /// [`Workload::RequestResponse`]: largest response, bytes (response
    /// sizes are spread uniformly over `[response_min, response_max]`,
    /// [`crate::request_response::response_len`]).
    pub response_max: u64,
    /// [`Workload::RequestResponse`]: 0, each response is written by the
    /// CPU into transmit buffers (a datagram); `n`, a static site of `n`
    /// files whose sizes are spread over `[response_min, response_max]`,
    /// each response a header written by the CPU and the file's bytes sent
    /// from its page-cache pages (a web server's `sendfile`).
    pub files: u64,
}

/// Words in the encoding of [`Params`].
pub const PARAM_WORDS: usize = 13;

impl Params {
    /// The encoding the VMM writes.
    #[must_use]
    pub const fn to_words(&self) -> [u64; PARAM_WORDS] {
        [
            self.policy.code(),
            self.buffers,
            self.batch,
            self.quota,
            self.time_limit_us,
            self.work_cycles,
            self.tsc_khz,
            self.workload.code(),
            self.concurrency,
            self.request_cycles,
            self.response_min,
            self.response_max,
            self.files,
        ]
    }

    /// Decodes [`to_words`](Self::to_words); `None` for an unknown policy
    /// or workload.
    #[must_use]
    pub const fn from_words(w: &[u64; PARAM_WORDS]) -> Option<Self> {
        let Some(policy) = Policy::from_code(w[0]) else { return None };
        let Some(workload) = Workload::from_code(w[7]) else { return None };
        Some(Params {
            policy,
            workload,
            buffers: w[1],
            batch: w[2],
            quota: w[3],
            time_limit_us: w[4],
            work_cycles: w[5],
            tsc_khz: w[6],
            concurrency: w[8],
            request_cycles: w[9],
            response_min: w[10],
            response_max: w[11],
            files: w[12],
        })
    }

    /// The mapper's settings for this run's policy (`None` without IOMMU).
    #[must_use]
    pub fn mapper_config(&self) -> Option<MapperConfig> {
        let (reuse, flush) = match self.policy {
            Policy::NoIommu => return None,
            Policy::Secure => (Reuse::SingleUse, FlushConfig::strict()),
            Policy::Relaxed => {
                (Reuse::SingleUse, FlushConfig::deferred(DEFERRED_BATCH, DEFERRED_DEADLINE))
            }
            Policy::Async => {
                (Reuse::SingleUse, FlushConfig::asynchronous(DEFERRED_BATCH, DEFERRED_DEADLINE))
            }
            Policy::Optimistic => {
                let time_limit = Duration::from_micros(self.time_limit_us);
                let quota = usize::try_from(self.quota).unwrap_or(usize::MAX).max(1);
                (
                    Reuse::Optimistic { quota, time_limit },
                    FlushConfig::deferred(DEFERRED_BATCH, time_limit),
                )
            }
        };
        Some(MapperConfig { reuse, flush, domain: DOMAIN, dma_limit: Iova::new(1 << 32) })
    }
}

/// What one run measured. Cycles are TSC ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// DMA buffers mapped, used by the device and unmapped (received
    /// frames; under [`Workload::RequestResponse`] request and response
    /// buffers alike).
    pub buffers: u64,
    /// Requests served ([`Workload::RequestResponse`]).
    pub requests: u64,
    /// Cycles spent in `map`, summed.
    pub map_cycles: u64,
    /// Cycles spent in `unmap`, summed.
    pub unmap_cycles: u64,
    /// Cycles of the receive loop, doorbells excluded.
    pub loop_cycles: u64,
    /// Cycles spent ringing the device's doorbell (the device model's
    /// time; excluded from `loop_cycles`).
    pub kick_cycles: u64,
    /// Doorbells rung.
    pub kicks: u64,
    /// Mapper: map calls that reused a mapping.
    pub reuse_hits: u64,
    /// Mapper: mappings torn down.
    pub teardowns: u64,
    /// Invalidator: queue-tail (IQT) writes.
    pub iqt_writes: u64,
    /// Invalidator: descriptors submitted.
    pub descriptors: u64,
    /// Invalidator: blocking waits.
    pub waits: u64,
    /// Nonzero: the run failed ([`crate::Error::code`]).
    pub error: u64,
    /// The failing buffer, or which failure ([`crate::Error::detail`]).
    pub error_seq: u64,
}

/// Words in the encoding of [`Report`].
pub const REPORT_WORDS: usize = 14;

impl Report {
    /// The encoding the guest leaves in RAM.
    #[must_use]
    pub const fn to_words(&self) -> [u64; REPORT_WORDS] {
        [
            self.buffers,
            self.map_cycles,
            self.unmap_cycles,
            self.loop_cycles,
            self.kick_cycles,
            self.kicks,
            self.reuse_hits,
            self.teardowns,
            self.iqt_writes,
            self.descriptors,
            self.waits,
            self.error,
            self.error_seq,
            self.requests,
        ]
    }

    /// Decodes [`to_words`](Self::to_words).
    #[must_use]
    pub const fn from_words(w: &[u64; REPORT_WORDS]) -> Self {
        Report {
            buffers: w[0],
            map_cycles: w[1],
            unmap_cycles: w[2],
            loop_cycles: w[3],
            kick_cycles: w[4],
            kicks: w[5],
            reuse_hits: w[6],
            teardowns: w[7],
            iqt_writes: w[8],
            descriptors: w[9],
            waits: w[10],
            error: w[11],
            error_seq: w[12],
            requests: w[13],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_reports_survive_their_word_encoding() {
        for policy in Policy::ALL {
            for workload in [Workload::Receive, Workload::RequestResponse] {
                let p = Params {
                    policy,
                    workload,
                    buffers: 10_000,
                    batch: 32,
                    quota: 256,
                    time_limit_us: 10_000,
                    work_cycles: 3800,
                    tsc_khz: 2_596_000,
                    concurrency: 25,
                    request_cycles: 380_000,
                    response_min: 10 << 10,
                    response_max: 20 << 10,
                    files: 16,
                };
                assert_eq!(Params::from_words(&p.to_words()), Some(p));
            }
        }
        let mut words = Params::from_words(&[0; PARAM_WORDS]).expect("no IOMMU").to_words();
        words[0] = 5;
        assert_eq!(Params::from_words(&words), None, "unknown policy");
        words[0] = 0;
        words[7] = 2;
        assert_eq!(Params::from_words(&words), None, "unknown workload");
        let words: [u64; REPORT_WORDS] = core::array::from_fn(|i| i as u64 * 7 + 1);
        assert_eq!(Report::from_words(&words).to_words(), words);
    }

    #[test]
    fn each_policy_maps_to_the_seeds_configuration() {
        let p = |policy| Params {
            policy,
            quota: 64,
            time_limit_us: 500,
            ..Params::from_words(&[0; PARAM_WORDS]).expect("valid")
        };
        assert_eq!(p(Policy::NoIommu).mapper_config(), None);
        let secure = p(Policy::Secure).mapper_config().expect("iommu");
        assert_eq!((secure.reuse, secure.flush), (Reuse::SingleUse, FlushConfig::strict()));
        let relaxed = p(Policy::Relaxed).mapper_config().expect("iommu");
        assert_eq!(relaxed.reuse, Reuse::SingleUse);
        assert_eq!(relaxed.flush, FlushConfig::deferred(DEFERRED_BATCH, DEFERRED_DEADLINE));
        let asynchronous = p(Policy::Async).mapper_config().expect("iommu");
        assert_eq!(asynchronous.reuse, Reuse::SingleUse);
        let flush = FlushConfig::asynchronous(DEFERRED_BATCH, DEFERRED_DEADLINE);
        assert_eq!(asynchronous.flush, flush);
        let optimistic = p(Policy::Optimistic).mapper_config().expect("iommu");
        let limit = Duration::from_micros(500);
        assert_eq!(optimistic.reuse, Reuse::Optimistic { quota: 64, time_limit: limit });
        assert_eq!(optimistic.flush, FlushConfig::deferred(DEFERRED_BATCH, limit));
    }
}
