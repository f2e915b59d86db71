//! Loom model of `SharedSlTable`'s lock-free install of intermediate tables
//! (`RUSTFLAGS="--cfg loom" cargo test -p vtd-tables --test loom --release`):
//! two CPUs map disjoint pages under the same missing tables at once; in
//! every interleaving both translate afterwards, each table was installed
//! once (the CPU that lost a compare-exchange freed its own frame, which
//! nobody else saw) and no frame leaked. The memory is a lock per 4 KiB
//! frame, so every table access is a point where loom may switch CPUs
//! (the memory orderings are the memory's contract, `AtomicPhysMem`).
//! Caught when the install writes its entry with a plain store instead of
//! the compare-exchange: a frame leaks or a translation is lost.
#![cfg(loom)]

mod common;

use loom::sync::{Arc, Mutex};
use loom::thread;
use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
use vtd_regs::{AtomicPhysMem, FrameAllocator, Iova, MemError, PAGE_SIZE, PhysAddr, PhysMem};
use vtd_tables::{Perm, SharedSlTable, TableConfig};

/// Frames of the model's memory: a root and two levels below it, twice
/// over for the CPU that loses each race, and a spare.
const FRAMES: usize = 6;

/// `FRAMES` frames at physical 0, one lock each.
struct FrameMem {
    frames: Vec<Mutex<Vec<u64>>>,
}

impl FrameMem {
    fn new() -> Self {
        Self { frames: (0..FRAMES).map(|_| Mutex::new(vec![0; 512])).collect() }
    }

    fn with<R>(&self, addr: PhysAddr, f: impl FnOnce(&mut u64) -> R) -> Result<R, MemError> {
        let (a, out) = (addr.as_u64(), MemError::OutOfRange { addr, len: 8 });
        if a % 8 != 0 {
            return Err(MemError::Misaligned { addr });
        }
        let frame = self.frames.get((a / PAGE_SIZE) as usize).ok_or(out)?;
        Ok(f(&mut frame.lock().unwrap()[((a % PAGE_SIZE) / 8) as usize]))
    }
}

impl AtomicPhysMem for FrameMem {}

impl PhysMem for FrameMem {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        self.with(addr, |w| *w)
    }
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.with(addr, |w| *w = value)
    }
    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        common::read_by_words(self, addr, buf)
    }
    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        common::write_by_words(self, addr, data)
    }
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        let out = MemError::OutOfRange { addr: frame, len: PAGE_SIZE as usize };
        let f = self.frames.get((frame.as_u64() / PAGE_SIZE) as usize).ok_or(out)?;
        f.lock().unwrap().fill(0);
        Ok(())
    }
    fn compare_exchange_u64(
        &self,
        addr: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        self.with(addr, |w| {
            if *w == current {
                *w = new;
                Ok(current)
            } else {
                Err(*w)
            }
        })
    }
}

/// The frames of [`FrameMem`], free list behind a lock.
struct Frames(Mutex<Vec<PhysAddr>>);

impl Frames {
    fn new() -> Self {
        Self(Mutex::new((0..FRAMES as u64).rev().map(|i| PhysAddr::new(i * PAGE_SIZE)).collect()))
    }

    fn live(&self) -> usize {
        FRAMES - self.0.lock().unwrap().len()
    }
}

// SAFETY: a frame is handed out at most once until it is given back.
unsafe impl FrameAllocator for Frames {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        assert_eq!(order, 0);
        self.0.lock().unwrap().pop()
    }
    fn deallocate(&self, addr: PhysAddr, order: u8) {
        assert_eq!(order, 0);
        let mut free = self.0.lock().unwrap();
        assert!(!free.contains(&addr), "double free of {addr:?}");
        free.push(addr);
    }
}

#[test]
fn racing_installs_of_one_table_keep_both_maps_and_free_the_losers_frame() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let cfg =
            TableConfig::new(Sagaw::BITS39_L3, SecondLevelPageSizes::empty(), 39).expect("config");
        let table = Arc::new(SharedSlTable::new(FrameMem::new(), Frames::new(), cfg).unwrap());
        // Two pages of one last-level table, under a missing level-2 table.
        let pages = [(0x4000_1000u64, 0x10_0000u64), (0x4000_2000, 0x20_0000)];
        let other = {
            let table = table.clone();
            let (iova, phys) = pages[1];
            thread::spawn(move || {
                table.map_range(Iova::new(iova), PhysAddr::new(phys), PAGE_SIZE, Perm::READ)
            })
        };
        let (iova, phys) = pages[0];
        table.map_range(Iova::new(iova), PhysAddr::new(phys), PAGE_SIZE, Perm::READ).unwrap();
        other.join().unwrap().unwrap();
        for (iova, phys) in pages {
            let t = table.translate(Iova::new(iova)).expect("mapped");
            assert_eq!(t.phys, PhysAddr::new(phys));
        }
        // Root, one level-2 table, one last-level table: nothing leaked.
        assert_eq!(table.frames().live(), 3);
    });
}
