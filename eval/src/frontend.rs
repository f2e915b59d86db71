//! How the driver reaches the VT-d unit: in-process ("bare metal"), by
//! trap-and-emulate (each register access a KVM MMIO exit the VMM forwards
//! to the emulator), by a sidecore (the register page is RAM a VMM thread
//! polls), or in-process with a modelled exit cost where KVM is missing.

use std::fmt;

/// A front end of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frontend {
    /// The driver in the host process on the software unit: no VM, the
    /// unit's registers are function calls (the "hardware" of bare metal).
    BareMetal,
    /// The driver in the KVM guest; every register access exits.
    Trap,
    /// The driver in the KVM guest; the register page is shared memory
    /// served by a polling VMM thread.
    Sidecore,
    /// The driver in-process; every register access charged the measured
    /// exit cost by busy-waiting (no KVM on this host).
    ModelledTrap,
    /// The driver in-process; its register page is shared memory served
    /// by the same polling thread as [`Frontend::Sidecore`], without a VM
    /// (no KVM on this host).
    SidecoreNoVm,
}

impl Frontend {
    /// Short name for tables and the CSV.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Frontend::BareMetal => "bare metal",
            Frontend::Trap => "trap & emulate",
            Frontend::Sidecore => "sidecore",
            Frontend::ModelledTrap => "trap & emulate (modelled)",
            Frontend::SidecoreNoVm => "sidecore (no VM)",
        }
    }

    /// Whether the unit is a vIOMMU (caching mode on: the guest
    /// invalidates after every map, §6.1).
    #[must_use]
    pub const fn virtual_unit(self) -> bool {
        !matches!(self, Frontend::BareMetal)
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
