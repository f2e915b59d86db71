//! A minimal KVM VMM for reproducing the vIOMMU paper's evaluation with
//! real VM exits. It runs a `no_std` guest (`guest/`) entered directly in
//! 64-bit mode: the VMM builds the page tables and GDT, loads the guest
//! ELF and sets the vCPU's registers. The guest's accesses to the emulated
//! VT-d register page at [`abi::VTD_BASE`] exit to the VMM
//! (`KVM_EXIT_MMIO`), and the guest times itself with RDTSC.

#[path = "../guest/src/abi.rs"]
pub mod abi;
pub mod elf;
pub mod eval;
pub mod frontend;
pub mod guest_viommu;
pub mod host;
pub mod kvm_stats;
pub mod measurement;
pub mod memory;
pub mod nic;
pub mod probe;
pub mod register_page;
pub mod report;
pub mod seed;
pub mod settings;
pub mod sidecore;
pub mod stats;
pub mod vm;
pub mod watchdog;
