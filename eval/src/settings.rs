//! What an evaluation measures: its jobs ([`Job`], one per table) and the
//! settings every run shares ([`Settings`]), from which each run's driver
//! parameters are made.

use std::fmt;

use viommu_eval_driver::{Params, Policy, Workload, layout, request_response, ring};

/// Bytes of the request and of the response of the latency job (a small
/// datagram each way, as netperf UDP_RR's).
pub const RR_BYTES: u64 = request_response::REQUEST_LEN;

/// A measurement, one table each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Job {
    /// Tables (a) to (c): the receive stream (netperf TCP_STREAM's receive
    /// side), map/unmap cost, throughput, exits and pins per buffer.
    Stream,
    /// Table (d): a web server (Apache under ApacheBench in the seed):
    /// `concurrency` requests outstanding, each answered with a page of
    /// several frames; requests per second.
    Web,
    /// Table (e): request-response round trips with one request
    /// outstanding and a small response each way (netperf UDP_RR).
    Latency,
}

impl Job {
    /// Every job, in the order they run and are printed.
    pub const ALL: [Job; 3] = [Job::Stream, Job::Web, Job::Latency];

    /// Short name, for the CSV and the progress bar.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Job::Stream => "stream",
            Job::Web => "web",
            Job::Latency => "latency",
        }
    }

    /// What the driver runs for it.
    #[must_use]
    pub const fn workload(self) -> Workload {
        match self {
            Job::Stream => Workload::Receive,
            Job::Web | Job::Latency => Workload::RequestResponse,
        }
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What every run of an evaluation shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Stream: buffers per run.
    pub buffers: u64,
    /// Stream: buffers per doorbell.
    pub batch: u64,
    /// Optimistic teardown quota.
    pub quota: u64,
    /// Optimistic teardown time limit, microseconds.
    pub time_limit_us: u64,
    /// Protocol work per frame (received, request or response), TSC cycles.
    pub work_cycles: u64,
    /// TSC frequency, kHz.
    pub tsc_khz: u64,
    /// Cycles charged per register access by the modelled front end.
    pub modelled_exit_cycles: u64,
    /// Web: requests per run.
    pub requests: u64,
    /// Web: requests outstanding at once.
    pub concurrency: u64,
    /// Web: application work per request, TSC cycles.
    pub request_cycles: u64,
    /// Web: smallest and largest page, bytes.
    pub page_bytes: (u64, u64),
    /// Web: pages (files) on the site, asked for uniformly.
    pub files: u64,
    /// Latency: requests (round trips) per run.
    pub rr_requests: u64,
}

impl Settings {
    /// The defaults of the command line.
    pub const DEFAULT: Settings = Settings {
        buffers: 10_000,
        batch: 32,
        quota: 256,
        time_limit_us: 10_000,
        work_cycles: 3800,
        tsc_khz: 0,
        modelled_exit_cycles: 68_000,
        requests: 500,
        concurrency: 25,
        request_cycles: 380_000,
        page_bytes: (10 << 10, 20 << 10),
        files: 16,
        rr_requests: 2000,
    };

    /// The driver's parameters for `job` under `policy`.
    #[must_use]
    pub fn params(&self, job: Job, policy: Policy) -> Params {
        let base = Params {
            policy,
            workload: job.workload(),
            buffers: self.buffers,
            batch: self.batch,
            quota: self.quota,
            time_limit_us: self.time_limit_us,
            work_cycles: self.work_cycles,
            tsc_khz: self.tsc_khz,
            concurrency: 1,
            request_cycles: 0,
            response_min: 0,
            response_max: 0,
            files: 0,
        };
        match job {
            Job::Stream => base,
            Job::Web => Params {
                buffers: self.requests,
                concurrency: self.concurrency,
                request_cycles: self.request_cycles,
                response_min: self.page_bytes.0,
                response_max: self.page_bytes.1,
                files: self.files,
                ..base
            },
            Job::Latency => Params {
                buffers: self.rr_requests,
                response_min: RR_BYTES,
                response_max: RR_BYTES,
                ..base
            },
        }
    }

    /// Checks that every job's parameters fit the driver's rings, pools
    /// and sample area; says what does not.
    pub fn check(&self) -> Result<(), String> {
        let max = layout::MAX_SAMPLES;
        let web = self.params(Job::Web, Policy::Secure);
        let frames = 1 + request_response::frames(self.page_bytes.1);
        let problems = [
            (self.buffers == 0 || self.buffers > max, format!("--buffers must be 1 to {max}")),
            (
                self.batch == 0 || self.batch > ring::SLOTS,
                format!("--batch must be 1 to {}", ring::SLOTS),
            ),
            (self.quota == 0, "--quota must be at least 1".into()),
            (self.requests == 0 || self.requests > max, format!("--requests must be 1 to {max}")),
            (
                self.rr_requests == 0 || self.rr_requests > max,
                format!("--rr-requests must be 1 to {max}"),
            ),
            (self.page_bytes.0 > self.page_bytes.1, "--page-min exceeds --page-max".into()),
            (
                self.files == 0 || self.files > layout::MAX_FILES,
                format!("--files must be 1 to {}", layout::MAX_FILES),
            ),
            (
                self.page_bytes.1 > layout::FILE_SLOT,
                format!("--page-max must be at most {}", layout::FILE_SLOT),
            ),
            (
                !request_response::fits(&web),
                format!(
                    "--concurrency {} with responses of up to {frames} frames: concurrency must be 1 to {}, and concurrency x frames at most {}",
                    self.concurrency,
                    ring::SLOTS,
                    ring::TX_SLOTS
                ),
            ),
        ];
        let wrong: Vec<String> =
            problems.into_iter().filter(|(bad, _)| *bad).map(|p| p.1).collect();
        if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_and_each_job_gets_its_workload() {
        let s = Settings::DEFAULT;
        assert_eq!(s.check(), Ok(()));
        let web = s.params(Job::Web, Policy::Relaxed);
        assert_eq!(
            (web.workload, web.buffers, web.concurrency),
            (Workload::RequestResponse, 500, 25)
        );
        assert_eq!((web.response_min, web.response_max), (10240, 20480));
        let rr = s.params(Job::Latency, Policy::Secure);
        assert_eq!((rr.concurrency, rr.request_cycles, rr.response_max), (1, 0, RR_BYTES));
        assert_eq!(s.params(Job::Stream, Policy::Async).workload, Workload::Receive);
    }

    #[test]
    fn what_does_not_fit_is_named() {
        let bad = Settings { concurrency: 64, batch: 0, ..Settings::DEFAULT };
        let why = bad.check().expect_err("does not fit");
        assert!(why.contains("--batch") && why.contains("--concurrency 64"), "{why}");
    }
}
