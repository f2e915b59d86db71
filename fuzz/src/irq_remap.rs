//! vtd-emu's interrupt remapping under arbitrary interrupt remapping tables
//! and interrupt requests: whatever the table holds and whatever devices
//! write to 0xFEEx_xxxx, the model must not panic or read outside its
//! memory, must record no more faults than it saw requests, and, right
//! after a global interrupt entry cache invalidation, must answer exactly
//! what a cache-free reading of the table in memory gives (the oracle
//! below, written from §5.1.4 with the `vtd_regs::irq` decoders).
//!
//! Input: byte 0 is the configuration (bit 0 x2APIC, bit 1 CFI, bit 2
//! caching mode, bit 3 interrupt remapping off, bit 4 ESIRTPS), byte 1
//! IRTA's S (low 4 bits) and the table's frame (high 4 bits, frames 0-15
//! of the 64 KiB; frame 15 holds the queue), byte 2 the length `n` of a
//! memory pattern, the next `n` bytes the pattern tiled over memory, and
//! the rest 16-byte operations `[kind, a, b, c, x: u32 LE, y: u64 LE]`
//! (at most 512).

use vtd_emu::{Delivered, EmuConfig, InterruptFault};
use vtd_regs::desc::{Descriptor, IecInv, IecScope};
use vtd_regs::irq::{InterruptMode, InterruptRequest, IoApicRte, Irte, MsiMessage, RawIrte};
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::{Iqa, Irta};
use vtd_regs::{FaultReason, PhysAddr, PhysMem, RemappingUnit, SourceId};

use crate::emu_registers::{Unit, memory, unit};

/// Most operations run per input.
const MAX_OPS: usize = 512;
/// The queue's frame.
const QUEUE: PhysAddr = PhysAddr::new(15 << 12);

/// The configuration byte 0 selects.
fn config(b: u8) -> EmuConfig {
    let mut cfg = EmuConfig::qemu().with_interrupt_remapping(true, true);
    cfg = cfg.with_caching_mode(b & 4 != 0);
    cfg.cap = cfg.cap.with_esirtps(b & 16 != 0);
    cfg
}

/// What the unit must answer for `msg` from `source`, read from memory
/// without any cache.
fn oracle(
    mem: &impl PhysMem,
    irta: Irta,
    cfi: bool,
    source: SourceId,
    msg: MsiMessage,
) -> Result<Delivered, (FaultReason, Option<u16>)> {
    let req = msg.decode().map_err(|_| (FaultReason::IrRequestReserved, None))?;
    let index = match req {
        InterruptRequest::Compatibility(m) if cfi && !irta.eime() => return Ok(Delivered::Passed(m)),
        InterruptRequest::Compatibility(_) => return Err((FaultReason::IrCompatBlocked, None)),
        InterruptRequest::Remappable { .. } => req.index().unwrap_or(0),
    };
    let at = Some(index as u16);
    if index >= irta.entries() {
        return Err((FaultReason::IrIndexBeyondTable, at));
    }
    // The host address width is 39 bits and memory 64 KiB.
    let addr = irta.table().as_u64() + u64::from(index) * 16;
    if addr + 15 >= 1 << 39 {
        return Err((FaultReason::IrIndexBeyondTable, at));
    }
    let (Ok(lo), Ok(hi)) = (mem.read_u64(PhysAddr::new(addr)), mem.read_u64(PhysAddr::new(addr + 8)))
    else {
        return Err((FaultReason::IrTableAccess, at));
    };
    match RawIrte::new(lo, hi).decode(InterruptMode::from_eime(irta.eime())) {
        Ok(Irte::NotPresent { .. }) => Err((FaultReason::IrEntryNotPresent, at)),
        Ok(Irte::Posted(_)) | Err(_) => Err((FaultReason::IrEntryReserved, at)),
        Ok(Irte::Remapped(e)) if !e.source.permits(source) => Err((FaultReason::IrSourceIdInvalid, at)),
        Ok(Irte::Remapped(e)) => Ok(Delivered::Remapped { index: index as u16, interrupt: e.interrupt }),
    }
}

/// Queues one interrupt entry cache invalidation and processes it.
fn invalidate(emu: &Unit<'_>, mem: &impl PhysMem, tail: &mut usize, scope: IecScope) {
    let mut bytes = [0u8; 16];
    Descriptor::Iec(IecInv { scope }).write(DescriptorWidth::Bits128, &mut bytes).unwrap();
    mem.write_bytes(PhysAddr::new(QUEUE.as_u64() + (*tail as u64) * 16), &bytes).unwrap();
    *tail = (*tail + 1) % 256;
    RemappingUnit::new(emu).unwrap().write_queue_tail(*tail).unwrap();
}

/// Runs `data` as a table and a sequence of interrupt requests.
pub fn irq_remap(data: &[u8]) {
    let mut input = data.iter().copied();
    let (cfg_byte, table_byte, len) =
        (input.next().unwrap_or(0), input.next().unwrap_or(0), input.next().unwrap_or(0));
    let rest = data.get(3..).unwrap_or(&[]);
    let (pattern, ops) = rest.split_at(usize::from(len).min(rest.len()));
    let cfg = config(cfg_byte);
    let mem = memory(pattern);
    for i in 0..256 {
        mem.write_u64(PhysAddr::new(QUEUE.as_u64() + i * 8), 0).unwrap();
    }
    let emu = unit(&mem, cfg);
    let x2apic = cfg_byte & 1 != 0;
    let cfi = cfg_byte & 2 != 0;
    let irta = Irta::new(PhysAddr::new(u64::from(table_byte >> 4) << 12), table_byte & 15, x2apic);
    {
        let mut u = RemappingUnit::new(&emu).unwrap();
        let iqa = Iqa::new(QUEUE, QueueSize::from_order(0).unwrap(), DescriptorWidth::Bits128);
        u.enable_queued_invalidation(iqa).unwrap();
        u.set_interrupt_remap_table(irta).unwrap();
        u.set_compatibility_format(cfi).unwrap();
        u.set_interrupt_remapping(cfg_byte & 8 == 0).unwrap();
    }
    let mut tail = 0;
    let mut requests = 0u64;
    for op in ops.chunks_exact(16).take(MAX_OPS) {
        let source = SourceId::from_raw(u16::from_le_bytes([op[1], op[2]]));
        let x = u32::from_le_bytes(op[4..8].try_into().unwrap());
        let y = u64::from_le_bytes(op[8..16].try_into().unwrap());
        match op[0] % 6 {
            // An MSI into the interrupt range (the low 20 address bits and
            // the data from the input; bit 0 of `c` puts bits above 32).
            0 | 1 => {
                let high = if op[3] & 1 != 0 { y & !0xffff_ffff } else { 0 };
                let msg = MsiMessage { address: high | 0xfee0_0000 | u64::from(x & 0xf_ffff), data: y as u32 };
                let checked = op[0] % 6 == 1;
                if checked {
                    invalidate(&emu, &mem, &mut tail, IecScope::Global);
                }
                requests += 1;
                let got = emu.remap_interrupt(source, msg);
                if checked && cfg_byte & 8 == 0 {
                    let want = oracle(&mem, irta, cfi, source, msg);
                    let got = got.map_err(|f: InterruptFault| (f.reason, f.index));
                    assert_eq!(got, want, "{msg:x?} from {source:?}");
                } else if cfg_byte & 8 != 0 {
                    assert_eq!(got, Ok(Delivered::Passed(msg)), "remapping off");
                }
            }
            // An IOAPIC redirection entry.
            2 => {
                requests += 1;
                let _ = emu.remap_ioapic(source, IoApicRte(y));
            }
            // The table changes under the unit.
            3 => {
                let at = irta.table().as_u64() + (u64::from(x) % 512) * 8;
                let _ = mem.write_u64(PhysAddr::new(at), y);
            }
            // An index-selective invalidation (IIDX and IM from the input).
            4 => {
                let mask = op[3] % 17;
                let index = (x as u16) & !((1u32 << mask) - 1) as u16;
                invalidate(&emu, &mem, &mut tail, IecScope::Entries { index, mask });
            }
            // Software drains the fault records.
            _ => RemappingUnit::new(&emu).unwrap().drain_faults().for_each(drop),
        }
        let c = emu.counters();
        assert_eq!(c.interrupt_requests, requests);
        assert!(c.interrupt_faults <= requests);
        assert!(emu.interrupt_entry_cache_entries() <= vtd_emu::IEC_ENTRIES);
        assert!(!emu.fault_status().queue_error(), "a well-formed IEC descriptor was refused");
    }
}
