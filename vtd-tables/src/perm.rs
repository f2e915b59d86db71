//! Access permissions of second-level translations (VT-d §3.7.2, §9.8): what
//! a mapping allows, and what a DMA request asks for.

use vtd_regs::FaultReason;

bitflags::bitflags! {
    /// The permissions of a mapping: the R and W bits of a second-level entry
    /// (§9.8), which occupy bits 0 and 1 as here. The effective permission
    /// of a walk is the intersection over all levels (§3.7.2).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    pub struct Perm: u8 {
        /// Reads (DMA from memory) are allowed.
        const READ = 1 << 0;
        /// Writes (DMA to memory) are allowed.
        const WRITE = 1 << 1;
        /// Reads and writes.
        const READ_WRITE = Self::READ.bits() | Self::WRITE.bits();
    }
}

/// The kind of a DMA request being translated: what it needs from [`Perm`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Access {
    /// A read request (device reads memory).
    Read,
    /// A write request (device writes memory).
    Write,
}

impl Access {
    /// The permission the request needs.
    #[inline]
    pub const fn required(self) -> Perm {
        match self {
            Access::Read => Perm::READ,
            Access::Write => Perm::WRITE,
        }
    }

    /// The fault reason of a request whose walk lacks [`required`](Self::required)
    /// (Appendix A, 5h and 6h); also reported for a not-present entry, which
    /// VT-d encodes as R = W = 0.
    #[inline]
    pub const fn denied(self) -> FaultReason {
        match self {
            Access::Read => FaultReason::ReadNotPermitted,
            Access::Write => FaultReason::WriteNotPermitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm_bits_are_pte_bits() {
        assert_eq!(Perm::READ.bits(), 0b01);
        assert_eq!(Perm::WRITE.bits(), 0b10);
        assert_eq!(Perm::READ_WRITE, Perm::all());
        assert_eq!(Access::Write.denied() as u8, 5);
        assert_eq!(Access::Read.denied() as u8, 6);
        assert!(Perm::READ_WRITE.contains(Access::Write.required()));
        assert!(!Perm::READ.contains(Access::Write.required()));
    }
}
