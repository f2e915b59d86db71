//! VT-d IOTLB and context-cache invalidation: queued and register-based, with strict, deferred and asynchronous flush policies.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
