use viommu_eval::{
    eval::{self, Settings},
    frontend::Frontend,
};
use viommu_eval_driver::Policy;
fn main() {
    let s = Settings {
        buffers: std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        batch: 32,
        quota: 256,
        time_limit_us: 10_000,
        work_cycles: 3800,
        tsc_khz: (viommu_eval::host::tsc_hz() / 1e3) as u64,
        modelled_exit_cycles: 68_000,
    };
    let which = std::env::args().nth(1).unwrap_or_default();
    let only = std::env::var("P").ok();
    for p in Policy::ALL {
        if only.as_deref().is_some_and(|o| o != p.name()) {
            continue;
        }
        let r = match which.as_str() {
            "trap" => eval::run_kvm(&kvm_ioctls::Kvm::new().unwrap(), &s, p, Frontend::Trap),
            "side" => eval::run_kvm(&kvm_ioctls::Kvm::new().unwrap(), &s, p, Frontend::Sidecore),
            "model" => eval::run_in_process(&s, p, Frontend::ModelledTrap),
            _ => eval::run_in_process(&s, p, Frontend::BareMetal),
        };
        match r {
            Ok(r) => println!(
                "{:?} med {:?} map {:.0} unmap {:.0} per-buf {:.0} exits/buf {:.2} iqt/buf {:.2} hits {} wall {:?} side {:?}",
                p,
                r.median,
                r.map_cycles(),
                r.unmap_cycles(),
                r.cycles_per_buffer(),
                r.exits_per_buffer(),
                r.iqt_per_buffer(),
                r.report.reuse_hits,
                r.wall,
                r.sidecore
            ),
            Err(e) => println!("{p:?}: {e}"),
        }
    }
}
