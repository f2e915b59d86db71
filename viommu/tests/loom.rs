//! Model checks (loom) of the sidecore's handshakes: the real `Sidecore`
//! and `SidecoreMmio` over a page of loom atomics, against a small fake unit.
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p viommu --test loom --release`.
#![cfg(loom)]

use loom::sync::Mutex;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::thread;
use viommu::sidecore::{Registers, SharedWords, Sidecore, SidecoreMmio};
use vtd_emu::EmuConfig;
use vtd_regs::Mmio;
use vtd_regs::regs::offset;

const ICC: u32 = 1 << 31;
/// CIRG = domain-selective (bits 62:61 = 10b), in the high dword.
const CIRG_DOMAIN: u32 = 0b10 << 29;

/// The words of the page the handshakes use; the rest reads 0.
struct Page {
    ccmd: [AtomicU32; 2],
    iqt: AtomicU32,
    gcmd: AtomicU32,
    fsts: AtomicU32,
    ics: AtomicU32,
}

impl Page {
    fn new() -> Self {
        let w = || AtomicU32::new(0);
        Page { ccmd: [w(), w()], iqt: w(), gcmd: w(), fsts: w(), ics: w() }
    }

    fn word(&self, index: usize) -> Option<&AtomicU32> {
        match index * 4 {
            offset::CCMD => Some(&self.ccmd[0]),
            o if o == offset::CCMD + 4 => Some(&self.ccmd[1]),
            offset::IQT => Some(&self.iqt),
            offset::GCMD => Some(&self.gcmd),
            offset::FSTS => Some(&self.fsts),
            offset::ICS => Some(&self.ics),
            _ => None,
        }
    }
}

impl SharedWords for Page {
    fn load(&self, index: usize) -> u32 {
        self.word(index).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn store(&self, index: usize, value: u32) {
        if let Some(w) = self.word(index) {
            w.store(value, Ordering::Release);
        }
    }
    fn swap_if(&self, index: usize, current: u32, new: u32) -> bool {
        self.word(index).is_some_and(|w| {
            w.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
        })
    }
}

/// A unit that performs context-cache commands and "processes the queue"
/// by copying a descriptor word in memory to a status word; it counts
/// GCMD writes.
struct Unit {
    gcmd: Mutex<Vec<u32>>,
    ccmd: Mutex<(u32, u32)>,
    /// Domains of the context invalidations performed, in order.
    done: Mutex<Vec<u32>>,
    /// Guest memory: a descriptor and a status word.
    desc: AtomicU64,
    status: AtomicU32,
}

impl Unit {
    fn new() -> Self {
        Unit {
            gcmd: Mutex::new(Vec::new()),
            ccmd: Mutex::new((0, 0)),
            done: Mutex::new(Vec::new()),
            desc: AtomicU64::new(0),
            status: AtomicU32::new(0),
        }
    }
}

impl Registers for Unit {
    fn read(&self, off: usize) -> u32 {
        match off {
            offset::CCMD => self.ccmd.lock().unwrap().0,
            o if o == offset::CCMD + 4 => self.ccmd.lock().unwrap().1,
            _ => 0,
        }
    }

    fn write(&self, off: usize, value: u32) {
        match off {
            offset::CCMD => self.ccmd.lock().unwrap().0 = value,
            o if o == offset::CCMD + 4 => {
                let mut c = self.ccmd.lock().unwrap();
                if value & ICC != 0 {
                    self.done.lock().unwrap().push(c.0 & 0xffff);
                }
                c.1 = value & !ICC;
            }
            offset::GCMD => self.gcmd.lock().unwrap().push(value),
            offset::IQT => {
                // Relaxed on purpose: only the IQT doorbell orders the
                // guest's descriptor write before this read.
                let d = self.desc.load(Ordering::Relaxed);
                self.status.store(d as u32, Ordering::Release);
            }
            _ => {}
        }
    }
}

/// Polls until `commands` were served.
fn serve(mut sc: Sidecore<'_, Page>, unit: &Unit, commands: u64) {
    while sc.served() < commands {
        if !sc.poll(unit) {
            thread::yield_now();
        }
    }
}

/// Two context-cache invalidations through CCMD: each is performed once,
/// with the domain the guest wrote to the low half before ringing ICC in
/// the high half, and the guest sees ICC clear only after it was performed.
#[test]
fn register_command_handshake() {
    loom::model(|| {
        let page: &'static Page = Box::leak(Box::new(Page::new()));
        let unit: &'static Unit = Box::leak(Box::new(Unit::new()));
        // The sidecore fills the page before the guest runs.
        let cfg = EmuConfig::qemu();
        let sc = Sidecore::new(page, unit, &cfg);
        let side = thread::spawn(move || serve(sc, unit, 2));
        let mut mmio = SidecoreMmio::new(page, unit, &cfg);
        for did in [5u32, 6] {
            mmio.write32(offset::CCMD, did);
            mmio.write32(offset::CCMD + 4, ICC | CIRG_DOMAIN);
            while mmio.read32(offset::CCMD + 4) & ICC != 0 {
                thread::yield_now();
            }
            assert_eq!(unit.done.lock().unwrap().last(), Some(&did));
        }
        side.join().unwrap();
        assert_eq!(*unit.done.lock().unwrap(), vec![5, 6]);
    });
}

/// Queued invalidation: a descriptor written to memory before the IQT
/// store is what the unit processes, and its status write is visible to the
/// guest polling memory.
#[test]
fn queue_tail_handshake() {
    loom::model(|| {
        let page: &'static Page = Box::leak(Box::new(Page::new()));
        let unit: &'static Unit = Box::leak(Box::new(Unit::new()));
        let cfg = EmuConfig::qemu();
        let sc = Sidecore::new(page, unit, &cfg);
        let side = thread::spawn(move || serve(sc, unit, 1));
        let mut mmio = SidecoreMmio::new(page, unit, &cfg);
        unit.desc.store(0xabc, Ordering::Relaxed);
        mmio.write32(offset::IQT, 0x10);
        while unit.status.load(Ordering::Acquire) != 0xabc {
            thread::yield_now();
        }
        side.join().unwrap();
    });
}

/// A page of plain memory ([`Polling::All`]): the guest writes the same
/// GCMD value twice, each time waiting for the page to show GCMD idle
/// again; the unit performs both writes, in order, once each.
#[test]
fn polled_gcmd_handshake() {
    use viommu::sidecore::{GCMD_IDLE, Layout, Polling};
    loom::model(|| {
        let page: &'static Page = Box::leak(Box::new(Page::new()));
        let unit: &'static Unit = Box::leak(Box::new(Unit::new()));
        let layout = Layout::new(&EmuConfig::qemu(), Polling::All);
        let mut sc = Sidecore::with_layout(page, unit, layout);
        let side = thread::spawn(move || {
            while unit.gcmd.lock().unwrap().len() < 2 {
                if !sc.poll(unit) {
                    thread::yield_now();
                }
            }
        });
        for _ in 0..2 {
            page.store(offset::GCMD / 4, 1 << 30);
            while page.load(offset::GCMD / 4) != GCMD_IDLE {
                thread::yield_now();
            }
        }
        side.join().unwrap();
        assert_eq!(*unit.gcmd.lock().unwrap(), vec![1 << 30, 1 << 30]);
    });
}
