//! How the driver reaches the VT-d unit: in-process ("bare metal", the
//! native driver on the software unit), by trap-and-emulate (each register
//! access a KVM MMIO exit the VMM forwards to the guest's vIOMMU,
//! [`crate::guest_viommu`]), by a sidecore (the register page is RAM a VMM
//! thread polls, forwarding to the vIOMMU), by trap-and-emulate of a
//! nested vIOMMU (the guest's own first-stage tables walked by the host
//! unit: only invalidations exit), or in-process on the vIOMMU with a
//! modelled exit cost where KVM is missing.

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
    /// The driver in the KVM guest on a nested vIOMMU
    /// ([`crate::guest_viommu::Mode::Nested`]); every register access
    /// exits, but the guest's maps make none.
    Nested,
    /// [`Frontend::Nested`] in-process, every register access charged as
    /// by [`Frontend::ModelledTrap`] (no KVM on this host).
    ModelledNested,
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
            Frontend::Nested => "nested",
            Frontend::ModelledNested => "nested (modelled)",
        }
    }

    /// Whether the guest's unit is the nested vIOMMU (else the shadowing
    /// one, or none on bare metal).
    #[must_use]
    pub const fn nested(self) -> bool {
        matches!(self, Frontend::Nested | Frontend::ModelledNested)
    }

    /// Whether the exits are modelled: register accesses charged in-process.
    #[must_use]
    pub const fn modelled(self) -> bool {
        matches!(self, Frontend::ModelledTrap | Frontend::ModelledNested)
    }

    /// Whether the unit is a vIOMMU (caching mode on: the guest
    /// invalidates after every map, §6.1; shadowed into a physical unit,
    /// [`crate::guest_viommu`]).
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
