//! Differential runs: each scenario, well-formed or malformed, played on
//! QEMU's `intel-iommu` (edu DMA over qtest) and on `vtd-emu`; both must
//! report the same DMA results, fault records and queue errors, except for
//! the listed quirks, each documented in docs/qemu-vs-vtd-emu.md and each
//! asserted to still show.

use viommu_qtest::diff::layout::{self, DATA, L1, L2, L3, QUEUE, page};
use viommu_qtest::diff::scenario::{DID, EDU_SID, IOVA_A, IOVA_B, IOVA_UNMAPPED};
use viommu_qtest::diff::{
    DmaResult, EmuBackend, FaultSeen, Outcome, QemuBackend, Quirk, Scenario, Step, run,
};
use viommu_qtest::{IommuOptions, Qemu};
use vtd_emu::EmuConfig;
use vtd_regs::desc::{ContextCacheInv, Descriptor, IotlbInv, WaitDesc};
use vtd_regs::regs::cap::Agaw;
use vtd_regs::regs::{AddressWidth, Cap};
use vtd_regs::regs::{FaultType, QueueErrorInfo};
use vtd_regs::{
    ContextScope, DomainId, Drain, FunctionMask, IotlbScope, Iova, PhysAddr, RawDescriptor,
};
use vtd_tables::pte::index;
use vtd_tables::scalable::{PasidEntry, ScalableContextEntry};
use vtd_tables::{Perm, SlPte};

/// The same unit on both sides: QEMU's options and vtd-emu's configuration.
#[derive(Clone, Copy)]
struct Machine {
    qemu: IommuOptions,
    emu: EmuConfig,
}

/// QEMU's default `intel-iommu`: 39-bit, 3-level tables.
const DEFAULT: Machine = Machine {
    qemu: IommuOptions {
        aw_bits: 39,
        caching_mode: false,
        device_iotlb: false,
        intremap: true,
        scalable_mode: false,
    },
    emu: EmuConfig::qemu(),
};

/// `aw-bits=48`: SAGAW 39 and 48 bits, MGAW 48 (CAP 0x00d2008c222f0606),
/// host address width 48.
const WIDE: Machine = Machine {
    qemu: IommuOptions {
        aw_bits: 48,
        caching_mode: false,
        device_iotlb: false,
        intremap: true,
        scalable_mode: false,
    },
    emu: EmuConfig {
        cap: Cap(0x00d2_008c_222f_0606),
        host_address_width: AddressWidth(48),
        ..EmuConfig::qemu()
    },
};

/// `caching-mode=on`: CAP.CM, the unit may cache not-present entries.
const CACHING: Machine = Machine {
    qemu: IommuOptions {
        aw_bits: 39,
        caching_mode: true,
        device_iotlb: false,
        intremap: true,
        scalable_mode: false,
    },
    emu: EmuConfig::qemu().with_caching_mode(true),
};

/// Runs `s` on QEMU and on vtd-emu, both configured as `machine`.
fn run_both_on(machine: Machine, s: &Scenario) -> (Vec<Outcome>, Vec<Outcome>) {
    let on_qemu = {
        let qemu = Qemu::start(&machine.qemu).unwrap_or_else(|e| panic!("cannot start QEMU: {e}"));
        run(&mut QemuBackend::new(&qemu).unwrap(), s).unwrap()
    };
    let mem = EmuBackend::memory();
    let unit = EmuBackend::unit_with(&mem, machine.emu).unwrap();
    let on_emu = run(&mut EmuBackend::new(&unit), s).unwrap();
    (on_qemu, on_emu)
}

/// Runs `s` on both backends, masks and asserts `quirks`, asserts the rest
/// agrees, and returns QEMU's outcomes for further checks.
fn compare(s: &Scenario, quirks: &[Quirk]) -> Vec<Outcome> {
    compare_on(DEFAULT, s, quirks)
}

/// [`compare`] on `machine`.
fn compare_on(machine: Machine, s: &Scenario, quirks: &[Quirk]) -> Vec<Outcome> {
    let (on_qemu, on_emu) = run_both_on(machine, s);
    let mut masked = on_emu.clone();
    for q in quirks {
        assert!(
            q.mask(&on_qemu, &mut masked),
            "{}: quirk {q:?} no longer shows; update docs/qemu-vs-vtd-emu.md\n\
             QEMU: {on_qemu:#?}\nvtd-emu: {on_emu:#?}",
            s.name
        );
    }
    assert_eq!(on_qemu, masked, "{}: QEMU (left) and vtd-emu (right) disagree", s.name);
    println!("{} | {} | quirks {quirks:?}", s.name, summary(&on_qemu));
    on_qemu
}

/// The DMA and queue outcomes in a line: `R:reached@page+off`,
/// `W:blocked/FR5`, `Q:head1/IQE`.
fn summary(outcomes: &[Outcome]) -> String {
    let parts: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Dma { access, result, faults, .. } => {
                let a = if *access == vtd_tables::Access::Read { "R" } else { "W" };
                let r = match result {
                    DmaResult::Reached(p) => format!("{:#x}", p.as_u64()),
                    DmaResult::Blocked => "blocked".to_owned(),
                    DmaResult::Other(w) => format!("other {w:#x}"),
                };
                let f: Vec<String> = faults.iter().map(|f| format!("FR{:x}", f.reason)).collect();
                Some(format!(
                    "{a}:{r}{}",
                    if f.is_empty() { String::new() } else { format!("/{}", f.join(",")) }
                ))
            }
            Outcome::Queue { head, error, .. } => {
                Some(format!("Q:head{head}{}", if error.is_some() { "/IQE" } else { "" }))
            }
            Outcome::Register { offset, value, .. } => Some(format!("[{offset:#x}]={value:#x}")),
            Outcome::FaultStatus { overflow, pending, index, .. } => {
                Some(format!("F:pfo{}ppf{}fri{index}", u8::from(*overflow), u8::from(*pending)))
            }
            Outcome::Command { result: Err(e), .. } => Some(format!("cmd err {e}")),
            Outcome::Command { result: Ok(Some(g)), .. } => Some(format!("inv:{g:?}")),
            Outcome::Command { .. } => None,
        })
        .collect();
    parts.join(" ")
}

fn iova(base: Iova, offset: u64) -> Iova {
    Iova::new(base.as_u64() + offset)
}

fn reached(p: u64, offset: u64) -> DmaResult {
    DmaResult::Reached(PhysAddr::new(page(p).as_u64() + offset))
}

fn fault(kind: FaultType, reason: u8, at: Iova) -> FaultSeen {
    FaultSeen { source: EDU_SID, kind, reason, page: at.as_u64() & !0xfff }
}

/// The DMA outcomes, as (result, faults).
fn dmas(outcomes: &[Outcome]) -> Vec<(DmaResult, Vec<FaultSeen>)> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Dma { result, faults, .. } => Some((*result, faults.clone())),
            _ => None,
        })
        .collect()
}

/// The queue outcomes, as (head, error).
fn queues(outcomes: &[Outcome]) -> Vec<(usize, Option<QueueErrorInfo>)> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Queue { head, error, .. } => Some((*head, *error)),
            _ => None,
        })
        .collect()
}

/// The well-formed tables with `perm` on `IOVA_A`, translation on.
fn started(name: &'static str, perm: Perm) -> Scenario {
    Scenario::new(name).mapped(perm).start()
}

/// A read and a write of `IOVA_A` on tables changed by `change` after the
/// well-formed ones were written, translation on.
fn broken(name: &'static str, change: impl FnOnce(Scenario) -> Scenario) -> Scenario {
    change(Scenario::new(name).mapped(Perm::READ_WRITE)).start().read(IOVA_A).write(IOVA_A)
}

/// Asserts that the read and the write of a `broken` scenario faulted with
/// `reason` (QEMU's outcomes).
fn assert_blocked(outcomes: &[Outcome], reason: u8) {
    assert_eq!(
        dmas(outcomes),
        [
            (DmaResult::Blocked, vec![fault(FaultType::Read, reason, IOVA_A)]),
            (DmaResult::Blocked, vec![fault(FaultType::Write, reason, IOVA_A)]),
        ]
    );
}

fn root() -> vtd_tables::RootEntry {
    Scenario::good_root()
}

fn context() -> vtd_tables::ContextEntry {
    Scenario::good_context()
}

fn leaf_a() -> u64 {
    SlPte::leaf(page(DATA), Perm::READ_WRITE, vtd_regs::PageSize::Size4KiB).0
}

fn psi(at: Iova) -> RawDescriptor {
    let scope = IotlbScope::pages(DID, at, 0, false).unwrap();
    Descriptor::from(IotlbInv { scope, drain: Drain::empty() }).encode()
}

fn global_iotlb() -> RawDescriptor {
    Descriptor::from(IotlbInv { scope: IotlbScope::Global, drain: Drain::empty() }).encode()
}

// ---- Well-formed tables ----

#[test]
fn well_formed_reads_and_writes_reach_their_pages() {
    let s = started("well_formed", Perm::READ_WRITE)
        .read(IOVA_A)
        .write(iova(IOVA_A, 0x100))
        .read(iova(IOVA_B, 0x8))
        .write(iova(IOVA_B, 0x40))
        .read(iova(IOVA_A, 0x100));
    let q = compare(&s, &[]);
    let marks = |slot: u64| layout::MARK_MAGIC | slot << 8;
    assert_eq!(
        dmas(&q),
        [
            (reached(DATA, 0), vec![]),
            (reached(DATA, 0x100), vec![]),
            (reached(DATA + 1, 0x8), vec![]),
            (reached(DATA + 1, 0x40), vec![]),
            // The write of slot 1 is what is there now.
            (DmaResult::Other(marks(1)), vec![]),
        ]
    );
}

#[test]
fn unmapped_iova_faults_with_read_and_write_reasons() {
    let s =
        started("unmapped", Perm::READ_WRITE).read(IOVA_UNMAPPED).write(iova(IOVA_UNMAPPED, 0x10));
    let q = compare(&s, &[]);
    assert_eq!(
        dmas(&q),
        [
            (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_UNMAPPED)]),
            (DmaResult::Blocked, vec![fault(FaultType::Write, 5, IOVA_UNMAPPED)]),
        ]
    );
}

#[test]
fn read_only_page_refuses_a_cold_write() {
    let s = started("read_only_cold_write", Perm::READ).write(IOVA_A).read(IOVA_A);
    let q = compare(&s, &[]);
    assert_eq!(dmas(&q)[0], (DmaResult::Blocked, vec![fault(FaultType::Write, 5, IOVA_A)]));
    assert_eq!(dmas(&q)[1], (reached(DATA, 0), vec![]));
}

#[test]
fn write_only_page_refuses_a_read() {
    let s = started("write_only_read", Perm::WRITE).read(IOVA_A).write(IOVA_A);
    let q = compare(&s, &[]);
    assert_eq!(dmas(&q)[0], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_A)]));
    assert_eq!(dmas(&q)[1], (reached(DATA, 0), vec![]));
}

#[test]
fn cached_read_only_translation_refuses_a_write() {
    let s = started("cached_read_only_write", Perm::READ).read(IOVA_A).write(IOVA_A);
    let q = compare(&s, &[Quirk::SilentCachedPermission]);
    assert_eq!(dmas(&q)[1], (DmaResult::Blocked, vec![]));
}

#[test]
fn fault_processing_disable_blocks_silently() {
    let ce = context().with_fpd(true);
    let s = broken("fpd_unmapped", |s| s.context_entry(ce.lo, ce.hi)).read(IOVA_UNMAPPED);
    let q = compare(&s, &[]);
    assert_eq!(dmas(&q)[2], (DmaResult::Blocked, vec![]));
}

#[test]
fn fault_records_fill_and_overflow() {
    let other = iova(IOVA_UNMAPPED, 0x1000);
    let s = started("fault_overflow", Perm::READ_WRITE)
        .step(Step::FaultStatus)
        .step(Step::DmaNoDrain { access: vtd_tables::Access::Read, iova: IOVA_UNMAPPED })
        .step(Step::FaultStatus)
        .step(Step::DmaNoDrain { access: vtd_tables::Access::Write, iova: other })
        .step(Step::FaultStatus)
        .read(IOVA_A)
        .step(Step::FaultStatus);
    let q = compare(&s, &[Quirk::CollapsedSameSourceFaults]);
    let status: Vec<_> = q
        .iter()
        .filter_map(|o| match o {
            Outcome::FaultStatus { overflow, pending, index, .. } => {
                Some((*overflow, *pending, *index))
            }
            _ => None,
        })
        .collect();
    // Nothing; the read's record pending; still only it (QEMU collapses the
    // write's fault); all clear after the drain.
    assert_eq!(status, [(false, false, 0), (false, true, 0), (false, true, 0), (false, false, 0)]);
    // The drain returns the first fault, the read.
    assert_eq!(dmas(&q)[2], (reached(DATA, 0), vec![fault(FaultType::Read, 6, IOVA_UNMAPPED)]));
}

// ---- Root and context entries ----

#[test]
fn root_entry_not_present() {
    let q = compare(&broken("root_not_present", |s| s.root_entry(0, 0)), &[]);
    assert_blocked(&q, 1);
}

#[test]
fn context_entry_not_present() {
    let q = compare(&broken("context_not_present", |s| s.context_entry(0, 0)), &[]);
    assert_blocked(&q, 2);
}

#[test]
fn root_entry_reserved_low_bit() {
    let r = root();
    let q = compare(&broken("root_reserved_lo", |s| s.root_entry(r.lo | 1 << 5, r.hi)), &[]);
    assert_blocked(&q, 0xA);
}

#[test]
fn root_entry_reserved_high_quadword() {
    let r = root();
    let q = compare(&broken("root_reserved_hi", |s| s.root_entry(r.lo, 1)), &[]);
    assert_blocked(&q, 0xA);
}

#[test]
fn root_entry_context_table_beyond_host_width() {
    let r = root();
    let q = compare(&broken("root_ctp_beyond_haw", |s| s.root_entry(r.lo | 1 << 45, r.hi)), &[]);
    assert_blocked(&q, 0xA);
}

#[test]
fn context_entry_reserved_low_bit() {
    let c = context();
    let q = compare(&broken("context_reserved_lo", |s| s.context_entry(c.lo | 1 << 6, c.hi)), &[]);
    assert_blocked(&q, 0xB);
}

#[test]
fn context_entry_reserved_high_bit() {
    let c = context();
    let q = compare(&broken("context_reserved_hi", |s| s.context_entry(c.lo, c.hi | 1 << 30)), &[]);
    assert_blocked(&q, 0xB);
}

#[test]
fn context_entry_table_beyond_host_width() {
    let c = context();
    let s = broken("context_slptptr_beyond_haw", |s| s.context_entry(c.lo | 1 << 40, c.hi));
    let q = compare(&s, &[]);
    assert_blocked(&q, 0xB);
}

#[test]
fn context_entry_unsupported_address_width() {
    // AW 2 (48-bit, 4 levels) on a unit whose SAGAW has only 39-bit.
    let c = context();
    let s = broken("context_bad_aw", |s| s.context_entry(c.lo, (c.hi & !7) | 2));
    let q = compare(&s, &[]);
    assert_blocked(&q, 3);
}

#[test]
fn context_entry_reserved_translation_type() {
    let c = context();
    let s = broken("context_reserved_tt", |s| s.context_entry(c.lo | 3 << 2, c.hi));
    let q = compare(&s, &[]);
    assert_blocked(&q, 3);
}

#[test]
fn pass_through_context_entry() {
    // TT 2 (ECAP.PT is set on QEMU): requests are not translated.
    let c = vtd_tables::ContextEntry::pass_through(DID, vtd_regs::regs::cap::Agaw::Bits39);
    let direct = Iova::new(page(DATA).as_u64() + 0x80);
    let s = Scenario::new("context_pass_through")
        .mapped(Perm::READ_WRITE)
        .context_entry(c.lo, c.hi)
        .start()
        .read(direct)
        .write(direct);
    let q = compare(&s, &[]);
    assert_eq!(dmas(&q), [(reached(DATA, 0x80), vec![]), (reached(DATA, 0x80), vec![])]);
}

#[test]
fn pass_through_beyond_memory() {
    // 1 GiB is beyond QEMU's RAM and vtd-emu's memory: no fault, the read
    // returns zeros, the write goes nowhere.
    let c = vtd_tables::ContextEntry::pass_through(DID, vtd_regs::regs::cap::Agaw::Bits39);
    let s = Scenario::new("context_pass_through_beyond_memory")
        .context_entry(c.lo, c.hi)
        .root_entry(root().lo, root().hi)
        .start()
        .read(IOVA_A)
        .write(IOVA_A);
    let q = compare(&s, &[]);
    assert_eq!(dmas(&q), [(DmaResult::Blocked, vec![]), (DmaResult::Blocked, vec![])]);
}

// ---- Second-level paging entries ----

#[test]
fn leaf_address_beyond_host_width() {
    let s = broken("pte_leaf_beyond_haw", |s| s.pte(L1, 0, leaf_a() | 1 << 40));
    let q = compare(&s, &[]);
    assert_blocked(&q, 0xC);
}

#[test]
fn non_leaf_address_beyond_host_width() {
    let l2 = SlPte::table(page(L1)).0 | 1 << 40;
    let s = broken("pte_nonleaf_beyond_haw", |s| s.pte(L2, index(IOVA_A, 2), l2));
    let q = compare(&s, &[]);
    assert_blocked(&q, 0xC);
}

#[test]
fn leaf_snoop_bit_without_snoop_control() {
    // Bit 11 (SNP) is reserved when ECAP.SC is 0, as on QEMU.
    let s = broken("pte_leaf_snp", |s| s.pte(L1, 0, leaf_a() | 1 << 11));
    let q = compare(&s, &[]);
    assert_blocked(&q, 0xC);
}

#[test]
fn leaf_page_size_bit_in_a_4k_entry_is_ignored() {
    // Bit 7 of a level-1 entry is not PS (there is no smaller page): both
    // units ignore it.
    let s = broken("pte_leaf_ps", |s| s.pte(L1, 0, leaf_a() | 1 << 7));
    let q = compare(&s, &[]);
    assert_eq!(dmas(&q), [(reached(DATA, 0), vec![]), (reached(DATA, 0), vec![])]);
}

#[test]
fn leaf_transient_mapping_bit_without_device_tlb() {
    // TM (bit 62) is reserved when ECAP.DT is 0, as on QEMU by default.
    let s = broken("pte_leaf_tm", |s| s.pte(L1, 0, leaf_a() | 1 << 62));
    let q = compare(&s, &[]);
    assert_blocked(&q, 0xC);
}

#[test]
fn top_level_superpage_bit_on_a_table_address() {
    // PS in the level-3 entry makes it a 1 GiB leaf (CAP.SLLPS has 1 GiB on
    // QEMU); its address, the L2 table's page, is not 1 GiB aligned, and
    // address bits 29:12 of a 1 GiB leaf are reserved (§9.8).
    let l3 = SlPte::table(page(L2)).0 | 1 << 7;
    let s = broken("pte_l3_ps", |s| s.pte(L3, index(IOVA_A, 3), l3));
    let q = compare(&s, &[]);
    assert_blocked(&q, 0xC);
}

// ---- Every bit of every entry ----

/// Runs each scenario on one QEMU, in turn, and on one vtd-emu memory
/// with a fresh unit each time (both memories then evolve alike). Masks,
/// in each scenario, the quirks `expected` assigns to it, and returns a
/// line for each such quirk that did not show and for each scenario whose
/// outcomes still differ.
fn differences(scenarios: &[Scenario], expected: &[(Quirk, Vec<String>)]) -> Vec<String> {
    let qemu = Qemu::start(&DEFAULT.qemu).unwrap_or_else(|e| panic!("cannot start QEMU: {e}"));
    let mut on_qemu = QemuBackend::new(&qemu).unwrap();
    let mem = EmuBackend::memory();
    let mut found = Vec::new();
    for s in scenarios {
        let q = run(&mut on_qemu, s).unwrap_or_else(|e| panic!("{} on QEMU: {e}", s.name));
        let unit = EmuBackend::unit_with(&mem, DEFAULT.emu).unwrap();
        let e = run(&mut EmuBackend::new(&unit), s)
            .unwrap_or_else(|e| panic!("{} on vtd-emu: {e}", s.name));
        let mut masked = e.clone();
        for (quirk, names) in expected {
            if names.iter().any(|n| n == s.name) && !quirk.mask(&q, &mut masked) {
                found.push(format!("{}: {quirk:?} no longer shows", s.name));
            }
        }
        if q != masked {
            found.push(format!("{}: QEMU {} / vtd-emu {}", s.name, summary(&q), summary(&e)));
        }
    }
    found
}

/// The bits worth flipping in a 64-bit word holding a table address:
/// all but address bits 25..=38, which only move the target elsewhere in
/// (or beyond) guest RAM, where the two device models differ.
fn flippable() -> impl Iterator<Item = u32> {
    (0..64).filter(|b| !(25..=38).contains(b))
}

/// `broken` scenarios, one per bit flipped by `flip` (which gets the bit).
fn sweep(
    what: &str,
    bits: impl Iterator<Item = u32>,
    flip: impl Fn(Scenario, u32) -> Scenario,
) -> Vec<Scenario> {
    bits.map(|b| {
        let name: &'static str = Box::leak(format!("{what}_bit{b}").into_boxed_str());
        broken(name, |s| flip(s, b))
    })
    .collect()
}

/// Asserts that the sweep of `scenarios` shows exactly the quirks
/// `expected` names, each in exactly the scenarios given, and no other
/// difference.
fn assert_sweep(scenarios: &[Scenario], expected: &[(Quirk, Vec<String>)]) {
    let found = differences(scenarios, expected);
    println!(
        "{} scenarios, {} with a quirk",
        scenarios.len(),
        expected.iter().map(|e| e.1.len()).sum::<usize>()
    );
    assert_eq!(found, Vec::<String>::new(), "unexplained differences:\n{}", found.join("\n"));
}

/// The names `sweep` and `descriptor_sweep` give the flips of `bits`.
fn names(what: &str, bits: impl IntoIterator<Item = u32>) -> Vec<String> {
    bits.into_iter().map(|b| format!("{what}_bit{b}")).collect()
}

#[test]
fn every_bit_of_the_root_entry() {
    let r = root();
    let mut all = sweep("root_lo", flippable(), |s, b| s.root_entry(r.lo ^ 1 << b, r.hi));
    all.extend(sweep("root_hi", 0..64, |s, b| s.root_entry(r.lo, r.hi ^ 1 << b)));
    assert_sweep(&all, &[]);
}

#[test]
fn every_bit_of_the_context_entry() {
    let c = context();
    let mut all = sweep("context_lo", flippable(), |s, b| s.context_entry(c.lo ^ 1 << b, c.hi));
    all.extend(sweep("context_hi", 0..64, |s, b| s.context_entry(c.lo, c.hi ^ 1 << b)));
    assert_sweep(&all, &[]);
}

#[test]
fn every_bit_of_the_second_level_entries() {
    let l3 = SlPte::table(page(L2)).0;
    let l2 = SlPte::table(page(L1)).0;
    let mut all = sweep("pte_l1", flippable(), |s, b| s.pte(L1, 0, leaf_a() ^ 1 << b));
    all.extend(sweep("pte_l2", flippable(), |s, b| s.pte(L2, index(IOVA_A, 2), l2 ^ 1 << b)));
    all.extend(sweep("pte_l3", flippable(), |s, b| s.pte(L3, index(IOVA_A, 3), l3 ^ 1 << b)));
    assert_sweep(
        &all,
        &[
            // W cleared: the read caches a read-only translation, the write
            // is refused silently on QEMU. Bit 14 of the level-2 entry points
            // the walk at the root table, whose first entry reads as a
            // read-only leaf: the same.
            (Quirk::SilentCachedPermission, {
                let mut n = names("pte_l1", [1]);
                n.extend(names("pte_l2", [1, 14]));
                n.extend(names("pte_l3", [1]));
                n
            }),
            (Quirk::NonLeafBit11, [names("pte_l2", [11]), names("pte_l3", [11])].concat()),
        ],
    );
}

/// One scenario per bit of `d`'s two quadwords but those in `skip`: the
/// queue enabled, `d` with the bit flipped posted.
fn descriptor_sweep(what: &str, d: RawDescriptor, skip: &[u32]) -> Vec<Scenario> {
    (0..128u32)
        .filter(|b| !skip.contains(b))
        .map(|b| {
            let name: &'static str = Box::leak(format!("{what}_bit{b}").into_boxed_str());
            let (mut qw0, mut qw1) = (d.qw0(), d.qw1());
            if b < 64 {
                qw0 ^= 1 << b;
            } else {
                qw1 ^= 1 << (b - 64);
            }
            Scenario::new(name)
                .step(Step::EnableQueue)
                .step(Step::Post(RawDescriptor::new(qw0, qw1)))
        })
        .collect()
}

#[test]
fn every_bit_of_the_invalidation_descriptors() {
    let context = Descriptor::from(ContextCacheInv { scope: ContextScope::Global }).encode();
    let mut all = descriptor_sweep("desc_cc", context, &[]);
    all.extend(descriptor_sweep("desc_iotlb_psi", psi(IOVA_A), &[]));
    // Bit 4 (IF) next to SW aborts QEMU 7.2: a test of its own below.
    all.extend(descriptor_sweep("desc_wait", wait_with_status(), &[4]));
    // Type 1 ^ bits 0, 1, 3: types 0, 3 (no ECAP.DT), 9.
    let cc_refused = [0, 1, 3, 4].into_iter().chain(6..16).chain(50..128);
    assert_sweep(
        &all,
        &[
            // Refused by both, without detail on QEMU: type bits making an
            // invalid or unsupported type, a reserved granularity (CC bit
            // 4), an address mask beyond MAMV (PSI bit 69) and the reserved
            // bits of each descriptor (§6.5.2.2, §6.5.2.3, §6.5.2.8).
            (
                Quirk::NoIqercd,
                [
                    names("desc_cc", cc_refused),
                    names("desc_iotlb_psi", [0, 1, 3].into_iter().chain(8..16).chain(32..64)),
                    names("desc_iotlb_psi", [69, 71, 72, 73, 74, 75]),
                    names("desc_wait", [2, 3, 7].into_iter().chain(8..32).chain([64, 65])),
                ]
                .concat(),
            ),
            // (Status address bits 28 and up, beyond RAM: the status write
            // fails and both stop the queue, without detail: they agree.)
            // SW cleared: a wait with neither SW nor IF.
            (Quirk::WaitNeedsSwOrIf, names("desc_wait", [5])),
            // Type 2 ^ bit 2 = 6 and 5 ^ bit 1 = 7: PASID-based IOTLB and
            // PASID-cache descriptors on a unit without scalable mode.
            (
                Quirk::ScalableDescriptorsWithoutSmts,
                [names("desc_iotlb_psi", [2]), names("desc_wait", [1])].concat(),
            ),
            // Type 5 ^ bit 0 = 4: an interrupt entry cache descriptor with
            // a wait's SW bit (reserved in IEC descriptors) set.
            (Quirk::IecReservedUnchecked, names("desc_wait", [0])),
        ],
    );
}

#[test]
fn wait_descriptor_with_status_write_and_interrupt() {
    // SW and IF together are valid (§6.5.2.8): vtd-emu writes the status
    // and sets ICS.IWC; QEMU 7.2 fails an assertion and exits.
    let w = wait_with_status();
    let s = Scenario::new("qi_wait_sw_and_if")
        .step(Step::EnableQueue)
        .step(Step::Post(RawDescriptor::new(w.qw0() | 1 << 4, w.qw1())));
    let qemu = Qemu::start(&DEFAULT.qemu).unwrap();
    match run(&mut QemuBackend::new(&qemu).unwrap(), &s) {
        Err(viommu_qtest::Error::Closed { stderr }) => {
            assert!(stderr.contains("vtd_process_wait_desc: Assertion"), "{stderr}");
        }
        other => panic!("QEMU survives a wait with SW and IF now: update the docs ({other:?})"),
    }
    let mem = EmuBackend::memory();
    let unit = EmuBackend::unit(&mem).unwrap();
    let e = run(&mut EmuBackend::new(&unit), &s).unwrap();
    assert_eq!(queues(&e), [(1, None)]);
}

// ---- Decoding as hardware does (issue 14, point 2) ----

/// A page-selective IOTLB descriptor whose address is not aligned to its
/// mask, in the shape Linux before 6.9 sends (its 6.1 kernel in caching
/// mode: qw0 0x400f2, qw1 0x203003, 8 KiB unmapped at 0x203000 and sent
/// with AM 3): drains set, the page count rounded up to a power of two,
/// the start address kept. Both units ignore the address bits below the
/// mask (§6.5.2.3) and drop the aligned 8-page block, here the one holding
/// `IOVA_A` and `IOVA_B`; `vtd-regs`' strict decoding refuses it.
#[test]
fn queued_page_invalidation_with_an_unaligned_address() {
    let at = iova(IOVA_A, 0x3000);
    let linux = RawDescriptor::new(u64::from(DID.raw()) << 16 | 0xf2, at.as_u64() | 3);
    assert!(Descriptor::decode(linux).is_err(), "strict decoding refuses it");
    let s = started("qi_psi_unaligned", Perm::READ_WRITE).step(Step::EnableQueue);
    let q = two_stale_pages_then(s, |s| s.step(Step::Post(linux)));
    assert_eq!(queues(&q), [(1, None)]);
}

/// The register-based form (§10.4.8.1): IVA_REG with `IOVA_B` and AM 1
/// names the aligned 2-page block at `IOVA_A`; both units drop both pages
/// and report a page-selective invalidation performed (IAIG 3).
#[test]
fn register_page_invalidation_with_an_unaligned_address() {
    let (iva, iotlb) = (0xF0, 0xF8);
    let command = 1 << 31 | 3 << 28 | u32::from(DID.raw());
    let s = started("register_psi_unaligned", Perm::READ_WRITE);
    let q = two_stale_pages_then(s, |s| {
        s.step(Step::WriteRegister { offset: iva, value: IOVA_B.as_u64() as u32 | 1 })
            .step(Step::WriteRegister { offset: iva + 4, value: 0 })
            .step(Step::WriteRegister { offset: iotlb, value: 0 })
            .step(Step::WriteRegister { offset: iotlb + 4, value: command })
            .step(Step::ReadRegister { offset: iotlb + 4 })
    });
    let done = q.iter().find_map(|o| match o {
        Outcome::Register { value, .. } => Some(*value),
        _ => None,
    });
    assert_eq!(done.map(|v| (v >> 31, v >> 25 & 3)), Some((0, 3)), "IVT clear, IAIG page");
}

/// A wait descriptor whose status write cannot be done (an address beyond
/// RAM): both units stop the queue there with IQE (no IQEI detail: the
/// specification has no code for it, §6.5.2.10), so a driver polling that
/// status sees an error instead of waiting forever.
#[test]
fn wait_descriptor_with_a_status_address_beyond_memory() {
    let beyond = PhysAddr::new(viommu_qtest::qemu::RAM_SIZE + 0x1000);
    let wait = Descriptor::from(WaitDesc::NONE.with_status_write(beyond, 1).unwrap()).encode();
    let s = Scenario::new("qi_wait_status_beyond_ram")
        .step(Step::EnableQueue)
        .step(Step::Post(wait_with_status()))
        .step(Step::Post(wait));
    let q = compare(&s, &[]);
    assert_eq!(queues(&q), [(1, None), (1, Some(QueueErrorInfo::NotAvailable))]);
}

/// IQA.DW = 1 on a unit without scalable mode (ECAP.SMTS = 0): DW is
/// reserved there (§10.4.23), so both units keep 128-bit descriptors and
/// read DW back as 0. (`vtd-regs`' driver refuses to write it: the scenario
/// writes the registers raw.) The 128-bit descriptor in slot 0 runs at tail
/// 0x10, which a 256-bit queue would refuse as a misaligned tail.
#[test]
fn descriptor_width_is_ignored_without_scalable_mode() {
    let queue = page(QUEUE);
    let psi_a = psi(IOVA_A);
    let iqa = queue.as_u64() as u32 | 1 << 11;
    let s = started("qi_dw_without_smts", Perm::READ_WRITE)
        .read(IOVA_A)
        .pte(L1, 0, 0)
        .read(IOVA_A)
        .step(Step::WriteRegister { offset: 0x88, value: 0 })
        .step(Step::WriteRegister { offset: 0x90, value: iqa })
        .step(Step::WriteRegister { offset: 0x94, value: 0 })
        // GCMD: translation stays on, queued invalidation on.
        .step(Step::WriteRegister { offset: 0x18, value: 1 << 31 | 1 << 26 })
        .step(Step::ReadRegister { offset: 0x90 })
        .step(Step::Write { addr: queue, value: psi_a.qw0() })
        .step(Step::Write { addr: PhysAddr::new(queue.as_u64() + 8), value: psi_a.qw1() })
        .step(Step::WriteRegister { offset: 0x88, value: 0x10 })
        .step(Step::ReadRegister { offset: 0x80 })
        .step(Step::ReadRegister { offset: 0x34 })
        .read(IOVA_A);
    let q = compare(&s, &[]);
    let read = |offset| {
        q.iter().find_map(|o| match o {
            Outcome::Register { offset: at, value, .. } if *at == offset => Some(*value),
            _ => None,
        })
    };
    assert_eq!(read(0x90), Some(queue.as_u64() as u32), "DW reads 0");
    assert_eq!(read(0x80), Some(0x10), "IQH moved past one 128-bit descriptor");
    assert_eq!(read(0x34).map(|f| f & 0x10), Some(0), "no IQE");
    let d = dmas(&q);
    assert_eq!(d[1].0, reached(DATA, 0), "stale");
    assert_eq!(d[2], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_A)]));
}

// ---- Registers ----

/// The 32-bit registers of the legacy register set and the fault recording
/// and IOTLB registers QEMU's CAP/ECAP place (0x220, 0xF0).
const REGISTERS: [usize; 36] = [
    0x00, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x2C, 0x34, 0x38, 0x3C, 0x40, 0x44,
    0x58, 0x5C, 0x80, 0x84, 0x88, 0x8C, 0x90, 0x94, 0x9C, 0xA0, 0xA4, 0xA8, 0xAC, 0xB0, 0xB8, 0xBC,
    0xF0, 0xF8, 0x220, 0x22C,
];

#[test]
fn registers_after_reset() {
    let s = REGISTERS
        .iter()
        .fold(Scenario::new("registers_reset"), |s, &offset| s.step(Step::ReadRegister { offset }));
    compare(&s, &[]);
}

#[test]
fn register_writes_of_all_ones() {
    // Every register that is not a command (GCMD, CCMD, IOTLB_REG, IQT,
    // which act): all ones written, then read back; each in its own
    // scenario on one QEMU.
    let commands = [0x18, 0x28, 0x2C, 0x88, 0xF8, 0xFC];
    let all: Vec<Scenario> = REGISTERS
        .iter()
        .filter(|o| !commands.contains(o))
        .map(|&offset| {
            let name: &'static str = Box::leak(format!("write_ones_{offset:#x}").into_boxed_str());
            Scenario::new(name)
                .step(Step::WriteRegister { offset, value: u32::MAX })
                .step(Step::ReadRegister { offset })
        })
        .collect();
    let name = |offset: usize| format!("write_ones_{offset:#x}");
    assert_sweep(
        &all,
        &[
            (Quirk::IqaReadsLatchedAddress, vec![name(0x90), name(0x94)]),
            (Quirk::IedataUpperHalfWritable, vec![name(0xA4)]),
            (Quirk::IrtaEimeWritable, vec![name(0xB8)]),
        ],
    );
}

// ---- Addresses beyond the width ----

#[test]
fn iova_beyond_the_guest_address_width() {
    let beyond = Iova::new(1 << 39 | IOVA_A.as_u64());
    let s = started("iova_beyond_agaw", Perm::READ_WRITE).read(beyond).write(beyond);
    let q = compare(&s, &[]);
    assert_eq!(
        dmas(&q),
        [
            (DmaResult::Blocked, vec![fault(FaultType::Read, 4, beyond)]),
            (DmaResult::Blocked, vec![fault(FaultType::Write, 4, beyond)]),
        ]
    );
}

#[test]
fn root_table_address_beyond_host_width() {
    let table = PhysAddr::new(page(layout::ROOT).as_u64() | 1 << 45);
    let s = Scenario::new("rtaddr_beyond_haw")
        .mapped(Perm::READ_WRITE)
        .step(Step::SetRoot { table })
        .step(Step::InvalidateContext(ContextScope::Global))
        .step(Step::InvalidateIotlb(IotlbScope::Global))
        .step(Step::EnableTranslation)
        .read(IOVA_A);
    // Both ignore the bit beyond the host width (§10.4.6).
    let q = compare(&s, &[]);
    assert_eq!(dmas(&q), [(reached(DATA, 0), vec![])]);
}

// ---- A 48-bit unit (aw-bits=48) ----

/// A 4-level context for `IOVA_A`: the level-4 table in the spare page
/// points at the usual level-3 table.
fn four_level(name: &'static str) -> Scenario {
    let c = vtd_tables::ContextEntry::translated(
        DID,
        page(layout::SPARE),
        vtd_regs::regs::cap::Agaw::Bits48,
        vtd_tables::TranslationType::Untranslated,
    );
    Scenario::new(name)
        .mapped(Perm::READ_WRITE)
        .context_entry(c.lo, c.hi)
        .pte(layout::SPARE, index(IOVA_A, 4), SlPte::table(page(L3)).0)
        .start()
}

#[test]
fn four_level_tables_on_a_48_bit_unit() {
    let high = Iova::new(1 << 39 | IOVA_A.as_u64());
    let beyond = Iova::new(1 << 48 | IOVA_A.as_u64());
    let s =
        four_level("w48_four_level").read(IOVA_A).write(iova(IOVA_A, 0x20)).read(high).read(beyond);
    let q = compare_on(WIDE, &s, &[]);
    assert_eq!(
        dmas(&q),
        [
            (reached(DATA, 0), vec![]),
            (reached(DATA, 0x20), vec![]),
            // Level-4 index 1 is empty: not present, read fault.
            (DmaResult::Blocked, vec![fault(FaultType::Read, 6, high)]),
            (DmaResult::Blocked, vec![fault(FaultType::Read, 4, beyond)]),
        ]
    );
}

#[test]
fn three_level_context_on_a_48_bit_unit() {
    // SAGAW has both widths: a 39-bit context works, and bounds the IOVA.
    let high = Iova::new(1 << 39 | IOVA_A.as_u64());
    let s = started("w48_three_level_context", Perm::READ_WRITE).read(IOVA_A).read(high);
    let q = compare_on(WIDE, &s, &[]);
    assert_eq!(
        dmas(&q),
        [(reached(DATA, 0), vec![]), (DmaResult::Blocked, vec![fault(FaultType::Read, 4, high)])]
    );
}

#[test]
fn leaf_address_beyond_a_48_bit_host_width() {
    let s = four_level("w48_pte_beyond_haw")
        .pte(L1, 0, leaf_a() | 1 << 48)
        .step(Step::InvalidateIotlb(IotlbScope::Global))
        .read(IOVA_A);
    let q = compare_on(WIDE, &s, &[]);
    assert_eq!(dmas(&q), [(DmaResult::Blocked, vec![fault(FaultType::Read, 0xC, IOVA_A)])]);
}

// ---- Caching mode ----

#[test]
fn map_after_a_fault_in_caching_mode() {
    // CAP.CM = 1 allows caching not-present entries, so software must
    // invalidate after a map (§6.1); this shows what each unit does when
    // it does not, then that the invalidation makes the map visible.
    let page_a = IotlbScope::pages(DID, IOVA_A, 0, false).unwrap();
    let s = Scenario::new("cm_map_after_fault")
        .mapped(Perm::READ_WRITE)
        .pte(L1, 0, 0)
        .start()
        .read(IOVA_A)
        .pte(L1, 0, leaf_a())
        .read(IOVA_A)
        .step(Step::InvalidateIotlb(page_a))
        .read(IOVA_A);
    let q = compare_on(CACHING, &s, &[Quirk::NoNegativeCaching]);
    assert_eq!(dmas(&q)[0], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_A)]));
    assert_eq!(dmas(&q)[1], (reached(DATA, 0), vec![]), "QEMU: visible without invalidation");
    assert_eq!(dmas(&q)[2], (reached(DATA, 0), vec![]));
}

// ---- Stale caches and register-based invalidation ----

#[test]
fn stale_iotlb_entry_until_page_selective_invalidation() {
    let other = IotlbScope::pages(DomainId::new(2), IOVA_A, 0, false).unwrap();
    let mine = IotlbScope::pages(DID, IOVA_A, 0, false).unwrap();
    let s = started("stale_iotlb_register_psi", Perm::READ_WRITE)
        .read(IOVA_A)
        .pte(L1, 0, 0)
        .read(IOVA_A)
        .step(Step::InvalidateIotlb(other))
        .read(IOVA_A)
        .step(Step::InvalidateIotlb(mine))
        .read(IOVA_A);
    let q = compare(&s, &[]);
    let d = dmas(&q);
    assert_eq!(d[1].0, reached(DATA, 0), "stale");
    assert_eq!(d[2].0, reached(DATA, 0), "another domain's invalidation");
    assert_eq!(d[3], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_A)]));
}

#[test]
fn page_selective_invalidation_with_an_address_mask() {
    // AM 1: both pages of the 8 KiB block at IOVA_A in one request.
    let two = IotlbScope::pages(DID, IOVA_A, 1, false).unwrap();
    let s = started("register_psi_am1", Perm::READ_WRITE);
    two_stale_pages_then(s, |s| s.step(Step::InvalidateIotlb(two)));
}

/// `s`, then: `IOVA_A` and `IOVA_B` read (so both are cached), both leaves
/// cleared, both read again, `invalidate`'s steps, both read a last time;
/// compared on both units with no quirk. Asserts the reads before the
/// invalidation still reached the pages (stale translations) and those
/// after it fault (FR6); returns QEMU's outcomes.
fn two_stale_pages_then(
    s: Scenario,
    invalidate: impl FnOnce(Scenario) -> Scenario,
) -> Vec<Outcome> {
    let s = s.read(IOVA_A).read(IOVA_B).pte(L1, 0, 0).pte(L1, 1, 0).read(IOVA_A).read(IOVA_B);
    let s = invalidate(s).read(IOVA_A).read(IOVA_B);
    let q = compare(&s, &[]);
    let d = dmas(&q);
    assert_eq!((d[2].0, d[3].0), (reached(DATA, 0), reached(DATA + 1, 0)), "stale");
    assert_eq!(d[4], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_A)]));
    assert_eq!(d[5], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_B)]));
    q
}

#[test]
fn queued_domain_invalidation() {
    let domain = |did| {
        Descriptor::from(IotlbInv { scope: IotlbScope::Domain(did), drain: Drain::empty() })
            .encode()
    };
    let s = started("qi_domain", Perm::READ_WRITE)
        .step(Step::EnableQueue)
        .read(IOVA_A)
        .read(IOVA_B)
        .pte(L1, 0, 0)
        .pte(L1, 1, 0)
        .step(Step::Post(domain(DomainId::new(2))))
        .read(IOVA_A)
        .step(Step::Post(domain(DID)))
        .read(IOVA_A)
        .read(IOVA_B);
    let q = compare(&s, &[]);
    let d = dmas(&q);
    assert_eq!(d[2].0, reached(DATA, 0), "another domain's invalidation");
    assert_eq!(d[3], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_A)]));
    assert_eq!(d[4], (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_B)]));
}

#[test]
fn stale_context_entry_until_context_and_domain_invalidation() {
    let device =
        ContextScope::Device { domain: DID, source: EDU_SID, function_mask: FunctionMask::None };
    let s = started("stale_context", Perm::READ_WRITE)
        .read(IOVA_A)
        .context_entry(0, 0)
        .read(IOVA_A)
        .step(Step::InvalidateContext(device))
        .read(IOVA_A)
        .step(Step::InvalidateIotlb(IotlbScope::Domain(DID)))
        .read(IOVA_A);
    let q = compare(&s, &[Quirk::IotlbBeforeContext]);
    let d = dmas(&q);
    assert_eq!(d[1].0, reached(DATA, 0), "stale context");
    assert_eq!(d[2].0, reached(DATA, 0), "QEMU: the IOTLB still serves");
    assert_eq!(d[3], (DmaResult::Blocked, vec![fault(FaultType::Read, 2, IOVA_A)]));
}

// ---- Queued invalidation ----

#[test]
fn queued_page_invalidation_ends_a_stale_translation() {
    let s = started("qi_psi_ends_stale", Perm::READ_WRITE)
        .step(Step::EnableQueue)
        .read(IOVA_A)
        .pte(L1, 0, 0)
        .read(IOVA_A)
        .step(Step::Post(psi(IOVA_B)))
        .read(IOVA_A)
        .step(Step::Post(psi(IOVA_A)))
        .read(IOVA_A);
    let q = compare(&s, &[]);
    assert_eq!(queues(&q), [(1, None), (2, None)]);
    assert_eq!(dmas(&q)[2].0, reached(DATA, 0));
    assert_eq!(dmas(&q)[3].1, [fault(FaultType::Read, 6, IOVA_A)]);
}

#[test]
fn descriptor_of_unknown_type() {
    let s = Scenario::new("qi_unknown_type")
        .step(Step::EnableQueue)
        .step(Step::Post(RawDescriptor::new(0xF, 0)));
    let q = compare(&s, &[Quirk::NoIqercd]);
    assert_eq!(queues(&q), [(0, Some(QueueErrorInfo::NotAvailable))]);
}

#[test]
fn iotlb_descriptor_with_reserved_bit() {
    let good = global_iotlb();
    let s = Scenario::new("qi_reserved_iotlb")
        .step(Step::EnableQueue)
        .step(Step::Post(good))
        .step(Step::Post(RawDescriptor::new(good.qw0() | 1 << 8, good.qw1())));
    let q = compare(&s, &[Quirk::NoIqercd]);
    assert_eq!(queues(&q), [(1, None), (1, Some(QueueErrorInfo::NotAvailable))]);
}

#[test]
fn context_descriptor_with_reserved_bit() {
    let good = Descriptor::from(ContextCacheInv { scope: ContextScope::Global }).encode();
    let s = Scenario::new("qi_reserved_context")
        .step(Step::EnableQueue)
        .step(Step::Post(RawDescriptor::new(good.qw0(), 1)));
    let q = compare(&s, &[Quirk::NoIqercd]);
    assert_eq!(queues(&q), [(0, Some(QueueErrorInfo::NotAvailable))]);
}

fn wait_with_status() -> RawDescriptor {
    let status = PhysAddr::new(page(QUEUE).as_u64() + 0xff0);
    Descriptor::from(WaitDesc::NONE.with_status_write(status, 1).unwrap()).encode()
}

#[test]
fn wait_descriptor_with_reserved_bit() {
    let good = wait_with_status();
    let s = Scenario::new("qi_reserved_wait")
        .step(Step::EnableQueue)
        .step(Step::Post(good))
        .step(Step::Post(RawDescriptor::new(good.qw0() | 1 << 8, good.qw1())));
    let q = compare(&s, &[Quirk::NoIqercd]);
    assert_eq!(queues(&q), [(1, None), (1, Some(QueueErrorInfo::NotAvailable))]);
}

#[test]
fn wait_descriptor_with_page_drain_on_a_unit_without_it() {
    // PD (bit 7) is reserved when ECAP.PDS = 0 (QEMU's ECAP has no PDS).
    let good = wait_with_status();
    let s = Scenario::new("qi_wait_pd_without_pds")
        .step(Step::EnableQueue)
        .step(Step::Post(RawDescriptor::new(good.qw0() | 1 << 7, good.qw1())));
    let q = compare(&s, &[Quirk::NoIqercd]);
    assert_eq!(queues(&q), [(0, Some(QueueErrorInfo::NotAvailable))]);
}

#[test]
fn wait_descriptor_without_status_write_or_interrupt() {
    // SW = IF = 0: a plain fence.
    let s = Scenario::new("qi_wait_plain")
        .step(Step::EnableQueue)
        .step(Step::Post(Descriptor::from(WaitDesc::NONE).encode()));
    let q = compare(&s, &[Quirk::WaitNeedsSwOrIf]);
    assert_eq!(queues(&q), [(0, Some(QueueErrorInfo::NotAvailable))]);
}

#[test]
fn disabling_the_queue_after_a_non_wait_descriptor() {
    let s = Scenario::new("qi_disable_after_iotlb")
        .step(Step::EnableQueue)
        .step(Step::Post(global_iotlb()))
        .step(Step::DisableQueue);
    let q = compare(&s, &[Quirk::DisableQueueNeedsWait]);
    assert!(matches!(q[2], Outcome::Command { result: Err(_), .. }), "{q:?}");
    let s = Scenario::new("qi_disable_after_wait")
        .step(Step::EnableQueue)
        .step(Step::Post(global_iotlb()))
        .step(Step::Post(wait_with_status()))
        .step(Step::DisableQueue);
    let q = compare(&s, &[]);
    assert_eq!(q[3], Outcome::Command { step: 3, result: Ok(None) });
}

#[test]
fn clearing_the_queue_error_alone() {
    let s = Scenario::new("qi_clear_iqe_only")
        .step(Step::EnableQueue)
        .step(Step::Post(RawDescriptor::new(0xF, 0)))
        .step(Step::ClearQueueError);
    let q = compare(&s, &[Quirk::NoIqercd, Quirk::ResumeOnTailWriteOnly]);
    assert_eq!(queues(&q), [(0, Some(QueueErrorInfo::NotAvailable)), (0, None)]);
}

#[test]
fn device_tlb_descriptor_on_a_unit_without_device_tlbs() {
    // Type 3 with ECAP.DT = 0 (QEMU's default, device-iotlb=off).
    let range = vtd_regs::desc::AtsRange::page(IOVA_A);
    let d = vtd_regs::desc::DevTlbInv { sid: EDU_SID, pfsid: EDU_SID, max_pending: 0, range };
    let s = Scenario::new("qi_dev_tlb_without_dt")
        .step(Step::EnableQueue)
        .step(Step::Post(Descriptor::from(d).encode()));
    // Both refuse it (IQE); vtd-emu says "invalid type".
    let q = compare(&s, &[Quirk::NoIqercd]);
    assert_eq!(queues(&q), [(0, Some(QueueErrorInfo::NotAvailable))]);
}

#[test]
fn tail_beyond_the_queue() {
    let s =
        Scenario::new("qi_tail_beyond_queue").step(Step::EnableQueue).step(Step::RawTail(300 << 4));
    compare(&s, &[Quirk::NoIqercd]);
}

#[test]
fn queue_address_beyond_host_width() {
    // IQA bit 45, above the host address width: §10.4.23 has hardware
    // ignore bits 63:HAW of IQA as of RTADDR.
    let base = PhysAddr::new(page(QUEUE).as_u64() | 1 << 45);
    let s = started("iqa_beyond_haw", Perm::READ_WRITE)
        .step(Step::EnableQueueAt(base))
        .read(IOVA_A)
        .pte(L1, 0, 0)
        .step(Step::Post(psi(IOVA_A)))
        .read(IOVA_A);
    // Both ignore the bit (vtd-emu since the differential run found it).
    let q = compare(&s, &[]);
    let fr6 = vec![fault(FaultType::Read, 6, IOVA_A)];
    assert_eq!(queues(&q), [(1, None)]);
    assert_eq!(dmas(&q)[1], (DmaResult::Blocked, fr6));
}

#[test]
fn misaligned_tail() {
    let d = psi(IOVA_A);
    let s = Scenario::new("qi_misaligned_tail")
        .step(Step::EnableQueue)
        .entry(page(QUEUE), d.qw0(), d.qw1())
        .step(Step::RawTail(1 << 4 | 8));
    // Bits 3:0 of IQT are reserved with 128-bit descriptors: both units
    // ignore them and fetch the one descriptor.
    let q = compare(&s, &[]);
    assert_eq!(queues(&q), [(1, None)]);
}

#[test]
fn queue_recovers_after_an_error() {
    let bad = RawDescriptor::new(0xF, 0);
    let s = started("qi_recovery", Perm::READ_WRITE)
        .step(Step::EnableQueue)
        .read(IOVA_A)
        .pte(L1, 0, 0)
        .step(Step::Post(bad))
        .step(Step::RecoverQueue)
        .read(IOVA_A)
        .step(Step::Post(psi(IOVA_A)))
        .read(IOVA_A);
    let q = compare(&s, &[Quirk::NoIqercd]);
    assert_eq!(queues(&q)[1..], [(0, None), (1, None)]);
    assert_eq!(dmas(&q)[1].0, reached(DATA, 0));
    assert_eq!(dmas(&q)[2].1, [fault(FaultType::Read, 6, IOVA_A)]);
}

// ---- Scalable mode (QEMU 7.2 `x-scalable-mode=on`) ----

/// `x-scalable-mode=on`: ECAP.SMTS, SLTS and SRS (ECAP 0x4800_80f0_0f4a);
/// second-stage and pass-through PASID entries.
const SCALABLE: Machine = Machine {
    qemu: IommuOptions {
        aw_bits: 39,
        caching_mode: false,
        device_iotlb: false,
        intremap: true,
        scalable_mode: true,
    },
    emu: EmuConfig::qemu_scalable(),
};

/// PASID 0's entry: second stage through the 3-level table at L3.
fn second_stage_pasid_entry() -> [u64; 2] {
    let e = PasidEntry::second_stage(DID, page(L3), Agaw::Bits39);
    [e.qw[0], e.qw[1]]
}

/// The scalable-mode structures with PASID 0's entry `pasid_entry`, the
/// table path and leaves of `mapped`, translation on.
fn scalable_started(name: &'static str, pasid_entry: [u64; 2]) -> Scenario {
    Scenario::new(name)
        .scalable(pasid_entry)
        .table_path()
        .leaf(IOVA_A, DATA, Perm::READ)
        .leaf(IOVA_B, DATA + 1, Perm::READ_WRITE)
        .start_scalable()
}

#[test]
fn scalable_second_stage_reads_writes_and_faults() {
    let s = scalable_started("scalable_second_stage", second_stage_pasid_entry())
        .read(iova(IOVA_A, 0x10))
        .write(iova(IOVA_B, 0x40))
        .write(IOVA_A)
        .read(IOVA_UNMAPPED);
    let quirks = [Quirk::LegacyCodesInScalableMode, Quirk::SilentCachedPermission];
    let q = compare_on(SCALABLE, &s, &quirks);
    assert_eq!(
        dmas(&q),
        [
            (reached(DATA, 0x10), vec![]),
            (reached(DATA + 1, 0x40), vec![]),
            // Cached read-only by the read: QEMU blocks it silently.
            (DmaResult::Blocked, vec![]),
            (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_UNMAPPED)]),
        ]
    );
}

#[test]
fn scalable_pass_through_pasid_entry() {
    let pt = PasidEntry::pass_through(DID, Agaw::Bits39);
    let direct = Iova::new(page(DATA).as_u64() + 0x80);
    let s =
        scalable_started("scalable_pass_through", [pt.qw[0], pt.qw[1]]).read(direct).write(direct);
    let q = compare_on(SCALABLE, &s, &[]);
    assert_eq!(dmas(&q), [(reached(DATA, 0x80), vec![]), (reached(DATA, 0x80), vec![])]);
}

#[test]
fn scalable_pass_through_needs_a_supported_address_width() {
    // AW 0 (a 2-level width no unit has): invalid programming.
    let pt = PasidEntry::pass_through(DID, Agaw::Bits39);
    let s =
        scalable_started("scalable_pass_through_aw0", [pt.qw[0] & !0x1c, pt.qw[1]]).read(IOVA_A);
    let q = compare_on(SCALABLE, &s, &[Quirk::PasidFaultCodes]);
    assert_eq!(dmas(&q), [(DmaResult::Blocked, vec![fault(FaultType::Read, 0x58, IOVA_A)])]);
}

#[test]
fn scalable_pasid_entry_not_present() {
    let s = scalable_started("scalable_pasid_entry_not_present", [0, 0]).read(IOVA_A);
    let q = compare_on(SCALABLE, &s, &[Quirk::PasidFaultCodes]);
    assert_eq!(dmas(&q), [(DmaResult::Blocked, vec![fault(FaultType::Read, 0x58, IOVA_A)])]);
}

#[test]
fn scalable_context_entry_not_present() {
    let ctx_at = ScalableContextEntry::address(page(layout::CONTEXT), EDU_SID.devfn());
    let s = Scenario::new("scalable_context_entry_not_present")
        .scalable(second_stage_pasid_entry())
        .entry(ctx_at, 0, 0)
        .start_scalable()
        .read(IOVA_A);
    let q = compare_on(SCALABLE, &s, &[Quirk::LegacyCodesInScalableMode]);
    assert_eq!(dmas(&q), [(DmaResult::Blocked, vec![fault(FaultType::Read, 2, IOVA_A)])]);
}

#[test]
fn scalable_stale_translation_until_iotlb_invalidation() {
    // Second stage: the leaf is cleared, the cached translation serves
    // until a page-selective IOTLB invalidation of the domain.
    let s = scalable_started("scalable_stale_iotlb", second_stage_pasid_entry())
        .read(IOVA_B)
        .pte(L1, index(IOVA_B, 1), 0)
        .read(IOVA_B)
        .step(Step::InvalidateIotlb(IotlbScope::pages(DID, IOVA_B, 0, true).unwrap()))
        .read(IOVA_B);
    let q = compare_on(SCALABLE, &s, &[Quirk::LegacyCodesInScalableMode]);
    assert_eq!(
        dmas(&q),
        [
            (reached(DATA + 1, 0), vec![]),
            (reached(DATA + 1, 0), vec![]),
            (DmaResult::Blocked, vec![fault(FaultType::Read, 6, IOVA_B)]),
        ]
    );
}
