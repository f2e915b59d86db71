//! The NIC model: a directly assigned network device and, behind it, the
//! client that loads it. On a doorbell it reads the posted slots of its
//! rings in the driver's memory, translates each buffer's DMA address
//! through the IOMMU (bare metal: the software VT-d's `translate` for
//! source [`layout::NIC`]; in a guest: the physical unit the vIOMMU
//! shadows into, for the NIC's host source id) and reads or writes the
//! buffer at the physical address it gives; a blocked DMA completes the
//! slot as faulted. It never trusts the rings: every access is a checked
//! [`PhysMem`] access, and what it reads is checked against what the
//! driver must have written.
//!
//! - Receive ([`Doorbell::Receive`]): writes a frame into each posted
//!   receive buffer.
//! - Transmit ([`Doorbell::Transmit`]): reads each posted frame (a device
//!   read: the mapping may be read-only) and checks it is the next frame
//!   of a response, with the length and bytes
//!   [`request_response::frame`] says; then the client sends a new request
//!   for every response it completed, keeping `concurrency` requests
//!   outstanding (at the first doorbell, `concurrency` of them), each into
//!   a posted receive buffer.

use viommu_eval_driver::{
    Doorbell, Params, layout,
    request_response::{self, REQUEST_LEN},
    ring,
};
use vtd_emu::Access;
use vtd_regs::{Iova, PhysAddr, PhysMem};

/// What the device did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Frames written into receive buffers (received frames and requests).
    pub frames: u64,
    /// Frames read from transmit buffers.
    pub sent: u64,
    /// DMAs the IOMMU blocked.
    pub faults: u64,
    /// Translation requests sent to the IOMMU.
    pub translations: u64,
    /// Requests the client sent.
    pub requests: u64,
    /// Responses the client received whole.
    pub responses: u64,
    /// Transmitted frames that were not the expected next frame of a
    /// response, or had another length or other bytes than it must have.
    pub bad_frames: u64,
}

/// The client of the request-response workload.
#[derive(Clone, Copy, Debug)]
struct Client {
    /// The run's parameters: requests in all, concurrency, responses.
    params: Params,
    /// The response being received: (request, next frame).
    current: Option<(u64, u64)>,
}

/// The device and its client.
#[derive(Clone, Debug)]
pub struct Nic {
    /// What it did.
    pub counters: NicCounters,
    client: Client,
}

impl Nic {
    /// The device for a run with `params` (the client serves the
    /// request-response workload; the receive workload only rings
    /// [`Doorbell::Receive`]).
    #[must_use]
    pub fn new(params: &Params) -> Self {
        Self { counters: NicCounters::default(), client: Client { params: *params, current: None } }
    }

    /// Serves `bell` on the rings in the driver's memory `mem`.
    /// `translate` maps a DMA address, for an access, to an address of
    /// `dma` (the physical memory the device reaches: `mem` itself on bare
    /// metal, host memory in a guest), `None` if blocked.
    pub fn doorbell<M: PhysMem, D: PhysMem>(
        &mut self,
        mem: &M,
        dma: &D,
        bell: Doorbell,
        mut translate: impl FnMut(Iova, Access) -> Option<PhysAddr>,
    ) {
        let mut dev = Dma { mem: dma, counters: &mut self.counters, translate: &mut translate };
        match bell {
            Doorbell::Receive(slots) => receive(mem, &mut dev, slots),
            Doorbell::Transmit(slots) => {
                transmit(mem, &mut dev, &mut self.client, slots);
                send_requests(mem, &mut dev, &self.client);
            }
        }
    }
}

/// The device's DMA: through `translate`, into `mem`, counted.
struct Dma<'a, D, T> {
    mem: &'a D,
    counters: &'a mut NicCounters,
    translate: &'a mut T,
}

impl<D: PhysMem, T: FnMut(Iova, Access) -> Option<PhysAddr>> Dma<'_, D, T> {
    /// Writes `data` at DMA address `addr`, page by page, each page
    /// translated; false if a translation was blocked or missed memory.
    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        self.pages(addr, data.len(), Access::Write, |mem, phys, range| {
            mem.write_bytes(phys, &data[range]).is_ok()
        })
    }

    /// Reads `buf.len()` bytes at DMA address `addr`, as [`Dma::write`].
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        self.pages(addr, buf.len(), Access::Read, |mem, phys, range| {
            mem.read_bytes(phys, &mut buf[range]).is_ok()
        })
    }

    /// Calls `f` for each page of `[addr, addr + len)` with its physical
    /// address and the byte range it covers; a blocked DMA counts a fault.
    fn pages(
        &mut self,
        addr: u64,
        len: usize,
        access: Access,
        mut f: impl FnMut(&D, PhysAddr, std::ops::Range<usize>) -> bool,
    ) -> bool {
        let mut done = 0usize;
        while done < len {
            let Some(at) = addr.checked_add(done as u64) else { return self.fault() };
            let n = ((4096 - (at & 0xfff)) as usize).min(len - done);
            self.counters.translations += 1;
            let Some(phys) = (self.translate)(Iova::new(at), access) else {
                return self.fault();
            };
            if !f(self.mem, phys, done..done + n) {
                return self.fault();
            }
            done += n;
        }
        true
    }

    fn fault(&mut self) -> bool {
        self.counters.faults += 1;
        false
    }
}

/// Fills receive slots `0..slots` with frames.
fn receive<M: PhysMem, D: PhysMem, T: FnMut(Iova, Access) -> Option<PhysAddr>>(
    mem: &M,
    dev: &mut Dma<'_, D, T>,
    slots: u64,
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
        let status = if dev.write(addr, &frame) {
            dev.counters.frames += 1;
            ring::DONE
        } else {
            ring::FAULTED
        };
        // The slot may be gone (bad ring address): nothing to complete.
        let _ = mem.write_u64(ring::word(slot, 2), status);
    }
}

/// Sends transmit slots `0..slots`: reads each frame and hands it to the
/// client, which checks it.
fn transmit<M: PhysMem, D: PhysMem, T: FnMut(Iova, Access) -> Option<PhysAddr>>(
    mem: &M,
    dev: &mut Dma<'_, D, T>,
    client: &mut Client,
    slots: u64,
) {
    let mut frame = [0u8; layout::FRAME_LEN as usize];
    for slot in 0..slots.min(ring::TX_SLOTS) {
        let word = |w| mem.read_u64(ring::tx_word(slot, w));
        let (Ok(addr), Ok(tag), Ok(len)) = (word(0), word(1), word(3)) else { continue };
        let (last, len) = (len & ring::LAST_FRAME != 0, len & !ring::LAST_FRAME);
        let Some(buf) = usize::try_from(len).ok().and_then(|n| frame.get_mut(..n)) else {
            dev.counters.bad_frames += 1;
            let _ = mem.write_u64(ring::tx_word(slot, 2), ring::FAULTED);
            continue;
        };
        let status = if dev.read(addr, buf) {
            dev.counters.sent += 1;
            if !client.frame(tag, buf, last, &mut dev.counters.responses) {
                dev.counters.bad_frames += 1;
            }
            ring::DONE
        } else {
            ring::FAULTED
        };
        let _ = mem.write_u64(ring::tx_word(slot, 2), status);
    }
}

impl Client {
    /// The frame `tag` (`ring::response_tag`) holding `bytes` arrived
    /// (`last`: it ends its response); true if it is the expected next
    /// frame, with the length, end and bytes it must have. A completed
    /// response counts in `responses`.
    fn frame(&mut self, tag: u64, bytes: &[u8], last: bool, responses: &mut u64) -> bool {
        let (request, k) = (tag >> 8, tag & (ring::MAX_FRAMES - 1));
        let expected = self.current.unwrap_or((request, 0));
        let spec = request_response::frame(&self.params, request, k);
        let ok = expected == (request, k)
            && spec.len == bytes.len() as u64
            && spec.last == last
            && bytes
                .iter()
                .enumerate()
                .all(|(i, &b)| b == ring::pattern(spec.tag, spec.offset + i as u64));
        if last {
            self.current = None;
            *responses += 1;
        } else {
            self.current = Some((request, k + 1));
        }
        ok
    }
}

/// The client sends a request for each response it completed, keeping at
/// most its concurrency outstanding, into posted receive slots.
fn send_requests<M: PhysMem, D: PhysMem, T: FnMut(Iova, Access) -> Option<PhysAddr>>(
    mem: &M,
    dev: &mut Dma<'_, D, T>,
    client: &Client,
) {
    let mut request = [0u8; REQUEST_LEN as usize];
    let (total, concurrency) = (client.params.buffers, client.params.concurrency.min(ring::SLOTS));
    for slot in 0..concurrency {
        let c = *dev.counters;
        if c.requests >= total || c.requests - c.responses >= concurrency {
            return;
        }
        if mem.read_u64(ring::word(slot, 2)) != Ok(ring::POSTED) {
            continue;
        }
        let Ok(addr) = mem.read_u64(ring::word(slot, 0)) else { continue };
        let id = c.requests;
        let tag = ring::request_tag(id);
        for (i, b) in request.iter_mut().enumerate() {
            *b = ring::pattern(tag, i as u64);
        }
        let status = if dev.write(addr, &request) {
            dev.counters.frames += 1;
            dev.counters.requests += 1;
            let _ = mem.write_u64(ring::word(slot, 1), id);
            ring::DONE
        } else {
            ring::FAULTED
        };
        let _ = mem.write_u64(ring::word(slot, 2), status);
    }
}
