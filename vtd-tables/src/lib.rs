//! VT-d root, context and second-level page tables: a builder for drivers
//! and a hardened read-only walker for emulators.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod context;
pub mod error;
mod frames;
mod leaf_cache;
pub mod manager;
pub mod perm;
pub mod pte;
mod raw;
pub mod root;
pub mod table;
pub mod translation;
pub mod unmap;
pub mod walk;

pub use context::{ContextEntry, TranslationType};
pub use error::{Error, Result};
pub use manager::{Attachment, ContextChange, ContextManager};
pub use perm::{Access, Perm};
pub use pte::{SlPte, SlPteFlags};
pub use root::RootEntry;
pub use table::{PartialMap, SlPageTable, TableConfig};
pub use translation::Translation;
pub use unmap::{PartialUnmap, Unmapped};
pub use walk::{ContextInfo, Fault, WalkLimits, lookup_context, walk, walk_second_level};
