//! Fuzz harnesses: each takes arbitrary bytes, drives one decoder of
//! untrusted input with them, and panics only on a bug (a broken invariant
//! of the code under test, never the input being malformed).
//!
//! The harnesses are plain functions so they run everywhere: libFuzzer
//! drives them from `fuzz/libfuzzer/` on nightly, and `tests/replay.rs`
//! runs every harness over its checked-in corpus `corpus/<name>/` on stable.
//! See `README.md` for how to add one.

macro_rules! harnesses {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            mod $name;
            $(#[$doc])*
            pub use $name::$name;
        )*

        /// Every harness with its name (its corpus folder and libFuzzer
        /// target).
        pub const HARNESSES: &[(&str, fn(&[u8]))] = &[$((stringify!($name), $name)),*];
    };
}

harnesses! {
    /// The DMAR ACPI table parser (`vtd_regs::dmar`).
    dmar;
    /// The vtd-emu register file: arbitrary register accesses and memory.
    emu_registers;
    /// The vtd-emu queued invalidation engine: arbitrary queue contents.
    emu_queue;
    /// The vtd-tables walker: arbitrary table memory.
    walk;
    /// The vIOMMU under an arbitrary guest's registers, tables and queue.
    viommu_guest;
    /// vtd-emu in scalable mode: arbitrary PASID and first/second-stage
    /// tables, 256-bit queue contents and PASID-tagged requests.
    emu_scalable;
    /// vtd-emu's interrupt remapping: arbitrary tables and interrupt requests.
    irq_remap;
    /// The nested vIOMMU under an arbitrary guest's registers, scalable-mode
    /// tables, first-stage maps, queue and DMA at any PASID.
    viommu_nested;
}

/// One 12-byte operation of the vIOMMU harnesses' input: kind `k`, index
/// `idx` and value `val`, as they decode it.
#[cfg(test)]
fn op(k: u8, idx: u16, val: u64) -> Vec<u8> {
    let mut v = vec![k];
    v.extend_from_slice(&idx.to_le_bytes());
    v.push(0);
    v.extend_from_slice(&val.to_le_bytes());
    v
}
