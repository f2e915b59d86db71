//! The NIC receive loop: post buffers, ring the doorbell, check what the
//! device wrote, hand the buffer to the stack (a fixed amount of work),
//! unmap. Map and unmap are timed one by one; the loop as a whole, minus
//! the doorbells, gives the throughput.

use vtd_regs::{Mmio, PhysAddr, PhysMem};

use crate::Error;
use crate::bringup::DriverMapper;
use crate::layout::{BUFFERS, FRAME_LEN, MAX_SAMPLES, POOL_PAGES, SAMPLE_BYTES, SAMPLES};
use crate::params::{Params, Report};
use crate::ring::{self, DONE, Doorbell};
use crate::tsc::{rdtsc, spin_cycles};

/// Receives `params.buffers` buffers. `kick` rings the device's doorbell
/// ([`Doorbell::Receive`] for slots `0..n`) and returns once it completed
/// them. Without a mapper (no IOMMU) the device is given physical
/// addresses.
///
/// The measurements accumulate in `r`, which on failure holds what was
/// measured up to it. Called through [`crate::run`], which adds the
/// mapper's and the invalidator's counters.
pub fn run<R: Mmio, M: PhysMem + Copy>(
    mut mapper: Option<&mut DriverMapper<'_, R, M>>,
    mem: M,
    params: &Params,
    r: &mut Report,
    mut kick: impl FnMut(Doorbell),
) -> Result<(), Error> {
    let batch = params.batch.clamp(1, ring::SLOTS);
    let mut frame = [0u8; FRAME_LEN as usize];
    let write = crate::bringup::device_write(mapper.as_deref());
    let start = rdtsc();
    let mut seq = 0;
    while seq < params.buffers {
        let n = batch.min(params.buffers - seq);
        for slot in 0..n {
            let s = seq + slot;
            let page = PhysAddr::new(BUFFERS + (s % POOL_PAGES) * 4096);
            let addr = match mapper.as_deref_mut() {
                Some(m) => {
                    let t0 = rdtsc();
                    let iova = m.map(page, FRAME_LEN, write);
                    let dt = rdtsc().wrapping_sub(t0);
                    r.map_cycles += dt;
                    sample(&mem, s, 0, dt).map_err(Error::from)?;
                    iova.map_err(Error::Map)?.as_u64()
                }
                None => page.as_u64(),
            };
            ring::post(&mem, slot, addr, s).map_err(Error::from)?;
        }
        let t0 = rdtsc();
        kick(Doorbell::Receive(n));
        r.kick_cycles += rdtsc().wrapping_sub(t0);
        r.kicks += 1;
        for slot in 0..n {
            let s = seq + slot;
            let received = rdtsc();
            let status = mem.read_u64(ring::word(slot, 2)).map_err(Error::from)?;
            if status != DONE {
                return Err(Error::Device { seq: s, status });
            }
            let addr = mem.read_u64(ring::word(slot, 0)).map_err(Error::from)?;
            let page = PhysAddr::new(BUFFERS + (s % POOL_PAGES) * 4096);
            mem.read_bytes(page, &mut frame).map_err(Error::from)?;
            if frame.iter().enumerate().any(|(i, &b)| b != ring::pattern(s, i as u64)) {
                return Err(Error::Data { seq: s });
            }
            spin_cycles(params.work_cycles);
            if let Some(m) = mapper.as_deref_mut() {
                let t0 = rdtsc();
                let done = m.unmap(vtd_regs::Iova::new(addr), FRAME_LEN);
                let dt = rdtsc().wrapping_sub(t0);
                r.unmap_cycles += dt;
                sample(&mem, s, 1, dt).map_err(Error::from)?;
                done.map_err(Error::Map)?;
            }
            sample(&mem, s, 2, rdtsc().wrapping_sub(received)).map_err(Error::from)?;
            r.buffers += 1;
        }
        seq += n;
    }
    r.loop_cycles = rdtsc().wrapping_sub(start).wrapping_sub(r.kick_cycles);
    Ok(())
}

/// Keeps sample `which` of buffer (or request) `seq`
/// ([`crate::layout::SAMPLES`]), if it has room.
pub(crate) fn sample<M: PhysMem>(
    mem: &M,
    seq: u64,
    which: u64,
    cycles: u64,
) -> Result<(), vtd_regs::MemError> {
    if seq >= MAX_SAMPLES {
        return Ok(());
    }
    mem.write_u64(PhysAddr::new(SAMPLES + seq * SAMPLE_BYTES + which * 8), cycles)
}
