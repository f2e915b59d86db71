//! VT-d root, context and second-level page tables: a builder for drivers and a hardened read-only walker for emulators.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
