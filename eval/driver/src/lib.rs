//! The evaluation's DMA driver, written as a unikernel would write it with
//! the viommu crates: bring a VT-d unit up through its registers
//! (`vtd_regs::RemappingUnit` over any [`Mmio`]), build the
//! root/context tables and a domain's second-level table
//! (`vtd_tables`), invalidate through the queue (`invalidation`), and map
//! every DMA buffer through `teardown::Mapper` under the policy being
//! measured. Two workloads ([`Workload`]): the NIC's receive loop
//! ([`nic_loop::run`]) and a request-response server
//! ([`request_response::run`]); both time map and unmap with RDTSC.
//!
//! The same code runs in the KVM guest (`eval/guest`: register accesses are
//! volatile and trap, or land on a sidecore-polled page) and in the host
//! process against the software unit directly ("bare metal").
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod bringup;
pub mod layout;
pub mod nic_loop;
pub mod params;
pub mod request_response;
pub mod ring;
pub mod tsc;

pub use bringup::{Driver, DriverMapper};
pub use params::{Params, Policy, Report, Workload};
pub use ring::Doorbell;

use vtd_regs::{Mmio, PhysMem};

/// Runs `params.workload` with `mapper` (none: no IOMMU, the device gets
/// physical addresses) over the driver's memory `mem`; `ring` rings the
/// device's doorbell and returns once the device did what it asks. Then
/// completes every pending invalidation (`Mapper::flush`) and adds the
/// mapper's and invalidator's counters over the run to `r`.
///
/// The measurements accumulate in `r`, which on failure holds what was
/// measured up to it.
pub fn run<R: Mmio, M: PhysMem + Copy>(
    mut mapper: Option<&mut DriverMapper<'_, R, M>>,
    mem: M,
    params: &Params,
    r: &mut Report,
    ring: impl FnMut(Doorbell),
) -> Result<(), Error> {
    let before = mapper.as_deref_mut().map(|m| (*m.counters(), *m.invalidator().counters()));
    match params.workload {
        Workload::Receive => nic_loop::run(mapper.as_deref_mut(), mem, params, r, ring),
        Workload::RequestResponse => {
            request_response::run(mapper.as_deref_mut(), mem, params, r, ring)
        }
    }?;
    if let (Some(m), Some((c0, i0))) = (mapper, before) {
        m.flush().map_err(Error::Map)?;
        let c = *m.counters();
        r.reuse_hits = c.reuse_hits - c0.reuse_hits;
        r.teardowns = c.teardowns - c0.teardowns;
        let i = *m.invalidator().counters();
        r.iqt_writes = i.tail_writes - i0.tail_writes;
        r.descriptors = i.descriptors.iter().sum::<u64>() - i0.descriptors.iter().sum::<u64>();
        r.waits = i.waits - i0.waits;
    }
    Ok(())
}

/// Why the driver stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The remapping unit refused a command (absent, timed out).
    Unit(vtd_regs::UnitError),
    /// Building the root/context/second-level tables failed.
    Table(vtd_tables::Error),
    /// The invalidation queue failed.
    Invalidation(invalidation::Error),
    /// The queue could not be set up.
    QueueSetup,
    /// A map or unmap failed.
    Map(teardown::Error),
    /// Guest memory access failed.
    Mem(vtd_regs::MemError),
    /// The device did not complete a posted buffer (status word).
    Device {
        /// Buffer sequence number.
        seq: u64,
        /// Status the device left.
        status: u64,
    },
    /// The buffer's contents were not what the device wrote.
    Data {
        /// Buffer sequence number (request id).
        seq: u64,
    },
    /// The parameters do not fit the rings or buffer pools.
    Params,
}

impl Error {
    /// A small code for reporting through a register.
    #[must_use]
    pub const fn code(&self) -> u64 {
        match self {
            Error::Unit(_) => 1,
            Error::Table(_) => 2,
            Error::Invalidation(_) => 3,
            Error::QueueSetup => 4,
            Error::Map(_) => 5,
            Error::Mem(_) => 6,
            Error::Device { .. } => 7,
            Error::Data { .. } => 8,
            Error::Params => 9,
        }
    }
}

impl Error {
    /// A detail for reporting through a register: which invalidation or
    /// unit failure it was (0 if none applies).
    #[must_use]
    pub const fn detail(&self) -> u64 {
        match self {
            Error::Invalidation(e) => match e {
                invalidation::Error::QueueFull => 1,
                invalidation::Error::Timeout => 2,
                invalidation::Error::Unsupported(_) => 3,
                invalidation::Error::OutOfFrames => 4,
                invalidation::Error::Mem(_) => 5,
                invalidation::Error::Unit(_) => 6,
                invalidation::Error::Descriptor(_) => 7,
                invalidation::Error::Queue(_) => 8,
                _ => 9,
            },
            Error::Device { seq, .. } | Error::Data { seq } => *seq,
            _ => 0,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Unit(e) => write!(f, "remapping unit: {e}"),
            Error::Table(e) => write!(f, "tables: {e}"),
            Error::Invalidation(e) => write!(f, "invalidation: {e}"),
            Error::QueueSetup => f.write_str("invalidation queue setup"),
            Error::Map(e) => write!(f, "mapping: {e}"),
            Error::Mem(e) => write!(f, "memory: {e}"),
            Error::Device { seq, status } => {
                write!(f, "the device left buffer {seq} with status {status}")
            }
            Error::Data { seq } => write!(f, "buffer {seq} does not hold the device's frame"),
            Error::Params => f.write_str("parameters out of range for the rings or buffer pools"),
        }
    }
}

impl core::error::Error for Error {}

impl From<vtd_regs::MemError> for Error {
    fn from(e: vtd_regs::MemError) -> Self {
        Error::Mem(e)
    }
}
