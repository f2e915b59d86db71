//! What the remapping unit supports: the parameters a walk checks entries
//! against.

use vtd_regs::regs::{Cap, Ecap, Sagaw, SecondLevelPageSizes};

/// The unit's capabilities that decide whether an entry is valid.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WalkLimits {
    /// Host address width in bits: table pointers and page frames at or
    /// above it have reserved bits set.
    pub haw: u8,
    /// CAP.MGAW: the widest input address (§10.4.2).
    pub mgaw: u8,
    /// CAP.SAGAW: the table depths a context entry may select.
    pub sagaw: Sagaw,
    /// CAP.SLLPS: the superpage sizes a leaf may have.
    pub sllps: SecondLevelPageSizes,
    /// ECAP.PT: pass-through contexts are valid.
    pub pass_through: bool,
    /// ECAP.DT: device-TLB contexts are valid, and leaves may set TM.
    pub device_tlb: bool,
    /// ECAP.SC: leaves may set SNP.
    pub snoop_control: bool,
}

impl WalkLimits {
    /// The limits of a unit with these capability registers, whose host
    /// address width is `haw` bits (the platform's, often MGAW).
    pub const fn new(cap: Cap, ecap: Ecap, haw: u8) -> Self {
        Self {
            haw,
            mgaw: cap.mgaw().bits(),
            sagaw: cap.sagaw(),
            sllps: cap.sllps(),
            pass_through: ecap.pass_through(),
            device_tlb: ecap.device_tlb(),
            snoop_control: ecap.snoop_control(),
        }
    }
}
