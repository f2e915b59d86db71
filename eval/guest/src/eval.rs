//! The evaluation: the DMA driver (`viommu-eval-driver`) brings the VT-d
//! unit at `abi::VTD_BASE` up through volatile register accesses (which
//! exit to the VMM, or land on a page a sidecore polls) and runs the
//! workload (the NIC's receive loop, or a request-response server); the
//! report goes to `abi::EVAL_REPORT`.

use core::ptr::NonNull;

use viommu_eval_driver::params::PARAM_WORDS;
use viommu_eval_driver::{Doorbell, Driver, Params, Report, bringup, layout};
use vtd_regs::{PhysAddr, PollBudget, VolatileMmio};

use crate::{abi, doorbell, ram::IdentityRam, write64};

/// Status reads a wait may take: a sidecore may be descheduled for a while.
const BUDGET: PollBudget = PollBudget::new(1 << 30);

fn read64(addr: u64) -> u64 {
    // SAFETY: RAM the VMM wrote before starting the guest.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn finish(report: &Report) -> ! {
    for (i, w) in report.to_words().iter().enumerate() {
        write64(abi::EVAL_REPORT + i as u64 * 8, *w);
    }
    write64(abi::RESULTS, abi::MAGIC);
    doorbell(abi::DOORBELL_DONE, 1);
    loop {
        core::hint::spin_loop();
    }
}

fn failed(e: viommu_eval_driver::Error, mut report: Report) -> ! {
    report.error = e.code();
    report.error_seq = e.detail();
    finish(&report)
}

/// Runs the evaluation and rings DONE.
pub(crate) fn main() -> ! {
    let mut words = [0u64; PARAM_WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        *w = read64(abi::EVAL_PARAMS + i as u64 * 8);
    }
    let Some(params) = Params::from_words(&words) else {
        failed(viommu_eval_driver::Error::QueueSetup, Report::default())
    };
    let mem = IdentityRam;
    let kick = |bell| match bell {
        Doorbell::Receive(n) => doorbell(abi::DOORBELL_NIC, n),
        Doorbell::Transmit(n) => doorbell(abi::DOORBELL_NIC_TX, n),
    };
        let clock = viommu_eval_driver::tsc::clock(params.tsc_khz);
    let frames = bringup::frames();
    if let Err(e) = layout::warm_up(&mem) {
        failed(e.into(), Report::default())
    }
    doorbell(abi::DOORBELL_PHASE, abi::phase::BRINGUP);
    let mut report = Report::default();
    let result = match params.mapper_config() {
        None => {
            doorbell(abi::DOORBELL_PHASE, abi::phase::RECEIVE);
            viommu_eval_driver::run::<VolatileMmio, _>(None, mem, &params, &mut report, kick)
        }
        Some(config) => {
            let Some(base) = NonNull::new(abi::VTD_BASE as *mut u8) else {
                failed(viommu_eval_driver::Error::QueueSetup, Report::default())
            };
            // SAFETY: the VMM serves the VT-d register page at VTD_BASE
            // (identity-mapped, 8-aligned); nothing else in the guest
            // touches it.
            let regs = unsafe { VolatileMmio::new(base, 4096) };
            let mut driver = match Driver::bring_up(regs, mem, &frames, BUDGET, config, clock) {
                Ok(d) => d,
                Err(e) => failed(e, Report::default()),
            };
            doorbell(abi::DOORBELL_PHASE, abi::phase::RECEIVE);
            viommu_eval_driver::run(Some(&mut driver.mapper), mem, &params, &mut report, kick)
        }
    };
    doorbell(abi::DOORBELL_PHASE, abi::phase::END);
    match result {
        Ok(()) => finish(&report),
        Err(e) => failed(e, report),
    }
}
