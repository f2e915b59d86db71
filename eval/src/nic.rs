//! The NIC model: a directly assigned receive device. On its doorbell it
//! reads the posted slots of the ring in the driver's memory, translates
//! each buffer's DMA address through the IOMMU (the software VT-d:
//! `vtd_emu::Emulator::translate` for source [`layout::NIC`]), writes a
//! frame there and completes the slot; a blocked DMA completes it as
//! faulted. It never trusts the ring: every access is a checked
//! [`PhysMem`] access.

use viommu_eval_driver::{layout, ring};
use vtd_regs::{Iova, PhysAddr, PhysMem};

/// What the device did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Frames written.
    pub frames: u64,
    /// DMAs the IOMMU blocked.
    pub faults: u64,
    /// Translation requests sent to the IOMMU.
    pub translations: u64,
}

/// Fills ring slots `0..slots` of `mem`. `translate` maps a DMA address
/// to a physical one (the identity without an IOMMU), `None` if blocked.
pub fn receive<M: PhysMem>(
    mem: &M,
    slots: u64,
    counters: &mut NicCounters,
    mut translate: impl FnMut(Iova) -> Option<PhysAddr>,
) {
    let mut frame = [0u8; layout::FRAME_LEN as usize];
    for slot in 0..slots.min(ring::SLOTS) {
        let (Ok(addr), Ok(seq)) =
            (mem.read_u64(ring::word(slot, 0)), mem.read_u64(ring::word(slot, 1)))
        else {
            continue;
        };
        for (i, b) in frame.iter_mut().enumerate() {
            *b = ring::pattern(seq, i as u64);
        }
        let status = if dma_write(mem, addr, &frame, counters, &mut translate) {
            counters.frames += 1;
            ring::DONE
        } else {
            counters.faults += 1;
            ring::FAULTED
        };
        // The slot may be gone (bad ring address): nothing to complete.
        let _ = mem.write_u64(ring::word(slot, 2), status);
    }
}

/// Writes `data` at DMA address `addr`, page by page, each page translated.
fn dma_write<M: PhysMem>(
    mem: &M,
    addr: u64,
    data: &[u8],
    counters: &mut NicCounters,
    translate: &mut impl FnMut(Iova) -> Option<PhysAddr>,
) -> bool {
    let mut done = 0usize;
    while done < data.len() {
        let Some(at) = addr.checked_add(done as u64) else { return false };
        let in_page = (4096 - (at & 0xfff)) as usize;
        let n = in_page.min(data.len() - done);
        counters.translations += 1;
        let Some(phys) = translate(Iova::new(at)) else { return false };
        if mem.write_bytes(phys, &data[done..done + n]).is_err() {
            return false;
        }
        done += n;
    }
    true
}
