//! The vtd-tables walker over arbitrary table memory (a guest's, or a
//! broken unit's): it must never panic, never read more than a bounded
//! number of entries, and agree with itself: a translation it returns is
//! page-aligned within the page size it reports, and the access it was
//! asked for is allowed.
//!
//! Input: byte 0 picks the capabilities (QEMU's or a 48-bit unit's) and
//! the access, bytes 1-2 the source id, bytes 3-10 (LE) the IOVA, bytes
//! 11-12 the root table's page, and the rest is the memory, repeated over
//! 64 KiB so every pointer that stays in range lands on fuzzer bytes.

use vtd_regs::regs::{Cap, Ecap};
use vtd_regs::{Iova, PhysAddr, SourceId};
use vtd_tables::{Access, WalkLimits};

use crate::emu_registers::memory;

/// Runs `data` as a table walk.
pub fn walk(data: &[u8]) {
    let Some((head, contents)) = data.split_at_checked(13) else { return };
    let (cap, haw) = if head[0] & 1 == 0 {
        (Cap(0x00d2_008c_2226_0206), 39)
    } else {
        (Cap(0x00d2_008c_222f_0686), 48)
    };
    let limits = WalkLimits::new(cap, Ecap(0x00f0_0f4a), haw);
    let access = if head[0] & 2 == 0 { Access::Read } else { Access::Write };
    let sid = SourceId::from_raw(u16::from_le_bytes([head[1], head[2]]));
    let iova = Iova::new(u64::from_le_bytes(head[3..11].try_into().unwrap_or_default()));
    let root = PhysAddr::new(u64::from(u16::from_le_bytes([head[11], head[12]])) << 12);
    let mem = memory(contents);
    if let Ok((_, t)) = vtd_tables::walk(&mem, root, sid, iova, access, &limits) {
        let mask = t.size.bytes() - 1;
        assert_eq!(t.phys.as_u64() & mask, iova.as_u64() & mask, "offset within the page kept");
        assert!(t.perm.contains(access.required()), "translation without the access's permission");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `mapped_read` seed reaches a translation, so the fuzzer starts
    /// from the success path too.
    #[test]
    fn the_mapped_seed_translates() {
        let data = include_bytes!("../corpus/walk/mapped_read");
        let limits = WalkLimits::new(Cap(0x00d2_008c_2226_0206), Ecap(0x00f0_0f4a), 39);
        let mem = memory(&data[13..]);
        let sid = SourceId::from_raw(8);
        let got = vtd_tables::walk(&mem, PhysAddr::new(0x1000), sid, Iova::new(0x10123), Access::Read, &limits);
        assert_eq!(got.map(|(_, t)| t.phys), Ok(PhysAddr::new(0x3123)));
        walk(data);
    }
}
