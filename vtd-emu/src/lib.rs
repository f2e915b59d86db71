//! A software Intel VT-d remapping unit: register semantics, queued invalidation, cached translation and fault recording; the core of a vIOMMU.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
