//! The vtd-emu queued invalidation engine over arbitrary queue contents:
//! it must never panic, loop or fetch outside its memory; it must stop at
//! the first descriptor the decoder rejects; and every descriptor it went
//! past must be one the decoder accepts.
//!
//! Input: byte 0 picks the configuration (as in `emu_registers`) and bit 5
//! the descriptor width, byte 1 the queue size order (0 or 1), bytes 2-3
//! (LE) the tail index, and the rest is the queue's contents from slot 0.

use vtd_emu::Emulator;
use vtd_regs::desc::Descriptor;
use vtd_regs::regs::iq::{DescriptorWidth, QueueSize};
use vtd_regs::regs::{Fsts, Gcmd, GlobalBits, Iqa, Iqh, Iqt};
use vtd_regs::{Mmio, PhysAddr, PhysMem};

use crate::emu_registers::{check, config, memory};

/// Where the queue lives.
const QUEUE: u64 = 0x4000;
/// How many times a halted queue is cleared and resumed.
const RESUMES: usize = 4;

/// Runs `data` as the contents of an invalidation queue.
pub fn emu_queue(data: &[u8]) {
    let Some((head, contents)) = data.split_at_checked(4) else { return };
    let mut cfg = config(head[0]);
    cfg.process_on_tail_write = true;
    let width = if head[0] & 32 != 0 { DescriptorWidth::Bits256 } else { DescriptorWidth::Bits128 };
    let size = QueueSize::from_order(head[1] & 1).unwrap();
    let iqa = Iqa::new(PhysAddr::new(QUEUE), size, width);
    let tail = usize::from(u16::from_le_bytes([head[2], head[3]]));
    let mem = memory(&[]);
    let n = contents.len().min(size.bytes());
    mem.write_bytes(PhysAddr::new(QUEUE), &contents[..n]).unwrap();
    let emu = Emulator::<_, 64, 16>::with_caches(&mem, cfg).unwrap();
    let mut e = &emu;
    e.write_reg(Iqt(0));
    e.write_reg(iqa);
    e.write_reg(Gcmd::from_bits(GlobalBits::QIE));
    e.write_reg(Iqt::from_index(tail, width));
    for _ in 0..RESUMES {
        check(&emu, &cfg);
        let fsts: Fsts = e.read_reg();
        if !fsts.iqe() && !fsts.ite() {
            break;
        }
        e.write_reg(Fsts(Fsts::W1C));
    }
    let done = e.read_reg::<Iqh>().index(width);
    // Every slot the engine went past decodes (the queue started at 0 and
    // the engine never wraps past the tail), unless a wait descriptor's
    // status write landed in the queue and changed what it holds.
    let slot = width.bytes();
    let seen = done * slot;
    let mut before = [0u8; 8192];
    before[..n].copy_from_slice(&contents[..n]);
    let mut now = [0u8; 8192];
    mem.read_bytes(PhysAddr::new(QUEUE), &mut now[..seen]).unwrap();
    if now[..seen] == before[..seen] {
        for (i, b) in now[..seen].chunks_exact(slot).enumerate() {
            assert!(Descriptor::read(width, b).is_ok(), "went past bad slot {i}");
        }
    }
    let c = emu.counters();
    assert!(c.descriptors_total() >= done as u64);
    let fsts: Fsts = e.read_reg();
    let tail_index = e.read_reg::<Iqt>().index(width);
    if !fsts.iqe() && !fsts.ite() {
        assert_eq!(done, tail_index, "idle queue with head != tail");
    }
}
