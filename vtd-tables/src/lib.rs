//! VT-d root, context and second-level page tables: a builder for drivers
//! and a hardened read-only walker for emulators.
//!
//! - Entries, typed and size-asserted: [`RootEntry`], [`ContextEntry`] and
//!   [`SlPte`] (legacy mode, VT-d §9.1, §9.3, §9.8), and the scalable-mode
//!   entries in [`root`] and [`scalable`] (§9.2, §9.4–§9.6).
//! - The driver side: [`SlPageTable`], a domain's second-level table (3, 4
//!   or 5 levels, 4 KiB / 2 MiB / 1 GiB pages) built in frames from a
//!   [`FrameAllocator`](vtd_regs::FrameAllocator) through
//!   [`PhysMem`](vtd_regs::PhysMem); [`ContextManager`], the root and
//!   context tables. Unmapping returns an [`Unmapped`] token: the IOTLB is
//!   owed an invalidation, and detached table frames are freed only when
//!   the token comes back to [`SlPageTable::release`].
//! - The hardware side: [`walk()`] ([`lookup_context`] then
//!   [`walk_second_level`]) translates through tables it does not trust and
//!   reports the VT-d fault reason a unit would.
//! - Scalable mode (§3.4.3, §3.6, §3.8, §9.2–§9.7): [`PasidTable`] and
//!   [`ScalableContextManager`] build a device's PASID directory and tables
//!   and the scalable-mode root and context tables, returning the
//!   invalidations owed as tokens ([`PasidChange`],
//!   [`ScalableContextChange`]); first-stage tables are [`SlPageTable`]s
//!   built with [`TableConfig::first_stage`] ([`FlPte`] entries), so one
//!   mapper serves both stages; [`walk::scalable`] walks every PGTT,
//!   nested included, with the scalable-mode fault reasons.
//!
//! ```
//! use std::cell::RefCell;
//! use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
//! use vtd_regs::{DomainId, FrameAllocator, Iova, MemError, PageSize, PhysAddr, PhysMem, SourceId};
//! use vtd_tables::{Access, ContextManager, Perm, SlPageTable, TableConfig, WalkLimits, walk};
//!
//! /// 1 MiB of memory at physical address 0.
//! struct Mem(RefCell<Vec<u64>>);
//! impl PhysMem for Mem {
//!     fn read_u64(&self, a: PhysAddr) -> Result<u64, MemError> {
//!         let i = (a.as_u64() / 8) as usize;
//!         self.0.borrow().get(i).copied().ok_or(MemError::OutOfRange { addr: a, len: 8 })
//!     }
//!     fn write_u64(&self, a: PhysAddr, v: u64) -> Result<(), MemError> {
//!         let i = (a.as_u64() / 8) as usize;
//!         let mut m = self.0.borrow_mut();
//!         *m.get_mut(i).ok_or(MemError::OutOfRange { addr: a, len: 8 })? = v;
//!         Ok(())
//!     }
//!     fn read_bytes(&self, _: PhysAddr, _: &mut [u8]) -> Result<(), MemError> { unimplemented!() }
//!     fn write_bytes(&self, a: PhysAddr, d: &[u8]) -> Result<(), MemError> {
//!         // Only used to zero frames here.
//!         (0..d.len() as u64 / 8).try_for_each(|k| self.write_u64(PhysAddr::new(a.as_u64() + 8 * k), 0))
//!     }
//! }
//! /// Frames 1.. of that memory, never reused.
//! struct Frames(RefCell<u64>);
//! // SAFETY: each frame is handed out once and reached only through `Mem`.
//! unsafe impl FrameAllocator for Frames {
//!     fn allocate(&self, _order: u8) -> Option<PhysAddr> {
//!         let mut n = self.0.borrow_mut();
//!         *n += 1;
//!         (*n < 256).then(|| PhysAddr::new(*n << 12))
//!     }
//!     fn deallocate(&self, _: PhysAddr, _: u8) {}
//! }
//!
//! let (mem, frames) = (Mem(RefCell::new(vec![0; 1 << 17])), Frames(RefCell::new(0)));
//! // A 39-bit domain on a unit with 3- and 4-level tables and 2 MiB pages.
//! let cfg = TableConfig::new(Sagaw::BITS39_L3 | Sagaw::BITS48_L4, SecondLevelPageSizes::SIZE_2MIB, 39)?;
//! let mut table = SlPageTable::new(&mem, &frames, cfg)?;
//! table.map(Iova::new(0x10_0000), PhysAddr::new(0x8000_0000), PageSize::Size4KiB, Perm::READ)?;
//!
//! // Device 00:03.0 in domain 1; program RTADDR with `root_table()`.
//! let mut contexts = ContextManager::new(&mem, &frames)?;
//! let sid = SourceId::new(0, 3, 0).unwrap();
//! let _change = contexts.attach(sid, DomainId::new(1), &table)?; // then invalidate the context cache
//!
//! // What the unit does with a DMA read from that device:
//! let limits = WalkLimits {
//!     haw: 39, mgaw: 39, sagaw: Sagaw::BITS39_L3, sllps: SecondLevelPageSizes::SIZE_2MIB,
//!     pass_through: false, device_tlb: false, snoop_control: false,
//! };
//! let (_ctx, t) = walk(&mem, contexts.root_table(), sid, Iova::new(0x10_0040), Access::Read, &limits).unwrap();
//! assert_eq!(t.phys, PhysAddr::new(0x8000_0040));
//! let denied = walk(&mem, contexts.root_table(), sid, Iova::new(0x10_0040), Access::Write, &limits);
//! assert_eq!(denied.unwrap_err().reason as u8, 5);
//!
//! // Unmap, invalidate the IOTLB for token.iova()..+token.len(), then release.
//! let token = table.unmap(Iova::new(0x10_0000), PageSize::Size4KiB)?;
//! table.release(token).unwrap();
//! # Ok::<(), vtd_tables::Error>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod context;
pub mod error;
pub mod fl_pte;
mod frames;
mod kept;
mod leaf_cache;
pub mod manager;
pub mod pasid;
pub mod perm;
pub mod pte;
mod raw;
pub mod root;
pub mod scalable;
pub mod shared;
pub mod table;
pub mod translation;
pub mod unmap;
pub mod walk;

pub use context::{ContextEntry, TranslationType};
pub use error::{Error, Result};
pub use fl_pte::{FlPte, FlPteFlags};
pub use frames::MAX_SPARE_FRAMES;
pub use kept::MAX_KEPT_TABLES;
pub use manager::{Attachment, ContextChange, ContextManager};
pub use pasid::{
    PasidAttachment, PasidChange, PasidTable, PasidUse, ScalableContextChange,
    ScalableContextManager,
};
pub use perm::{Access, Perm};
pub use pte::{SlPte, SlPteFlags};
pub use root::RootEntry;
pub use shared::SharedSlTable;
pub use table::{PartialMap, SlPageTable, Stage, TableConfig};
pub use translation::Translation;
pub use unmap::{PartialUnmap, Unmapped};
pub use walk::{
    ContextInfo, Fault, WalkLimits, lookup_context, walk, walk_second_level, walk_second_level_any,
};
