//! The request-response loop, the shape of a web server (and, with one
//! outstanding request and a small response, of netperf UDP_RR's server):
//! each request arrives in a receive buffer the device writes; the driver
//! unmaps it, charges the request's work and hands the response to the
//! device as frames of at most [`FRAME_LEN`] bytes, each mapped for the
//! device to read ([`Perm::READ`]); when the device has sent them it
//! unmaps them. The client (the device model) keeps
//! [`Params::concurrency`] requests outstanding: a new request for every
//! response it received.
//!
//! What a response is made of ([`frame`]):
//! - without files (`Params::files` 0, a datagram): `response_len` bytes
//!   the CPU writes into transmit buffers from a pool of pages, handed
//!   out last-freed first as a kernel's allocator does;
//! - with `n` files (a static site): a [`HEADER_LEN`]-byte header the CPU
//!   writes into a pool buffer, then the bytes of file `file_of(request)`
//!   sent from its page-cache pages (`sendfile`: the same physical pages
//!   for every request of that file, so a reuse policy can keep their
//!   mappings). The site's file sizes ([`response_len`] of the file's
//!   index) are spread uniformly over `[response_min, response_max]`.
//!
//! Samples ([`crate::layout::SAMPLES`], three words per request): the
//! cycles from picking the request up to its response posted (check,
//! unmap, work, response, maps, the receive buffer re-posted); the frames
//! of its response; its share of the transmit completions (unmaps) done in
//! the round that picked it up, split evenly between the round's requests
//! (the last round's completions go to the requests of the round before).
//! With one outstanding request the sum of the first and third words is
//! the server's part of a round trip: from the request's arrival to its
//! response handed to the device, the previous response's completion
//! included.

use vtd_regs::{Iova, Mmio, PhysAddr, PhysMem};
use vtd_tables::Perm;

use crate::Error;
use crate::bringup::DriverMapper;
use crate::layout::{BUFFERS, FILE_SLOT, FILES, FRAME_LEN, MAX_FILES, MAX_SAMPLES, SAMPLE_BYTES};
use crate::layout::{SAMPLES, TX_BUFFERS, TX_POOL_PAGES};
use crate::nic_loop::sample;
use crate::params::{Params, Report};
use crate::ring::{self, DONE, Doorbell, POSTED, SLOTS, TX_SLOTS};
use crate::tsc::{rdtsc, spin_cycles};

/// Bytes of a request (an HTTP GET with a few headers).
pub const REQUEST_LEN: u64 = 128;
/// Bytes of a response's header when it sends a file (HTTP status line
/// and headers).
pub const HEADER_LEN: u64 = 256;

/// `min` plus a hash of `id` spread uniformly over `[min, max]` (`min` if
/// the range is empty): the size of the response to request `id` (no
/// files), or of file `id`.
#[must_use]
pub const fn response_len(id: u64, min: u64, max: u64) -> u64 {
    if max <= min {
        return min;
    }
    min + hash(id) % (max - min + 1)
}

const fn hash(x: u64) -> u64 {
    x.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11
}

/// Frames of at most [`FRAME_LEN`] bytes `len` bytes take.
#[must_use]
pub const fn frames(len: u64) -> u64 {
    if len == 0 { 1 } else { len.div_ceil(FRAME_LEN) }
}

/// The file request `request` asks for, with `params.files` files.
#[must_use]
pub const fn file_of(params: &Params, request: u64) -> u64 {
    if params.files == 0 { 0 } else { hash(request.wrapping_mul(31)) % params.files }
}

/// Where a frame's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Written by the CPU into a transmit buffer from the pool.
    Pool,
    /// Sent from a file's page-cache pages, at this physical address.
    File(PhysAddr),
}

/// Frame `k` of a response: its bytes are `pattern(tag, offset + i)` for
/// `i` below `len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Bytes.
    pub len: u64,
    /// Whether it ends the response.
    pub last: bool,
    /// The tag of its bytes' pattern ([`ring::pattern`]).
    pub tag: u64,
    /// The offset of its first byte in that pattern.
    pub offset: u64,
    /// Where its bytes come from.
    pub source: Source,
}

/// Frames of the response to `request`.
#[must_use]
pub const fn response_frames(params: &Params, request: u64) -> u64 {
    match params.files {
        0 => frames(response_len(request, params.response_min, params.response_max)),
        _ => {
            let file = file_of(params, request);
            1 + frames(response_len(file, params.response_min, params.response_max))
        }
    }
}

/// Bytes of the response to `request`, header included.
#[must_use]
pub const fn response_bytes(params: &Params, request: u64) -> u64 {
    match params.files {
        0 => response_len(request, params.response_min, params.response_max),
        _ => {
            let file = file_of(params, request);
            HEADER_LEN + response_len(file, params.response_min, params.response_max)
        }
    }
}

/// Frame `k` (below [`response_frames`]) of the response to `request`.
#[must_use]
pub const fn frame(params: &Params, request: u64, k: u64) -> FrameSpec {
    let last = k + 1 >= response_frames(params, request);
    let tag = ring::response_tag(request, k);
    if params.files == 0 {
        let len = response_len(request, params.response_min, params.response_max);
        let len = chunk(len, k * FRAME_LEN);
        return FrameSpec { len, last, tag, offset: 0, source: Source::Pool };
    }
    if k == 0 {
        return FrameSpec { len: HEADER_LEN, last, tag, offset: 0, source: Source::Pool };
    }
    let file = file_of(params, request);
    let file_len = response_len(file, params.response_min, params.response_max);
    let offset = (k - 1) * FRAME_LEN;
    let len = chunk(file_len, offset);
    let at = PhysAddr::new(FILES + file * FILE_SLOT + offset);
    FrameSpec { len, last, tag: ring::file_tag(file), offset, source: Source::File(at) }
}

/// Bytes of the frame at `offset` of `total` bytes.
const fn chunk(total: u64, offset: u64) -> u64 {
    let left = total.saturating_sub(offset);
    if left > FRAME_LEN { FRAME_LEN } else { left }
}

/// Whether `params` fit the rings, the buffer pools and the site's file
/// area: every outstanding request has a receive slot, and a round's
/// responses fit the transmit ring and its pages.
#[must_use]
pub const fn fits(params: &Params) -> bool {
    let per_response = match params.files {
        0 => frames(params.response_max),
        _ => 1 + frames(params.response_max),
    };
    params.concurrency >= 1
        && params.concurrency <= SLOTS
        && per_response <= ring::MAX_FRAMES
        && params.concurrency * per_response <= TX_SLOTS
        && TX_SLOTS <= TX_POOL_PAGES
        && params.buffers <= MAX_SAMPLES
        && params.files <= MAX_FILES
        && (params.files == 0 || params.response_max <= FILE_SLOT)
}

/// Writes the site's files into their page-cache pages.
fn write_files<M: PhysMem>(mem: &M, params: &Params) -> Result<(), Error> {
    let mut chunk = [0u8; FRAME_LEN as usize];
    for file in 0..params.files {
        let len = response_len(file, params.response_min, params.response_max);
        let mut offset = 0;
        while offset < len {
            let n = FRAME_LEN.min(len - offset);
            let data = &mut chunk[..n as usize];
            for (i, b) in data.iter_mut().enumerate() {
                *b = ring::pattern(ring::file_tag(file), offset + i as u64);
            }
            mem.write_bytes(PhysAddr::new(FILES + file * FILE_SLOT + offset), data)?;
            offset += n;
        }
    }
    Ok(())
}

/// The receive buffer page of slot `slot`: the same page is re-posted in
/// its slot after each request (a page pool's recycling).
const fn rx_page(slot: u64) -> PhysAddr {
    PhysAddr::new(BUFFERS + slot * 4096)
}

/// A frame on the transmit ring: its DMA address, the pool page it came
/// from (none: a file's page), its mapped length.
#[derive(Clone, Copy)]
struct Posted {
    addr: u64,
    page: Option<u16>,
    len: u64,
}

/// Serves `params.buffers` requests (see the module docs). `ring` rings the
/// device's doorbell ([`Doorbell::Transmit`]) and returns once the device
/// sent the posted frames and the client sent its next requests. Without
/// a mapper (no IOMMU) the device is given physical addresses.
///
/// The measurements accumulate in `r`, which on failure holds what was
/// measured up to it. Called through [`crate::run`].
pub fn run<R: Mmio, M: PhysMem + Copy>(
    mut mapper: Option<&mut DriverMapper<'_, R, M>>,
    mem: M,
    params: &Params,
    r: &mut Report,
    mut ring: impl FnMut(Doorbell),
) -> Result<(), Error> {
    if !fits(params) {
        return Err(Error::Params);
    }
    let slots = params.concurrency;
    let mut free: heapless::Vec<u16, { TX_POOL_PAGES as usize }> =
        (0..TX_POOL_PAGES as u16).rev().collect();
    let mut tx: heapless::Vec<Posted, { TX_SLOTS as usize }> = heapless::Vec::new();
    let mut request = [0u8; REQUEST_LEN as usize];
    let mut frame_buf = [0u8; FRAME_LEN as usize];
    // The requests of the latest round that had any.
    let mut recent: heapless::Vec<u64, { SLOTS as usize }> = heapless::Vec::new();
    write_files(&mem, params)?;
    let write = crate::bringup::device_write(mapper.as_deref());
    let start = rdtsc();
    for slot in 0..slots {
        let addr = map(&mut mapper, r, rx_page(slot), FRAME_LEN, write)?;
        ring::post(&mem, slot, addr, 0)?;
    }
    let mut served = 0;
    loop {
        let t0 = rdtsc();
        ring(Doorbell::Transmit(tx.len() as u64));
        let round = rdtsc();
        r.kick_cycles += round.wrapping_sub(t0);
        r.kicks += 1;
        for (slot, f) in tx.iter().enumerate() {
            let status = mem.read_u64(ring::tx_word(slot as u64, 2))?;
            if status != DONE {
                let seq = mem.read_u64(ring::tx_word(slot as u64, 1))?;
                return Err(Error::Device { seq, status });
            }
            unmap(&mut mapper, r, f.addr, f.len)?;
            if let Some(page) = f.page {
                // At most TX_SLOTS frames are out, from TX_POOL_PAGES pages.
                let _ = free.push(page);
            }
        }
        let sent = tx.len();
        tx.clear();
        let reaped = rdtsc().wrapping_sub(round);
        let mut fresh: heapless::Vec<u64, { SLOTS as usize }> = heapless::Vec::new();
        for slot in 0..slots {
            let status = mem.read_u64(ring::word(slot, 2))?;
            if status == POSTED {
                continue;
            }
            if status != DONE {
                return Err(Error::Device { seq: slot, status });
            }
            let t = rdtsc();
            let id = mem.read_u64(ring::word(slot, 1))?;
            let addr = mem.read_u64(ring::word(slot, 0))?;
            mem.read_bytes(rx_page(slot), &mut request)?;
            let tag = ring::request_tag(id);
            if id >= params.buffers
                || request.iter().enumerate().any(|(i, &b)| b != ring::pattern(tag, i as u64))
            {
                return Err(Error::Data { seq: id });
            }
            unmap(&mut mapper, r, addr, FRAME_LEN)?;
            spin_cycles(params.work_cycles);
            spin_cycles(params.request_cycles);
            let n = response_frames(params, id);
            for k in 0..n {
                let spec = frame(params, id, k);
                let len = spec.len.max(1);
                let (at, page) = match spec.source {
                    Source::File(at) => (at, None),
                    Source::Pool => {
                        let Some(page) = free.pop() else { return Err(Error::Params) };
                        let at = PhysAddr::new(TX_BUFFERS + u64::from(page) * 4096);
                        let data = &mut frame_buf[..spec.len as usize];
                        for (i, b) in data.iter_mut().enumerate() {
                            *b = ring::pattern(spec.tag, spec.offset + i as u64);
                        }
                        mem.write_bytes(at, data)?;
                        (at, Some(page))
                    }
                };
                spin_cycles(params.work_cycles);
                let addr = map(&mut mapper, r, at, len, Perm::READ)?;
                let tag = ring::response_tag(id, k);
                ring::post_tx(&mem, tx.len() as u64, addr, tag, spec.len, spec.last)?;
                // `fits` bounds a round's frames by the ring's slots.
                let _ = tx.push(Posted { addr, page, len });
            }
            let addr = map(&mut mapper, r, rx_page(slot), FRAME_LEN, write)?;
            ring::post(&mem, slot, addr, 0)?;
            sample(&mem, id, 0, rdtsc().wrapping_sub(t))?;
            sample(&mem, id, 1, n)?;
            sample(&mem, id, 2, 0)?;
            // At most `slots` requests per round.
            let _ = fresh.push(id);
            served += 1;
            r.requests += 1;
        }
        r.buffers += (sent + fresh.len()) as u64;
        if !fresh.is_empty() {
            recent = fresh;
        }
        share(&mem, &recent, reaped)?;
        // Every request has a frame: nothing to send means nothing came.
        if tx.is_empty() {
            if served >= params.buffers {
                break;
            }
            // The client stalled with requests still to send.
            return Err(Error::Device { seq: served, status: POSTED });
        }
    }
    r.loop_cycles = rdtsc().wrapping_sub(start).wrapping_sub(r.kick_cycles);
    for slot in 0..slots {
        let addr = mem.read_u64(ring::word(slot, 0))?;
        unmap(&mut mapper, r, addr, FRAME_LEN)?;
    }
    Ok(())
}

/// Adds `cycles`, split evenly, to the third sample word of `requests`.
fn share<M: PhysMem>(mem: &M, requests: &[u64], cycles: u64) -> Result<(), Error> {
    let Some(each) = cycles.checked_div(requests.len() as u64) else { return Ok(()) };
    for &id in requests.iter().filter(|&&id| id < MAX_SAMPLES) {
        let at = PhysAddr::new(SAMPLES + id * SAMPLE_BYTES + 16);
        let before = mem.read_u64(at)?;
        mem.write_u64(at, before.wrapping_add(each))?;
    }
    Ok(())
}

/// Maps `[phys, phys + len)` for `perm` (timed into `r`), or gives the
/// physical address without an IOMMU.
fn map<R: Mmio, M: PhysMem + Copy>(
    mapper: &mut Option<&mut DriverMapper<'_, R, M>>,
    r: &mut Report,
    phys: PhysAddr,
    len: u64,
    perm: Perm,
) -> Result<u64, Error> {
    let Some(m) = mapper.as_deref_mut() else { return Ok(phys.as_u64()) };
    let t0 = rdtsc();
    let iova = m.map(phys, len, perm);
    r.map_cycles += rdtsc().wrapping_sub(t0);
    Ok(iova.map_err(Error::Map)?.as_u64())
}

/// Unmaps what [`map`] returned `addr` for (timed into `r`).
fn unmap<R: Mmio, M: PhysMem + Copy>(
    mapper: &mut Option<&mut DriverMapper<'_, R, M>>,
    r: &mut Report,
    addr: u64,
    len: u64,
) -> Result<(), Error> {
    let Some(m) = mapper.as_deref_mut() else { return Ok(()) };
    let t0 = rdtsc();
    let done = m.unmap(Iova::new(addr), len);
    r.unmap_cycles += rdtsc().wrapping_sub(t0);
    done.map_err(Error::Map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(files: u64) -> Params {
        Params {
            concurrency: 25,
            response_min: 10 << 10,
            response_max: 20 << 10,
            files,
            buffers: 1000,
            ..Params::from_words(&[0; crate::params::PARAM_WORDS]).expect("valid")
        }
    }

    #[test]
    fn response_sizes_spread_over_the_range() {
        let (min, max) = (10 << 10, 20 << 10);
        let lens: std::vec::Vec<u64> = (0..10_000).map(|r| response_len(r, min, max)).collect();
        assert!(lens.iter().all(|&l| (min..=max).contains(&l)));
        let mean = lens.iter().sum::<u64>() as f64 / lens.len() as f64;
        assert!((mean - 15_360.0).abs() < 200.0, "{mean}");
        // Both ends of the range are reached within a few percent.
        assert!(lens.iter().any(|&l| l < min + 300) && lens.iter().any(|&l| l > max - 300));
        assert_eq!(response_len(7, 128, 128), 128);
        assert_eq!(response_len(7, 200, 100), 200);
        assert_eq!((frames(10 << 10), frames(20 << 10), frames(1500), frames(1)), (7, 14, 1, 1));
    }

    #[test]
    fn a_response_is_its_frames_in_order() {
        for files in [0, 16] {
            let p = params(files);
            let mut seen = [0u64; 16];
            for request in 0..500 {
                let n = response_frames(&p, request);
                let specs: std::vec::Vec<FrameSpec> =
                    (0..n).map(|k| frame(&p, request, k)).collect();
                let bytes: u64 = specs.iter().map(|f| f.len).sum();
                assert_eq!(bytes, response_bytes(&p, request), "{files} {request}");
                assert!(specs.iter().all(|f| f.len > 0 && f.len <= FRAME_LEN));
                assert!(specs.iter().enumerate().all(|(k, f)| f.last == (k as u64 + 1 == n)));
                if files == 0 {
                    assert!(specs.iter().all(|f| f.source == Source::Pool));
                    continue;
                }
                // The header from the pool, then the file's pages in order.
                let file = file_of(&p, request);
                seen[file as usize] += 1;
                assert_eq!((specs[0].source, specs[0].len), (Source::Pool, HEADER_LEN));
                for (k, f) in specs.iter().enumerate().skip(1) {
                    let at = FILES + file * FILE_SLOT + (k as u64 - 1) * FRAME_LEN;
                    assert_eq!(f.source, Source::File(PhysAddr::new(at)));
                    assert_eq!(
                        (f.tag, f.offset),
                        (ring::file_tag(file), at - FILES - file * FILE_SLOT)
                    );
                }
            }
            if files > 0 {
                // Every file of the site is asked for.
                assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
            }
        }
    }

    #[test]
    fn what_fits_the_rings() {
        let p = |concurrency, response_max, files| Params {
            concurrency,
            response_max,
            files,
            ..params(0)
        };
        assert!(fits(&p(25, 20 << 10, 16)));
        assert!(fits(&p(1, 128, 0)));
        assert!(!fits(&p(0, 128, 0)), "no request outstanding");
        assert!(!fits(&p(65, 128, 0)), "more requests than receive slots");
        assert!(!fits(&p(64, 20 << 10, 16)), "a round's frames overflow the transmit ring");
        assert!(!fits(&p(1, 20 << 10, MAX_FILES + 1)), "more files than the site's area holds");
        assert!(!fits(&p(1, FILE_SLOT + 1, 1)), "a file larger than its slot");
    }
}
