//! A software Intel VT-d remapping unit: register semantics, queued
//! invalidation, cached translation and fault recording; the core of a
//! vIOMMU.
//!
//! [`Emulator`] is one remapping unit. Software drives it through its
//! registers ([`Mmio`](vtd_regs::Mmio) is implemented for `&Emulator`, so
//! `vtd_regs::RemappingUnit` and any other driver run against it
//! unchanged); devices send it DMA requests with [`Emulator::translate`]. It
//! reads root, context and second-level tables and the invalidation queue
//! from memory it does not trust, through [`PhysMem`](vtd_regs::PhysMem):
//! [`SimMemory`] in tests and benchmarks, a guest's RAM in a vIOMMU.
//!
//! What it models, by section of the specification:
//! - the register file (§10.4): read-only, reserved and write-1-to-clear
//!   bits; the GCMD/GSTS command protocol (SRTP latches RTADDR, SIRTP
//!   latches IRTA, enables TE/QIE/IRE/CFI); register-based context-cache and
//!   IOTLB invalidation reporting the granularity performed;
//! - caches (§6.1, §6.2): a context cache and an IOTLB of bounded size,
//!   set-associative with LRU eviction, whose entries outlive the memory
//!   they were read from until an invalidation of matching scope; in caching
//!   mode (CAP.CM) not-present entries are cached too;
//! - queued invalidation (§6.5.2): 128-bit descriptors, and 256-bit ones
//!   on a unit with ECAP.SMTS; descriptors decoded as hardware decodes them
//!   (low address bits below a page-selective mask ignored); wait
//!   descriptors with status write and interrupt; IQE (also for a status
//!   write that fails), ITE, ICE;
//! - interrupt remapping (§5.1, [`Emulator::remap_interrupt`]): remappable
//!   and compatibility-format requests, a bounded interrupt entry cache
//!   whose entries stay stale until an interrupt entry cache invalidation
//!   (global or index-selective), source-id validation, faults 20h-26h
//!   with FPD honoured;
//! - fault recording (§7.2): NFR fault recording registers, FRI, PPF, PFO,
//!   fault and invalidation completion events with masking;
//! - counters of all of it ([`Counters`]) for benchmarks.
//!
//! An embedder (a vIOMMU) learns what the unit executes through a [`Hook`]
//! ([`Emulator::with_hook`]): every invalidation, decoded once and with the
//! scope performed, before it completes, and every change of the root
//! table, translation or interrupt remapping state. The unit stays the one
//! decoder of its registers and queue; see [`hook`].
//!
//! - scalable mode (ECAP.SMTS, [`scalable`]): scalable-mode root and
//!   context entries, PASID directory and tables, first-stage, second-stage,
//!   nested and pass-through translation ([`Emulator::translate_pasid`]),
//!   a PASID cache and a PASID-tagged IOTLB, the PASID-based invalidation
//!   descriptors (types 6, 7, 8) in a 256-bit queue, scalable-mode fault
//!   reasons with the PASID recorded.
//!
//! Not modelled: posted interrupts (CAP.PI is not reported; a
//! posted-format entry is a reserved-field fault), advanced fault logging,
//! protected memory regions, ATS translation
//! requests (fault Dh).
//!
//! ```
//! use core::sync::atomic::AtomicU64;
//! use vtd_emu::{Access, EmuConfig, Emulator, StaticMemory};
//! use vtd_regs::regs::cap::Agaw;
//! use vtd_regs::regs::rtaddr::TranslationTableMode;
//! use vtd_regs::{DomainId, Iova, PageSize, PhysAddr, PhysMem, RemappingUnit, SourceId};
//! use vtd_tables::pte::{entry_address, index};
//! use vtd_tables::{ContextEntry, Perm, RootEntry, SlPte, TranslationType};
//!
//! static RAM: [AtomicU64; 8192] = [const { AtomicU64::new(0) }; 8192]; // 64 KiB
//! let mem = StaticMemory::from_words(&RAM);
//! let emu: Emulator<_> = Emulator::new(&mem, EmuConfig::qemu()).unwrap();
//!
//! // Tables: root at 0x1000, context table at 0x2000, a 3-level table at
//! // 0x3000/0x4000/0x5000 mapping IOVA 0x7000 to 0x9000, read-only.
//! let dev = SourceId::new(0, 1, 0).unwrap();
//! let [root, ctx, l3, l2, l1] = [1, 2, 3, 4, 5].map(|f| PhysAddr::new(f << 12));
//! RootEntry::new(ctx).write(&mem, root, 0).unwrap();
//! let ce = ContextEntry::translated(DomainId::new(1), l3, Agaw::Bits39, TranslationType::Untranslated);
//! ce.write(&mem, ctx, dev).unwrap();
//! let iova = Iova::new(0x7000);
//! mem.write_u64(entry_address(l3, index(iova, 3)), SlPte::table(l2).0).unwrap();
//! mem.write_u64(entry_address(l2, index(iova, 2)), SlPte::table(l1).0).unwrap();
//! let leaf = SlPte::leaf(PhysAddr::new(0x9000), Perm::READ, PageSize::Size4KiB);
//! mem.write_u64(entry_address(l1, index(iova, 1)), leaf.0).unwrap();
//!
//! // A driver programs the unit through its registers.
//! let mut unit = RemappingUnit::new(&emu).unwrap();
//! unit.set_root_table(root, TranslationTableMode::Legacy).unwrap();
//! unit.enable_translation().unwrap();
//!
//! // The device's DMA.
//! assert_eq!(emu.translate(dev, Iova::new(0x7abc), Access::Read), Ok(PhysAddr::new(0x9abc)));
//! let fault = emu.translate(dev, Iova::new(0x7abc), Access::Write).unwrap_err();
//! assert_eq!(fault.reason, vtd_regs::FaultReason::WriteNotPermitted);
//! let record = unit.drain_faults().next().unwrap();
//! assert_eq!((record.source, record.fault_info), (dev, 0x7000));
//! assert_eq!(emu.counters().walks, 2);
//! ```
//!
//! References are to the Intel Virtualization Technology for Directed I/O
//! Architecture Specification, revision 3.x.
#![cfg_attr(not(test), no_std)]
// `deny`, not `forbid`: the one `unsafe impl` of `FrameAllocator` (an
// unsafe-to-implement trait) is allowed locally and documented.
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod cache;
pub mod config;
pub mod context_cache;
pub mod counters;
mod dma;
mod emulator;
mod events;
pub mod fault_log;
pub mod hook;
mod iec;
mod interrupt;
pub mod iotlb;
pub mod mem;
mod perform;
mod qi;
mod regs;
pub mod scalable;
mod translate;

pub use cache::CacheStats;
pub use config::{ConfigError, EmuConfig};
pub use context_cache::ContextCache;
pub use counters::{Counters, RegisterName};
pub use dma::DmaError;
pub use emulator::{DevTlbResponse, Emulator, MAX_ATS_DEVICES};
pub use fault_log::{Fault, FaultLog, Logged};
pub use hook::{Hook, NoHook};
pub use iec::{IEC_ENTRIES, IEC_WAYS};
pub use interrupt::{Delivered, InterruptFault};
pub use iotlb::Iotlb;
pub use mem::{SimFrameAllocator, SimMemory, StaticMemory};
pub use vtd_tables::Access;
