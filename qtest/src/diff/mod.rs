//! Differential runs: one scripted sequence of driver actions, executed on
//! QEMU's `intel-iommu` (edu DMA over qtest) and on `vtd-emu` (the software
//! VT-d of this workspace), producing outcome lists that a test compares.
//!
//! A [`Scenario`] is a list of [`Step`]s: raw 64-bit writes of root,
//! context and second-level entries into a fixed page [`layout`], register
//! commands (set root, enable translation, register-based invalidation,
//! queued invalidation on and off), raw invalidation descriptors and raw
//! tail writes, raw register reads and writes, and DMA reads and writes at
//! an IOVA. [`run`] plays it on a [`Backend`] ([`QemuBackend`] or
//! [`EmuBackend`]) and observes what happened the same way on both: where
//! each DMA landed, the fault records and fault status (§7.3, §10.4.9,
//! §10.4.14), the granularity invalidations report, the queue errors
//! (FSTS.IQE, IQH, IQERCD; §6.5.2.10, §10.4.25) and register values. A
//! unit can be reused for many scenarios: [`run`] first brings it back to
//! its reset state. [`Quirk`]s name the
//! known, documented disagreements (docs/qemu-vs-vtd-emu.md), so that a
//! test asserts each one still shows and that everything else agrees.

pub mod backend;
pub mod emu;
pub mod layout;
pub mod outcome;
pub mod qemu;
pub mod quirk;
pub mod runner;
pub mod scenario;

pub use backend::Backend;
pub use emu::{EmuBackend, EmuMemory};
pub use outcome::{DmaResult, FaultSeen, Outcome};
pub use qemu::QemuBackend;
pub use quirk::Quirk;
pub use runner::run;
pub use scenario::{Scenario, Step};
