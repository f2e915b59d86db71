//! vtd-emu in scalable mode over arbitrary memory: scalable-mode root and
//! context entries, PASID directories and tables, first- and second-stage
//! tables and a 256-bit invalidation queue, all fuzzer bytes. Whatever they
//! hold, the unit must not panic, loop or reach outside its memory; a
//! translation keeps the offset within its page; and a unit without caches
//! translates exactly as the uncached walker (`vtd_tables::walk_scalable`)
//! does over a copy of the same memory (a copy: both set accessed and
//! dirty flags in first-stage entries, which may be any other structure).
//!
//! Input: byte 0 picks the configuration (bit 0: every translation type,
//! else QEMU 7.2's `x-scalable-mode=on`; bit 1: 5-level first stage; bit 2:
//! no caches; bit 3: device-TLBs), byte 1 the root table's page, byte 2 the
//! length `n` of a memory pattern, the next `n` bytes the pattern tiled
//! over the 64 KiB of memory (the queue is its second-to-last page), and
//! the rest 16-byte operations `[kind, flags, sid: u16, pasid: u24, _,
//! iova: u64]` (at most 256): a DMA request (with the PASID when flags
//! bit 0, supervisor with bit 1, a write with bit 2), a register-based
//! global context-cache or IOTLB invalidation, or a tail write handing the
//! unit the descriptors in memory.

use vtd_emu::EmuConfig;
use vtd_regs::desc::Pasid;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{Ccmd, DescriptorWidth, IotlbInv, Iqa, Iqt, QueueSize};
use vtd_regs::{
    ContextScope, Drain, IotlbScope, Iova, Mmio, PhysAddr, PhysMem, RemappingUnit, SourceId,
};
use vtd_tables::Access;
use vtd_tables::walk::{Request, ScalableLimits, walk_scalable};

use crate::emu_registers::{MEM, memory, unit};

/// Most operations run per input.
const MAX_OPS: usize = 256;
/// The queue's page (one page of 128 descriptors of 256 bits).
const QUEUE: u64 = 62 << 12;

/// The configuration byte 0 selects.
fn config(b: u8) -> EmuConfig {
    let mut cfg = if b & 1 != 0 { EmuConfig::scalable() } else { EmuConfig::qemu_scalable() };
    cfg.cap = cfg.cap.with_fl5lp(b & 2 != 0 && cfg.ecap.flts());
    if b & 4 != 0 {
        cfg = cfg.with_iotlb(0, 1).with_context_cache(0, 1);
    }
    cfg.ecap = cfg.ecap.with_device_tlb(b & 8 != 0);
    cfg
}

/// Runs `data` as scalable-mode tables, a queue and requests.
pub fn emu_scalable(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<3>() else { return };
    let (pattern, ops) = rest.split_at(usize::from(head[2]).min(rest.len()));
    let cfg = config(head[0]);
    let uncached = cfg.iotlb_entries == 0;
    let mem = memory(pattern);
    let mirror = memory(pattern);
    let emu = unit(&mem, cfg);
    let root = PhysAddr::new(u64::from(head[1] & 0x3f) << 12);
    let mut regs = RemappingUnit::new(&emu).unwrap();
    regs.set_root_table(root, TranslationTableMode::Scalable).unwrap();
    let size = QueueSize::from_order(0).unwrap();
    regs.enable_queued_invalidation(Iqa::new(PhysAddr::new(QUEUE), size, DescriptorWidth::Bits256))
        .unwrap();
    regs.enable_translation().unwrap();
    let limits = ScalableLimits::new(cfg.cap, cfg.ecap, cfg.host_address_width.bits());
    let mut e = &emu;
    for op in ops.chunks_exact(16).take(MAX_OPS) {
        let (kind, flags) = (op[0], op[1]);
        let sid = SourceId::from_raw(u16::from_le_bytes([op[2], op[3]]));
        let pasid = Pasid::new(u32::from_le_bytes([op[4], op[5], op[6], 0]) & 0xf_ffff);
        let iova = Iova::new(u64::from_le_bytes(op[8..16].try_into().unwrap_or_default()));
        match kind % 4 {
            0 | 1 => {
                let access = if flags & 4 == 0 { Access::Read } else { Access::Write };
                let pasid = pasid.filter(|_| flags & 1 != 0);
                let supervisor = flags & 2 != 0;
                let got = emu.translate_pasid(sid, pasid, supervisor, iova, access);
                if let Ok(phys) = got {
                    assert_eq!(phys.as_u64() & 0xfff, iova.as_u64() & 0xfff, "offset kept");
                }
                if uncached {
                    let req = Request { access, pasid, supervisor };
                    let walked = walk_scalable(&mirror, root, sid, iova, &req, &limits)
                        .map(|(_, _, t)| t.translation.phys)
                        .map_err(|f| f.reason);
                    assert_eq!(got.map_err(|f| f.reason), walked, "a unit without caches walks");
                }
            }
            2 => {
                if flags & 1 == 0 {
                    e.write_reg(Ccmd::invalidate(ContextScope::Global));
                } else {
                    let (iva, iotlb) = IotlbInv::invalidate(IotlbScope::Global, Drain::empty());
                    e.write64(vtd_regs::regs::Iva::offset(cfg.ecap), iva.0);
                    e.write64(IotlbInv::offset(cfg.ecap), iotlb.0);
                }
            }
            _ => {
                // Clear any queue error, then hand over up to `flags` slots.
                e.write_reg(vtd_regs::regs::Fsts(0).with_iqe(true).with_ite(true).with_ice(true));
                e.write_reg(Iqt::from_index(usize::from(flags) % 128, DescriptorWidth::Bits256));
                // Wait descriptors may have written status into memory.
                let mut copy = vec![0u8; MEM];
                if mem.read_bytes(PhysAddr::new(0), &mut copy).is_ok() {
                    mirror.write_bytes(PhysAddr::new(0), &copy).unwrap_or_default();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in seed reaches first-stage translations through PASID
    /// entries, so the fuzzer starts from the success path.
    #[test]
    fn the_seed_translates() {
        let data = include_bytes!("../corpus/emu_scalable/first_stage");
        let mem = memory(&data[3..131]);
        let emu = unit(&mem, config(data[0]));
        let mut regs = RemappingUnit::new(&emu).unwrap();
        regs.set_root_table(PhysAddr::new(0x3000), TranslationTableMode::Scalable).unwrap();
        regs.enable_translation().unwrap();
        let sid = SourceId::from_raw(0x0200);
        let iova = Iova::new(0x0281_40a0_5123);
        for pasid in [None, Pasid::new(257)] {
            let got = emu.translate_pasid(sid, pasid, false, iova, Access::Write);
            assert_eq!(got, Ok(PhysAddr::new(0x2123)));
        }
        emu_scalable(data);
    }
}
