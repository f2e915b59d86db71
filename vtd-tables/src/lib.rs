//! VT-d root, context and second-level page tables: a builder for drivers
//! and a hardened read-only walker for emulators.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod context;
pub mod perm;
pub mod pte;
mod raw;
pub mod root;
pub mod translation;
pub mod walk;

pub use context::{ContextEntry, TranslationType};
pub use perm::{Access, Perm};
pub use pte::{SlPte, SlPteFlags};
pub use root::RootEntry;
pub use translation::Translation;
pub use walk::{ContextInfo, Fault, WalkLimits, lookup_context, walk, walk_second_level};
