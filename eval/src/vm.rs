//! A one-vCPU KVM virtual machine entered directly in 64-bit mode: the VMM
//! writes the page tables, GDT, IDT and TSS, loads the guest ELF and starts
//! it at its entry point, then serves the guest's MMIO and port exits.

use crate::{abi, elf, host::KvmKind, memory::GuestRam, register_page::RegisterPage};
use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, Msrs, kvm_msr_entry, kvm_segment, kvm_userspace_memory_region,
};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuExit, VcpuFd, VmFd};
use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};
use viommu_eval_driver::Doorbell;

/// What the VMM does on the guest's exits to the VT-d register page and the
/// NIC doorbell.
pub trait ExitHandler {
    /// A read of `data.len()` bytes at `offset` of the VT-d register page.
    fn vtd_read(&mut self, offset: u64, data: &mut [u8]);
    /// A write at `offset` of the VT-d register page.
    fn vtd_write(&mut self, offset: u64, data: &[u8]);
    /// The guest rang one of the NIC's doorbells.
    fn nic(&mut self, bell: Doorbell) -> io::Result<()>;
    /// The guest entered `phase` (`abi::phase`).
    fn phase(&mut self, phase: u64) {
        let _ = phase;
    }
}

impl ExitHandler for RegisterPage {
    fn vtd_read(&mut self, offset: u64, data: &mut [u8]) {
        self.read(offset, data);
    }
    fn vtd_write(&mut self, offset: u64, data: &[u8]) {
        self.write(offset, data);
    }
    fn nic(&mut self, _bell: Doorbell) -> io::Result<()> {
        Err(io::Error::other("the probe has no NIC"))
    }
}

/// Guest-physical location of the GDT.
const GDT_ADDR: u64 = 0x500;
/// Interrupt descriptor table: 256 gates to the guest's exception stubs.
const IDT_ADDR: u64 = 0x8000;
/// 64-bit task-state segment (RSP0 and IST1 for exceptions).
const TSS_ADDR: u64 = 0x9000;
const TSS_SIZE: u64 = 104;
/// Stack the CPU switches to on exceptions (TSS IST1).
const EXCEPTION_STACK_TOP: u64 = 0x10_0000;
/// PML4, then one PDPT, then four page directories (2 MiB pages, 4 GiB).
const PML4_ADDR: u64 = 0x1000;
const PDPT_ADDR: u64 = 0x2000;
const PD_ADDR: u64 = 0x3000;
const IDENTITY_GIB: u64 = 4;

const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_PS: u64 = 1 << 7;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_AM: u64 = 1 << 18;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_FSGSBASE: u64 = 1 << 16;
const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// This host's `kvm_pvm` (not the upstream PVM ABI): writing
/// `gpa | 1` registers the guest's virtual interrupt-flag area
/// `struct pvm_vif { u8 if_; u8 pending; u8 pad[6]; u64 cr2; }`. Until one
/// is registered, PVM refuses to run guest code at virtual CPL 0 natively
/// and emulates it instruction by instruction; CPL 3 code runs natively
/// regardless. Found in the host kernel's own PVM guest code
/// (`pvm_secondary_register_vif`); see `eval/README.md`.
pub const MSR_PVM_VIF: u32 = 0x4b56_4d10;
/// Enable bit of [`MSR_PVM_VIF`].
const PVM_VIF_ENABLE: u64 = 1;

/// Selectors of the VMM-built GDT, laid out as Linux's (a PVM host runs a
/// CPL 3 guest on its own `__USER_CS`/`__USER_DS`, which have these values).
const KERNEL_CS: u16 = 0x10;
const KERNEL_DS: u16 = 0x18;
const USER_DS: u16 = 0x2b;
const USER_CS: u16 = 0x33;
const TSS_SEL: u16 = 0x40;
/// Descriptors up to and including the two-slot TSS descriptor.
const GDT_ENTRIES: u64 = 10;

/// The privilege level the guest is started at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// CPL 0, like a kernel. Under PVM a CPL 0 guest runs natively only
    /// once a virtual interrupt-flag area is registered for it (the VMM
    /// does it, see [`VmConfig::pvm_vif`]); otherwise KVM emulates it
    /// instruction by instruction.
    Kernel,
    /// CPL 3, like a user program (the VMM plays its kernel: page tables,
    /// GDT, IDT, TSS). Under PVM this runs natively at hardware CPL 3.
    User,
}

/// Wall-clock record of one guest phase.
#[derive(Clone, Debug)]
pub struct PhaseTime {
    /// Phase number (`abi::phase`).
    pub phase: u64,
    /// Wall time from this phase's doorbell to the next.
    pub wall: Duration,
    /// VM exits to userspace during the phase (doorbell excluded).
    pub exits: u64,
    /// Nanoseconds from each `KVM_RUN` return to the next within the phase:
    /// one guest-VMM-guest round trip plus the guest's work between exits.
    pub gaps_ns: Vec<u64>,
}

/// What the guest left behind when it rang DONE.
#[derive(Debug)]
pub struct Outcome {
    /// The results header.
    pub results: abi::Results,
    /// Per-phase wall time and exit counts.
    pub phases: Vec<PhaseTime>,
    /// Raw samples: rdtsc, mmio write, mmio read, loop rounds.
    pub rdtsc: Vec<u64>,
    /// See [`Outcome::rdtsc`].
    pub mmio_write: Vec<u64>,
    /// See [`Outcome::rdtsc`].
    pub mmio_read: Vec<u64>,
    /// See [`Outcome::rdtsc`].
    pub loops: Vec<u64>,
    /// 32-bit port writes (one exit each; none in PVM native supervisor
    /// mode, see [`abi::CONFIG_SKIP_PIO`]).
    pub pio: Vec<u64>,
    /// 32-bit writes to the coalesced page (no exit while the ring has room).
    pub coalesced: Vec<u64>,
    /// Total exits served.
    pub total_exits: u64,
}

/// How to set the guest up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Privilege level the guest starts at.
    pub privilege: Privilege,
    /// On a PVM host, register a virtual interrupt-flag area for a CPL 0
    /// guest ([`MSR_PVM_VIF`]) so that it runs natively; without it PVM
    /// emulates the guest.
    pub pvm_vif: bool,
    /// Back the VT-d register page with RAM (a sidecore front end polls
    /// it) instead of leaving it unbacked (every access exits).
    pub shared_register_page: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self { privilege: Privilege::Kernel, pvm_vif: true, shared_register_page: false }
    }
}

/// The virtual machine. Field order matters: the vCPU and VM close before
/// the RAM they map is unmapped.
pub struct Vm {
    vcpu: VcpuFd,
    _vm: VmFd,
    ram: Arc<GuestRam>,
    register_page: Option<Arc<GuestRam>>,
    pvm_vif: bool,
    coalesced: bool,
}

impl Vm {
    /// Creates the VM, loads `image` and sets the vCPU up in 64-bit mode at
    /// `privilege` with the VMM-built page tables, GDT, IDT and TSS.
    pub fn new(kvm: &Kvm, image: &[u8], config: VmConfig) -> io::Result<Self> {
        let VmConfig { privilege, pvm_vif, shared_register_page } = config;
        let vm = kvm.create_vm()?;
        let ram = Arc::new(GuestRam::new(abi::RAM_SIZE as usize)?);
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram.size() as u64,
            userspace_addr: ram.host_addr(),
        };
        // SAFETY: the region is a live mapping owned by `ram`, which
        // outlives the VM (field order of `Vm`).
        unsafe { vm.set_user_memory_region(region)? };
        let register_page = if shared_register_page {
            let page = Arc::new(GuestRam::new(0x1000)?);
            let region = kvm_userspace_memory_region {
                slot: 1,
                flags: 0,
                guest_phys_addr: abi::VTD_BASE,
                memory_size: 0x1000,
                userspace_addr: page.host_addr(),
            };
            // SAFETY: a live mapping owned by `page`, which the VM keeps
            // until it is closed (field order of `Vm`).
            unsafe { vm.set_user_memory_region(region)? };
            Some(page)
        } else {
            None
        };
        let entry = elf::load(image, &ram)?;
        write_page_tables(&ram)?;
        write_gdt(&ram)?;
        write_idt_and_tss(&ram)?;

        let mut vcpu = vm.create_vcpu(0)?;
        // Comparison page: writes queue in the ring instead of exiting.
        let coalesced = vm
            .register_coalesced_mmio(IoEventAddress::Mmio(abi::COALESCED_PAGE), 0x1000)
            .and_then(|()| vcpu.map_coalesced_mmio_ring())
            .is_ok();
        let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(io::Error::from)?;
        vcpu.set_cpuid2(&cpuid)?;

        let mut sregs = vcpu.get_sregs()?;
        let (code, data) = match privilege {
            Privilege::Kernel => (segment(KERNEL_CS, 0xb, 0), segment(KERNEL_DS, 0x3, 0)),
            Privilege::User => (segment(USER_CS, 0xb, 3), segment(USER_DS, 0x3, 3)),
        };
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.gdt.base = GDT_ADDR;
        sregs.gdt.limit = (GDT_ENTRIES * 8 - 1) as u16;
        sregs.idt.base = IDT_ADDR;
        sregs.idt.limit = 256 * 16 - 1;
        sregs.tr = kvm_segment {
            base: TSS_ADDR,
            limit: (TSS_SIZE - 1) as u32,
            selector: TSS_SEL,
            type_: 0xb, // 64-bit TSS, busy
            present: 1,
            s: 0,
            ..segment(TSS_SEL, 0xb, 0)
        };
        sregs.cr3 = PML4_ADDR;
        sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_FSGSBASE;
        sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
        sregs.efer = EFER_SCE | EFER_LME | EFER_LMA;
        vcpu.set_sregs(&sregs)?;

        let pvm_vif = pvm_vif
            && privilege == Privilege::Kernel
            && KvmKind::detect() == KvmKind::Pvm
            && register_pvm_vif(&vcpu)?;
        let mut regs = vcpu.get_regs()?;
        regs.rip = entry;
        regs.rsp = abi::STACK_TOP;
        // IF=0: no interrupt sources are configured. IOPL=3 at CPL 3: the
        // probe's port write is allowed there too.
        regs.rflags = match privilege {
            Privilege::Kernel => 0x2,
            Privilege::User => 0x3002,
        };
        vcpu.set_regs(&regs)?;
        if pvm_vif {
            ram.write_u64(abi::CONFIG, abi::CONFIG_SKIP_PIO)?;
        }
        Ok(Self { vcpu, _vm: vm, ram, register_page, pvm_vif, coalesced })
    }

    /// Guest RAM, shared with the emulator and the device model.
    #[must_use]
    pub fn ram(&self) -> Arc<GuestRam> {
        Arc::clone(&self.ram)
    }

    /// The RAM page behind the VT-d register page, when
    /// [`VmConfig::shared_register_page`] asked for one.
    #[must_use]
    pub fn register_page(&self) -> Option<Arc<GuestRam>> {
        self.register_page.clone()
    }

    /// Tells the guest to run the evaluation with `params` (encoded
    /// `viommu_eval_driver::Params` words) instead of the probe.
    pub fn configure_eval(&self, params: &[u64]) -> io::Result<()> {
        let config = self.ram.read_u64(abi::CONFIG)?;
        self.ram.write_u64(abi::CONFIG, config | abi::CONFIG_EVAL)?;
        for (i, w) in params.iter().enumerate() {
            self.ram.write_u64(abi::EVAL_PARAMS + i as u64 * 8, *w)?;
        }
        Ok(())
    }

    /// True when KVM PVM accepted the guest's virtual interrupt-flag area
    /// (see [`MSR_PVM_VIF`]), which lets a CPL 0 guest run natively.
    #[must_use]
    pub fn pvm_vif_registered(&self) -> bool {
        self.pvm_vif
    }

    /// True when KVM took [`abi::COALESCED_PAGE`] as coalesced MMIO.
    #[must_use]
    pub fn coalesced_mmio(&self) -> bool {
        self.coalesced
    }

    /// Runs the guest until it rings DONE, serving the register page.
    pub fn run(&mut self, timeout: Duration) -> io::Result<Outcome> {
        self.run_with(timeout, &mut RegisterPage::default())
    }

    /// Runs the guest until it rings DONE, passing its VT-d and NIC exits
    /// to `page`.
    pub fn run_with(
        &mut self,
        timeout: Duration,
        page: &mut dyn ExitHandler,
    ) -> io::Result<Outcome> {
        let mut phases: Vec<PhaseTime> = Vec::new();
        let mut phase_start: Option<(u64, Instant, u64)> = None;
        let mut exits: u64 = 0;
        let mut fault = (0u64, 0u64);
        let mut gaps_ns: Vec<u64> = Vec::new();
        let started = Instant::now();
        let mut last_return = started;
        let _watchdog = crate::watchdog::Watchdog::start(timeout);
        loop {
            if started.elapsed() > timeout {
                return Err(self.failure("timed out waiting for the guest"));
            }
            if self.coalesced {
                while let Ok(Some(_)) = self.vcpu.coalesced_mmio_read() {}
            }
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(e.into()),
            };
            let returned = Instant::now();
            gaps_ns.push(u64::try_from((returned - last_return).as_nanos()).unwrap_or(u64::MAX));
            last_return = returned;
            exits += 1;
            match exit {
                VcpuExit::IoOut(abi::PROBE_PORT, _) => {}
                // The coalesced ring was full: this write came the slow way.
                VcpuExit::MmioWrite(addr, _)
                    if page_offset(addr, abi::COALESCED_PAGE).is_some() => {}
                VcpuExit::MmioRead(addr, data) if page_offset(addr, abi::VTD_BASE).is_some() => {
                    page.vtd_read(addr - abi::VTD_BASE, data);
                }
                VcpuExit::MmioWrite(addr, data) if page_offset(addr, abi::VTD_BASE).is_some() => {
                    page.vtd_write(addr - abi::VTD_BASE, data);
                }
                VcpuExit::MmioWrite(addr, data) if page_offset(addr, abi::DOORBELL).is_some() => {
                    let value = le_u64(data);
                    match addr - abi::DOORBELL {
                        abi::DOORBELL_PHASE => {
                            // Gaps up to and including this doorbell's belong to
                            // the phase it ends.
                            let phase_gaps = std::mem::take(&mut gaps_ns);
                            if let Some((phase, t0, e0)) = phase_start.take() {
                                phases.push(PhaseTime {
                                    phase,
                                    wall: returned - t0,
                                    exits: exits - e0 - 1,
                                    gaps_ns: phase_gaps,
                                });
                            }
                            phase_start = Some((value, returned, exits));
                            page.phase(value);
                        }
                        abi::DOORBELL_NIC | abi::DOORBELL_NIC_TX => {
                            let bell = if addr - abi::DOORBELL == abi::DOORBELL_NIC {
                                Doorbell::Receive(value)
                            } else {
                                Doorbell::Transmit(value)
                            };
                            if let Err(e) = page.nic(bell) {
                                return Err(self.failure(&format!("NIC doorbell: {e}")));
                            }
                        }
                        abi::DOORBELL_DONE => return self.outcome(phases, exits),
                        abi::DOORBELL_FAULT_RIP => fault.0 = value,
                        abi::DOORBELL_FAULT_ERR => fault.1 = value,
                        abi::DOORBELL_PANIC if value == abi::PANIC_RUST => {
                            return Err(self.failure("guest panicked"));
                        }
                        abi::DOORBELL_PANIC => {
                            let (rip, err) = fault;
                            let what = format!(
                                "guest exception vector {value} at rip {rip:#x}, error code {err:#x}"
                            );
                            return Err(self.failure(&what));
                        }
                        other => return Err(self.failure(&format!("unknown doorbell {other:#x}"))),
                    }
                }
                VcpuExit::MmioRead(addr, data) => {
                    data.fill(0xff);
                    eprintln!("warning: unclaimed MMIO read at {addr:#x}");
                }
                VcpuExit::MmioWrite(addr, _) => {
                    eprintln!("warning: unclaimed MMIO write at {addr:#x}")
                }
                VcpuExit::IoOut(port, _) => eprintln!("warning: unclaimed port write {port:#x}"),
                VcpuExit::InternalError => {
                    let why = self.internal_error();
                    return Err(self.failure(&format!("KVM_EXIT_INTERNAL_ERROR: {why}")));
                }
                other => {
                    let what = format!("unexpected exit {other:?}");
                    return Err(self.failure(&what));
                }
            }
        }
    }

    fn outcome(&self, phases: Vec<PhaseTime>, total_exits: u64) -> io::Result<Outcome> {
        let r = |off: u64| self.ram.read_u64(abi::RESULTS + off);
        let results = abi::Results { magic: r(0)?, cpl3: r(8)?, last_read: r(16)? };
        if results.magic != abi::MAGIC {
            return Err(io::Error::other("guest rang DONE without valid results"));
        }
        let samples = |i: u64, n: u64| self.ram.read_u64s(abi::sample_array(i), n);
        Ok(Outcome {
            results,
            phases,
            rdtsc: samples(0, abi::SAMPLES)?,
            mmio_write: samples(1, abi::SAMPLES)?,
            mmio_read: samples(2, abi::SAMPLES)?,
            loops: samples(3, abi::LOOP_ROUNDS)?,
            pio: if self.pvm_vif { Vec::new() } else { samples(4, abi::SAMPLES)? },
            coalesced: samples(5, abi::SAMPLES)?,
            total_exits,
        })
    }

    /// Nonzero counters of the vCPU (KVM binary stats).
    pub fn vcpu_stats(&self) -> io::Result<Vec<(String, Vec<u64>)>> {
        use std::os::fd::AsRawFd;
        let all = crate::kvm_stats::read(self.vcpu.as_raw_fd())?;
        Ok(all.into_iter().filter(|(_, v)| v.iter().any(|&x| x != 0)).collect())
    }

    /// One vCPU counter by name (0 if KVM has it but it never counted).
    #[must_use]
    pub fn vcpu_stat(&self, name: &str) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let all = crate::kvm_stats::read(self.vcpu.as_raw_fd()).ok()?;
        all.into_iter().find(|(n, _)| n == name).and_then(|(_, v)| v.first().copied())
    }

    /// KVM's internal-error sub-code and data words.
    fn internal_error(&mut self) -> String {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal`
        // is the active union member.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let n = (internal.ndata as usize).min(internal.data.len());
        format!("suberror {} data {:x?}", internal.suberror, &internal.data[..n])
    }

    fn failure(&self, what: &str) -> io::Error {
        let regs = self.vcpu.get_regs().map(|r| format!("rip={:#x} rsp={:#x}", r.rip, r.rsp));
        io::Error::other(format!("{what} ({})", regs.unwrap_or_else(|e| e.to_string())))
    }
}

fn page_offset(addr: u64, base: u64) -> Option<u64> {
    addr.checked_sub(base).filter(|&off| off < 0x1000)
}

fn le_u64(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// A flat 64-bit code (type 0xB) or data (type 0x3) segment.
fn segment(selector: u16, type_: u8, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl,
        db: 0,
        s: 1,
        l: u8::from(type_ & 0x8 != 0),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Registers the zeroed (interrupts disabled) area at [`abi::PVM_VIF`];
/// returns whether KVM took the MSR.
fn register_pvm_vif(vcpu: &VcpuFd) -> io::Result<bool> {
    let entry = kvm_msr_entry {
        index: MSR_PVM_VIF,
        data: abi::PVM_VIF | PVM_VIF_ENABLE,
        ..Default::default()
    };
    let msrs = Msrs::from_entries(&[entry]).map_err(|e| io::Error::other(format!("{e:?}")))?;
    Ok(vcpu.set_msrs(&msrs)? == 1)
}

/// Identity map of the low 4 GiB with 2 MiB pages (covers RAM and the
/// VT-d register page at 0xFED9_0000).
fn write_page_tables(ram: &GuestRam) -> io::Result<()> {
    let flags = PTE_P | PTE_RW | PTE_US;
    ram.write_u64(PML4_ADDR, PDPT_ADDR | flags)?;
    for gib in 0..IDENTITY_GIB {
        let pd = PD_ADDR + gib * 0x1000;
        ram.write_u64(PDPT_ADDR + gib * 8, pd | flags)?;
        for i in 0..512 {
            ram.write_u64(pd + i * 8, ((gib << 30) + (i << 21)) | flags | PTE_PS)?;
        }
    }
    Ok(())
}

/// Flat 64-bit code and data descriptors for CPL 0 and 3 at Linux's
/// selectors, and the 64-bit TSS.
fn write_gdt(ram: &GuestRam) -> io::Result<()> {
    ram.write(GDT_ADDR, &[0; (GDT_ENTRIES * 8) as usize])?;
    let at = |sel: u16| GDT_ADDR + u64::from(sel & !7);
    ram.write_u64(at(KERNEL_CS), 0x00af_9b00_0000_ffff)?;
    ram.write_u64(at(KERNEL_DS), 0x00cf_9300_0000_ffff)?;
    ram.write_u64(at(USER_DS), 0x00cf_f300_0000_ffff)?;
    ram.write_u64(at(USER_CS), 0x00af_fb00_0000_ffff)?;
    // System descriptor: limit 15:0, base 23:0, type 0xB (busy 64-bit
    // TSS), P, limit 19:16, base 31:24; second slot: base 63:32.
    let (base, limit) = (TSS_ADDR, TSS_SIZE - 1);
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x8b << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    ram.write_u64(at(TSS_SEL), low)?;
    ram.write_u64(at(TSS_SEL) + 8, base >> 32)
}

/// 256 interrupt gates (DPL 0, IST1) to the guest's exception stubs, and a
/// TSS whose RSP0 and IST1 point at the exception stack.
fn write_idt_and_tss(ram: &GuestRam) -> io::Result<()> {
    for v in 0..256u64 {
        let handler = abi::VECTOR_STUBS + v * abi::VECTOR_STUB_SIZE;
        let low = (handler & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (1 << 32) // IST1
            | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
            | (((handler >> 16) & 0xffff) << 48);
        ram.write_u64(IDT_ADDR + v * 16, low)?;
        ram.write_u64(IDT_ADDR + v * 16 + 8, handler >> 32)?;
    }
    ram.write(TSS_ADDR, &[0; TSS_SIZE as usize])?;
    ram.write_u64(TSS_ADDR + 4, EXCEPTION_STACK_TOP)?; // RSP0
    ram.write_u64(TSS_ADDR + 36, EXCEPTION_STACK_TOP)?; // IST1
    // I/O map base past the limit: no I/O permission bitmap.
    ram.write(TSS_ADDR + 102, &(TSS_SIZE as u16).to_le_bytes())
}
