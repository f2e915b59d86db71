//! The vtd-emu register file under arbitrary register access sequences,
//! with arbitrary memory contents behind it: whatever a guest writes to the
//! registers or leaves in memory, the model must not panic, loop or reach
//! outside its memory, and its state must stay within what the capabilities
//! allow.
//!
//! Input: byte 0 picks the configuration, byte 1 the length `n` of a memory
//! pattern, the next `n` bytes are the pattern tiled over the 64 KiB of
//! memory, and the rest are 12-byte operations `[kind, flags, offset: u16
//! LE, value: u64 LE]` (at most 512).
//!
//! The unit runs with a [`Recorder`] as its hook (what a vIOMMU learns of
//! it): what the recorder was told must agree with the registers (the last
//! translation and queued-invalidation changes it heard of are GSTS's), and
//! it never hears of more invalidations than the unit counted.

use vtd_emu::hook::{Change, Hook, Invalidation, Outcome, UnitView};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{Access, EmuConfig, Emulator};
use vtd_regs::regs::{GlobalBits, Gsts, Iqa, Iqh};
use vtd_regs::{Iova, Mmio, PhysAddr, PhysMem, SourceId};

/// The unit the harnesses run: small caches, a [`Recorder`] for a hook.
pub(crate) type Unit<'m> = Emulator<&'m HeapMemory, 64, 16, Recorder>;

/// A hook that keeps what the unit told it.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// Every invalidation, in order.
    pub(crate) invalidations: Vec<Invalidation>,
    /// Translation and queued invalidation as last announced.
    translation: bool,
    queued: bool,
}

impl<M: ?Sized> Hook<M> for Recorder {
    fn invalidate(&mut self, _: &UnitView<'_, M>, inv: Invalidation) -> Outcome {
        self.invalidations.push(inv);
        Outcome::Complete
    }

    fn changed(&mut self, _: &UnitView<'_, M>, change: Change) {
        match change {
            Change::Reset => (self.translation, self.queued) = (false, false),
            Change::Translation(on) => self.translation = on,
            Change::QueuedInvalidation(on) => self.queued = on,
            _ => {}
        }
    }
}

/// A unit configured as `cfg` over `mem`, recording into a fresh hook.
pub(crate) fn unit(mem: &HeapMemory, cfg: EmuConfig) -> Unit<'_> {
    Emulator::with_hook(mem, cfg, Recorder::default()).unwrap()
}

/// Bytes of simulated memory.
pub(crate) const MEM: usize = 64 << 10;
/// Most operations run per input.
const MAX_OPS: usize = 512;

/// The configuration byte 0 selects: QEMU's or the modern preset, with
/// caching mode, device-TLBs, polling and tiny caches as flags.
pub(crate) fn config(b: u8) -> EmuConfig {
    let mut cfg = if b & 1 == 0 { EmuConfig::qemu() } else { EmuConfig::modern() };
    cfg = cfg.with_caching_mode(b & 2 != 0);
    cfg.ecap = cfg.ecap.with_device_tlb(b & 4 != 0);
    cfg.process_on_tail_write = b & 8 == 0;
    if b & 16 != 0 {
        cfg = cfg.with_iotlb(2, 1).with_context_cache(1, 1);
    }
    cfg
}

/// Memory of `MEM` bytes filled with `pattern` repeated.
pub(crate) fn memory(pattern: &[u8]) -> HeapMemory {
    let mem = HeapMemory::new(MEM);
    if !pattern.is_empty() {
        for chunk in (0..MEM).step_by(pattern.len()) {
            let n = pattern.len().min(MEM - chunk);
            mem.write_bytes(PhysAddr::new(chunk as u64), &pattern[..n]).unwrap();
        }
    }
    mem
}

/// Runs `data` as a register access sequence.
pub fn emu_registers(data: &[u8]) {
    let (&cfg_byte, rest) = data.split_first().unwrap_or((&0, &[]));
    let (&len, rest) = rest.split_first().unwrap_or((&0, &[]));
    let (pattern, ops) = rest.split_at(usize::from(len).min(rest.len()));
    let cfg = config(cfg_byte);
    let mem = memory(pattern);
    let emu = unit(&mem, cfg);
    let mut e = &emu;
    let mut translations = 0;
    for op in ops.chunks_exact(12).take(MAX_OPS) {
        let (kind, flags) = (op[0], op[1]);
        let raw_off = usize::from(u16::from_le_bytes([op[2], op[3]]));
        let value = u64::from_le_bytes(op[4..12].try_into().unwrap());
        // Mostly aligned register offsets; with flag 0x80 anything.
        let off = if flags & 0x80 != 0 { raw_off } else { raw_off & 0xffc };
        match kind % 7 {
            0 => e.write32(off, value as u32),
            1 => e.write64(off & !7, value),
            2 => {
                let _ = e.read32(off);
            }
            3 => {
                let _ = e.read64(off & !7);
            }
            4 => {
                translations += 1;
                let access = if flags & 1 == 0 { Access::Read } else { Access::Write };
                let te = e.read_reg::<Gsts>().contains(GlobalBits::TE);
                let r = emu.translate(SourceId::from_raw(raw_off as u16), Iova::new(value), access);
                if !te {
                    assert_eq!(r, Ok(PhysAddr::new(value)), "untranslated with TE clear");
                }
            }
            5 => {
                let at = PhysAddr::new((raw_off as u64 * 8) % MEM as u64);
                mem.write_u64(at, value).unwrap();
            }
            _ => {
                let _ = emu.process();
            }
        }
        check(&emu, &cfg);
    }
    assert_eq!(emu.counters().translations, translations);
}

/// Invariants of the model's state after any operation.
pub(crate) fn check(emu: &Unit<'_>, cfg: &EmuConfig) {
    let e = &emu;
    let gsts: Gsts = e.read_reg();
    // The hook's view of the unit is the registers' (GSTS read without a
    // side effect first, so the hook is not locked meanwhile).
    let (translation, queued, heard) =
        emu.with_hook_mut(|r| (r.translation, r.queued, r.invalidations.len() as u64));
    assert_eq!(translation, gsts.contains(GlobalBits::TE), "hook vs GSTS.TES");
    assert_eq!(queued, gsts.contains(GlobalBits::QIE), "hook vs GSTS.QIES");
    let c = emu.counters();
    let requests = (1..=4).map(|ty| c.descriptors_of(ty)).sum::<u64>() + c.register_invalidations;
    assert!(heard <= requests, "the hook heard of {heard} invalidations, {requests} requested");
    let mut allowed = GlobalBits::TE | GlobalBits::SRTP;
    if cfg.ecap.qi() {
        allowed |= GlobalBits::QIE;
    }
    if cfg.ecap.ir() {
        allowed |= GlobalBits::IRE | GlobalBits::SIRTP | GlobalBits::CFI;
    }
    assert!(allowed.contains(gsts.bits()) && gsts.0 & !GlobalBits::all().bits() == 0, "{gsts:?}");
    let iqa: Iqa = e.read_reg();
    let iqh: Iqh = e.read_reg();
    assert!(iqh.index(iqa.width()) < iqa.entries(), "{iqh:?} beyond {iqa:?}");
    let fsts = emu.fault_status();
    assert!(u16::from(fsts.fri()) < cfg.cap.nfr().count());
    assert!(emu.iotlb_entries() <= cfg.iotlb_entries.min(64));
    assert!(emu.context_cache_entries() <= cfg.context_cache_entries.min(16));
    let c = emu.counters();
    assert!(c.iotlb.hits + c.iotlb.misses <= c.translations);
}
