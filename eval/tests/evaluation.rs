//! The evaluation's runs: in-process (bare metal, modelled) always; under
//! KVM (trap & emulate, sidecore, nested) they FAIL without a usable `/dev/kvm`
//! unless `VIOMMU_EVAL_ALLOW_NO_KVM=1`.

use viommu_eval::{
    eval::{self, Job, PinCounts, RunResult, Settings},
    frontend::Frontend,
    host::{self, KvmKind},
};
use viommu_eval_driver::{
    Policy,
    layout::{POOL_PAGES, RAM_SIZE},
};

const ALLOW_NO_KVM: &str = "VIOMMU_EVAL_ALLOW_NO_KVM";

/// Small runs of every job. Requests do no work of their own: the tests
/// check behaviour, not speed.
fn settings() -> Settings {
    Settings {
        buffers: 200,
        batch: 16,
        quota: 128,
        // Long enough that only the quota reclaims, however loaded the
        // host (a starved sidecore makes a map take milliseconds).
        time_limit_us: 60_000_000,
        work_cycles: 0,
        tsc_khz: 2_000_000,
        modelled_exit_cycles: 1000,
        requests: 60,
        concurrency: 8,
        request_cycles: 0,
        page_bytes: (10 << 10, 20 << 10),
        files: 4,
        rr_requests: 40,
    }
}

fn kvm_or_fail() -> Option<kvm_ioctls::Kvm> {
    let why = if KvmKind::detect() == KvmKind::None {
        format!("{} does not exist", host::kvm_dev().display())
    } else {
        match kvm_ioctls::Kvm::new() {
            Ok(kvm) => return Some(kvm),
            Err(e) => format!("cannot open /dev/kvm: {e}"),
        }
    };
    assert!(
        std::env::var(ALLOW_NO_KVM).is_ok_and(|v| v == "1"),
        "no usable KVM: {why}. These tests need /dev/kvm; set {ALLOW_NO_KVM}=1 to skip them locally"
    );
    eprintln!("skipped ({ALLOW_NO_KVM}=1): {why}");
    None
}

/// Every job under every policy on `frontend`, through `run`.
fn all_runs(run: impl Fn(Job, Policy) -> Result<RunResult, String>) -> Vec<RunResult> {
    Job::ALL
        .iter()
        .flat_map(|&job| Policy::ALL.map(|p| (job, p)))
        .map(|(job, p)| run(job, p).unwrap_or_else(|e| panic!("{job} / {}: {e}", p.name())))
        .collect()
}

fn get(runs: &[RunResult], job: Job, policy: Policy) -> &RunResult {
    runs.iter().find(|r| r.job == job && r.policy == policy).expect("ran")
}

/// What every front end must show, whatever it costs.
fn check_runs(runs: &[RunResult], s: &Settings) {
    for r in runs {
        assert_eq!(r.nic.faults, 0, "{:?} {:?}: no DMA blocked", r.job, r.policy);
        assert_eq!(r.nic.bad_frames, 0, "{:?} {:?}", r.job, r.policy);
    }
    check_stream(runs, s.buffers);
    check_requests(runs, Job::Web, s.requests);
    check_requests(runs, Job::Latency, s.rr_requests);
    let rr = get(runs, Job::Latency, Policy::Secure);
    assert!(rr.samples.median > 0 && rr.samples.p99 >= rr.samples.median, "{:?}", rr.samples);
    // One frame each way per round trip.
    assert_eq!(rr.report.buffers, 2 * s.rr_requests);
}

fn check_stream(runs: &[RunResult], buffers: u64) {
    let get = |p| get(runs, Job::Stream, p);
    for p in Policy::ALL {
        assert_eq!((get(p).report.buffers, get(p).nic.frames), (buffers, buffers), "{p:?}");
    }
    let (none, secure) = (get(Policy::NoIommu), get(Policy::Secure));
    assert_eq!(none.report.iqt_writes, 0);
    // Strict: one invalidation per unmap at least.
    assert!(secure.report.iqt_writes >= buffers, "{:?}", secure.report);
    assert_eq!(secure.report.reuse_hits, 0);
    // Deferred and asynchronous: batched.
    for p in [Policy::Relaxed, Policy::Async] {
        assert!(get(p).report.iqt_writes < secure.report.iqt_writes, "{p:?} {:?}", get(p).report);
        assert_eq!(get(p).report.reuse_hits, 0, "{p:?}: single-use");
    }
    // Optimistic: the buffer pool comes back while its mappings are stale;
    // the quota (128) exceeds the pool (64), so every map after the first
    // round is a hit and nothing is torn down before the final flush.
    let optimistic = get(Policy::Optimistic);
    assert_eq!(optimistic.report.reuse_hits, buffers - POOL_PAGES, "{:?}", optimistic.report);
    assert!(optimistic.report.iqt_writes <= POOL_PAGES + 1, "{:?}", optimistic.report);
}

/// The request-response jobs: every request served, every response
/// received whole and intact by the client.
fn check_requests(runs: &[RunResult], job: Job, requests: u64) {
    let get = |p| get(runs, job, p);
    for p in Policy::ALL {
        let r = get(p);
        assert_eq!(
            (r.report.requests, r.nic.requests, r.nic.responses),
            (requests, requests, requests)
        );
        // Every buffer the device used is a request or a response frame.
        assert_eq!(r.report.buffers, r.nic.frames + r.nic.sent, "{job} {p:?}");
        assert!(r.samples.frames >= 1.0);
    }
    let (secure, relaxed) = (get(Policy::Secure), get(Policy::Relaxed));
    assert!(secure.report.iqt_writes >= secure.report.buffers, "{job}: strict");
    assert!(relaxed.report.iqt_writes < secure.report.iqt_writes, "{job}: batched");
    assert!(get(Policy::Async).report.iqt_writes < secure.report.iqt_writes, "{job}: batched");
    assert_eq!(secure.report.reuse_hits + relaxed.report.reuse_hits, 0, "{job}: single-use");
    // Optimistic: the receive buffer of each slot comes back, and so do the
    // transmit pool's pages and the site's page-cache pages: most maps hit.
    let optimistic = get(Policy::Optimistic);
    assert!(
        optimistic.report.reuse_hits * 10 > optimistic.report.buffers * 7,
        "{job}: {:?}",
        optimistic.report
    );
}

/// The vIOMMU pinned each buffer page while the guest had it mapped, and
/// unpinned every page it pinned (the NIC's DMA, translated by the
/// physical unit, never faulted: `check_runs`).
fn check_pins(runs: &[RunResult], s: &Settings) {
    let pins = |job, p| get(runs, job, p).pins.expect("a vIOMMU run");
    for job in Job::ALL {
        assert_eq!(pins(job, Policy::NoIommu).pins, 0, "{job}");
        for p in [Policy::Secure, Policy::Relaxed, Policy::Async] {
            // Single-use: a pin per mapped page (the map's invalidation),
            // and every pin dropped by the end of the run.
            let (c, r) = (pins(job, p), get(runs, job, p));
            assert!(c.pins >= r.report.buffers, "{job} {p:?}: {c:?}");
            assert_eq!(c.unpins, c.pins, "{job} {p:?}");
        }
    }
    // Optimistic: the receive pool's pages are pinned once and stay mapped
    // until the final flush.
    let o = pins(Job::Stream, Policy::Optimistic);
    assert_eq!(o.pins, POOL_PAGES, "{o:?}");
    assert!(o.unpins <= POOL_PAGES, "{o:?}");
    let web = pins(Job::Web, Policy::Optimistic);
    assert!(web.pins * 5 < pins(Job::Web, Policy::Relaxed).pins, "{web:?}");
    let _ = s;
}

#[test]
fn bare_metal_runs_every_job_and_policy() {
    let s = settings();
    let runs = all_runs(|job, p| eval::run_in_process(&s, job, p, Frontend::BareMetal));
    check_runs(&runs, &s);
    // The software unit is "hardware": no caching mode, so no invalidation
    // after a map, and nothing is counted as an exit.
    let secure = get(&runs, Job::Stream, Policy::Secure);
    assert!(secure.report.iqt_writes < 2 * s.buffers);
    assert!(runs.iter().all(|r| r.exits == 0));
    // Native driver, physical unit: no vIOMMU, nothing pinned.
    assert!(runs.iter().all(|r| r.pins.is_none()));
}

#[test]
fn modelled_trap_charges_every_register_access() {
    let s = settings();
    let runs = all_runs(|job, p| eval::run_in_process(&s, job, p, Frontend::ModelledTrap));
    check_runs(&runs, &s);
    let secure = get(&runs, Job::Stream, Policy::Secure);
    // Caching mode: an IQT write after every map and every unmap, each
    // charged as an exit.
    assert!(secure.report.iqt_writes >= 2 * s.buffers, "{:?}", secure.report);
    assert!(secure.exits >= secure.report.iqt_writes);
    assert!(secure.map_median() >= s.modelled_exit_cycles);
    // A strict round trip costs at least its four charged exits (two maps,
    // two unmaps) more than one without IOMMU.
    let (none, strict) =
        (get(&runs, Job::Latency, Policy::NoIommu), get(&runs, Job::Latency, Policy::Secure));
    assert!(strict.samples.median >= none.samples.median + 4 * s.modelled_exit_cycles);
    check_pins(&runs, &s);
}

#[test]
fn trap_and_emulate_guest_runs_every_job_and_policy() {
    let Some(kvm) = kvm_or_fail() else { return };
    let s = settings();
    let runs = all_runs(|job, p| eval::run_kvm(&kvm, &s, job, p, Frontend::Trap));
    check_runs(&runs, &s);
    for job in Job::ALL {
        let secure = get(&runs, job, Policy::Secure);
        // Every IQT write of the guest exited to the VMM.
        assert!(secure.exits >= secure.report.iqt_writes, "{job}: {secure:?}");
        assert_eq!(get(&runs, job, Policy::NoIommu).exits, 0, "{job}");
    }
    check_pins(&runs, &s);
}

#[test]
fn sidecore_guest_runs_every_job_and_policy_without_register_exits() {
    let Some(kvm) = kvm_or_fail() else { return };
    let s = settings();
    let runs = all_runs(|job, p| eval::run_kvm(&kvm, &s, job, p, Frontend::Sidecore));
    check_runs(&runs, &s);
    for r in &runs {
        assert_eq!(r.exits, 0, "{:?} {:?}: the register page is RAM", r.job, r.policy);
    }
    let secure = get(&runs, Job::Stream, Policy::Secure);
    assert!(secure.sidecore.expect("poller stats").writes >= secure.report.iqt_writes);
    check_pins(&runs, &s);
}

/// The nested vIOMMU (issue 18): all guest RAM pinned before the guest
/// runs and nothing pinned after; the guest's maps make no exit (no
/// caching mode: the driver writes its first-stage table and invalidates
/// only on unmap), so with deferred invalidation hardly anything exits; the
/// shadowing vIOMMU's guest invalidates, and exits, on every map.
fn check_nested(runs: &[RunResult], s: &Settings) {
    check_runs(runs, s);
    for r in runs {
        assert_eq!(
            r.pinned_peak,
            Some(RAM_SIZE / 4096),
            "{} {}: all guest RAM",
            r.job,
            r.policy.name()
        );
        if r.policy != Policy::NoIommu {
            assert_eq!(r.pins, Some(PinCounts::default()), "{} {}", r.job, r.policy.name());
        }
    }
    let secure = get(runs, Job::Stream, Policy::Secure);
    assert!(secure.report.iqt_writes < 2 * s.buffers, "{:?}", secure.report);
    for p in [Policy::Relaxed, Policy::Async, Policy::Optimistic] {
        let r = get(runs, Job::Stream, p);
        assert!(r.exits_per_op() < 0.1, "{}: {} exits per buffer", p.name(), r.exits_per_op());
    }
}

#[test]
fn nested_guest_runs_every_job_and_policy_its_maps_without_exits() {
    let Some(kvm) = kvm_or_fail() else { return };
    let s = settings();
    let runs = all_runs(|job, p| eval::run_kvm(&kvm, &s, job, p, Frontend::Nested));
    check_nested(&runs, &s);
}

#[test]
fn modelled_nested_charges_no_exit_to_a_map() {
    let s = settings();
    let runs = all_runs(|job, p| eval::run_in_process(&s, job, p, Frontend::ModelledNested));
    check_nested(&runs, &s);
    // An exit far dearer than a map of any build: the strict unmap pays
    // for its invalidation, the map pays nothing.
    let s = Settings { buffers: 50, modelled_exit_cycles: 10_000_000, ..s };
    let secure = eval::run_in_process(&s, Job::Stream, Policy::Secure, Frontend::ModelledNested)
        .expect("secure stream");
    assert!(secure.map_median() < s.modelled_exit_cycles, "{}", secure.map_median());
    assert!(secure.unmap_median() >= s.modelled_exit_cycles, "{}", secure.unmap_median());
}

#[test]
fn sidecore_without_a_vm_runs_every_job_and_policy() {
    let s = settings();
    let runs = all_runs(|job, p| eval::run_in_process(&s, job, p, Frontend::SidecoreNoVm));
    check_runs(&runs, &s);
    let secure = get(&runs, Job::Stream, Policy::Secure);
    let stats = secure.sidecore.expect("poller stats");
    assert!(stats.writes >= secure.report.iqt_writes, "{stats:?}");
    assert!(stats.busy_fraction() > 0.0 && stats.busy_fraction() < 1.0, "{stats:?}");
    check_pins(&runs, &s);
}

/// The driver maps every response frame read-only: the device can read it
/// and is refused a write, whatever the policy.
#[test]
fn response_frames_are_mapped_read_only() {
    use viommu_eval::nic::Nic;
    use viommu_eval_driver::{Doorbell, Driver, bringup, layout, ring, tsc};
    use vtd_emu::{Access, EmuConfig, Emulator, mem::HeapMemory};
    use vtd_regs::{Iova, PhysMem, PollBudget};
    let s = settings();
    let check = move || {
        for policy in Policy::PROTECTED {
            let heap = HeapMemory::new(layout::RAM_SIZE as usize);
            let mem = &heap;
            let emu: Emulator<_> = Emulator::new(mem, EmuConfig::qemu()).expect("unit");
            let params = s.params(Job::Web, policy);
            let frames = bringup::frames();
            let config = params.mapper_config().expect("an IOMMU");
            let budget = PollBudget::new(1 << 20);
            let mut driver =
                Driver::bring_up(&emu, mem, &frames, budget, config, tsc::clock(s.tsc_khz))
                    .expect("bring-up");
            let mut nic = Nic::new(&params);
            let (mut frames_seen, mut report) = (0, Default::default());
            let ring = |bell| {
                if let Doorbell::Transmit(n) = bell {
                    for slot in 0..n {
                        let iova = Iova::new(mem.read_u64(ring::tx_word(slot, 0)).expect("slot"));
                        assert!(emu.translate(layout::NIC, iova, Access::Read).is_ok());
                        assert!(emu.translate(layout::NIC, iova, Access::Write).is_err());
                        frames_seen += 1;
                    }
                }
                nic.doorbell(&mem, &mem, bell, |iova, access| {
                    emu.translate(layout::NIC, iova, access).ok()
                });
            };
            viommu_eval_driver::run(Some(&mut driver.mapper), mem, &params, &mut report, ring)
                .expect("web run");
            assert_eq!(frames_seen, nic.counters.sent, "{policy:?}");
            assert!(frames_seen > s.requests, "{policy:?}: several frames per response");
        }
    };
    // The driver's inline tables want a big stack in a debug build.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(check)
        .expect("thread")
        .join()
        .expect("test");
}

/// The policy *none* goes through the vIOMMU's pass-through: the guest
/// unit offers ECAP.PT, the guest leaves translation off (or sets a
/// pass-through context entry) and the NIC reaches guest RAM through the
/// physical unit, in an identity-mapped host domain. The other policies'
/// unit offers no pass-through, and the same context entry blocks.
#[test]
fn none_reaches_guest_ram_through_the_viommus_pass_through() {
    use viommu_eval::guest_viommu::{GUEST_RAM_HPA, Mode, with_viommu};
    use viommu_eval_driver::layout;
    use vtd_emu::{Access, SimFrameAllocator, mem::HeapMemory};
    use vtd_regs::regs::rtaddr::TranslationTableMode;
    use vtd_regs::{ContextScope, DomainId, Iova, PhysAddr, RemappingUnit};
    use vtd_tables::{Attachment, ContextManager, TableConfig};
    for pass_through in [true, false] {
        let ram = HeapMemory::new(1 << 20);
        with_viommu(&ram, 1 << 20, Mode::Shadow { pass_through }, |rig| {
            let gpa = Iova::new(0x5000);
            let reach = pass_through.then_some(PhysAddr::new(GUEST_RAM_HPA + 0x5000));
            let mut unit = RemappingUnit::new(rig.viommu).expect("guest unit");
            assert_eq!(unit.ecap().pass_through(), pass_through, "ECAP.PT");
            assert_eq!(rig.dma(gpa, Access::Write), reach, "translation off");
            let frames =
                SimFrameAllocator::new(&ram, PhysAddr::new(0x8_0000), PhysAddr::new(0x10_0000));
            let agaw = TableConfig::from_cap(unit.cap(), 39).expect("39-bit").agaw();
            let mut contexts = ContextManager::new(&ram, &frames).expect("tables");
            // The unit is off: nothing cached; the global flush below follows.
            let _set = contexts
                .set(layout::NIC, Attachment::PassThrough { domain: DomainId::new(1), agaw })
                .expect("pass-through context");
            unit.set_root_table(contexts.root_table(), TranslationTableMode::Legacy).expect("SRTP");
            unit.enable_translation().expect("TE");
            unit.invalidate_context(ContextScope::Global).expect("context flush");
            assert_eq!(rig.dma(gpa, Access::Write), reach, "a pass-through context");
        })
        .expect("rig");
    }
}

#[test]
fn without_kvm_the_evaluation_is_modelled_and_says_so() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_viommu-eval"))
        .args(["--buffers", "64", "--requests", "20", "--rr-requests", "20"])
        .args(["--request-cycles", "0", "--repeat", "1", "--out"])
        .arg(std::env::temp_dir().join("viommu-eval-test-modelled"))
        .env(host::KVM_DEV_ENV, "/nonexistent/kvm")
        .output()
        .expect("run viommu-eval");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("no usable KVM: /nonexistent/kvm does not exist"), "{stdout}");
    assert!(stdout.contains("MODELLED"), "{stdout}");
    // Every table line of the modelled front end says so.
    for line in stdout.lines().filter(|l| {
        let l = l.trim_start();
        l.starts_with("trap & emulate") || l.starts_with("nested")
    }) {
        assert!(line.contains("modelled"), "{line}");
    }
    // The sidecore needs no VM: it runs in-process, and says so.
    assert!(stdout.contains("sidecore [in-process, no VM]"), "{stdout}");
    assert!(stdout.contains("; MODELLED, without KVM)"), "{stdout}");
    // Every table is there.
    for table in ["(a) ", "(b) ", "(c) ", "(d) ", "(e) "] {
        assert!(stdout.contains(table), "{table} missing:\n{stdout}");
    }
}

/// By default the results go beside the binary's profile directory
/// (`target/viommu-eval`), never into the checkout.
#[test]
fn by_default_results_go_under_target() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_viommu-eval"));
    let target = exe.parent().and_then(|p| p.parent()).expect("target/<profile>/viommu-eval");
    let out = std::process::Command::new(exe)
        .args(["--jobs", "latency", "--rr-requests", "10", "--repeat", "1", "--modelled"])
        .output()
        .expect("run viommu-eval");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let dir = target.join("viommu-eval");
    assert!(stdout.contains(&format!("wrote {}", dir.join("results.csv").display())), "{stdout}");
    assert!(dir.join("chart.svg").is_file());
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_viommu-eval"))
        .arg("--help")
        .output()
        .expect("run viommu-eval");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let valued = [
        "--buffers",
        "--batch",
        "--work-cycles",
        "--requests",
        "--concurrency",
        "--request-cycles",
        "--page-min",
        "--page-max",
        "--files",
        "--rr-requests",
        "--quota",
        "--time-limit-us",
        "--repeat",
        "--jobs",
        "--out",
        "--exit-cycles",
    ];
    for flag in valued {
        let at = help.find(&format!("{flag} <")).unwrap_or_else(|| panic!("{flag} missing"));
        let next = help[at + 2..].find("\n      --").map_or(help.len(), |n| at + 2 + n);
        assert!(
            help[at..next].contains("[default:"),
            "{flag} has no default:\n{}",
            &help[at..next]
        );
    }
    for flag in ["--modelled", "--no-sidecore", "--no-nested", "--probe", "--cpl3", "--no-pvm-vif"]
    {
        assert!(help.contains(flag), "{flag} missing");
    }
}

#[test]
fn chart_and_csv_are_well_formed() {
    use viommu_eval::report::Results;
    let s = settings();
    let frontends = vec![Frontend::BareMetal, Frontend::ModelledTrap];
    let runs: Vec<_> = frontends
        .iter()
        .flat_map(|&f| all_runs(|job, p| eval::run_in_process(&s, job, p, f)))
        .collect();
    let results = Results { frontends, runs, settings: s };
    let csv = results.csv();
    let header_fields = csv.lines().next().expect("header").split(',').count();
    assert_eq!(csv.lines().count(), 1 + 3 * 2 * 5, "{csv}");
    assert!(csv.lines().all(|l| l.split(',').count() == header_fields), "{csv}");
    for job in ["stream,", "web,", "latency,"] {
        assert_eq!(csv.lines().filter(|l| l.starts_with(job)).count(), 10, "{job}");
    }
    let tables = results.tables();
    assert!(tables.contains("(d) web server") && tables.contains("(e) request-response"));
    let svg = results.svg().expect("chart");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Text is escaped: "trap & emulate" must appear as "trap &amp; emulate".
    assert!(!svg.contains("& "), "unescaped ampersand");
    assert!(svg.contains("trap &amp; emulate [modelled]"));
    // Both panels, a legend entry per policy and the seed's.
    assert!(svg.contains("(b) receive throughput") && svg.contains("(d) web server"));
    for name in ["secure", "relaxed", "async", "optimistic", "the seed (ATC 2011)"] {
        assert!(svg.contains(name), "{name} missing from the legend");
    }
    // Bars: 2 panels x 2 front ends x 4 policies of ours, and the seed's for
    // all but async, plus the background and the legend's 5 swatches.
    let rects = svg.matches("<rect").count();
    assert_eq!(rects, 1 + 5 + 2 * 2 * (4 + 3), "{rects} rectangles");
}
