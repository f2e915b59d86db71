//! Second-level page tables: map + unmap of one 4 KiB page and a warm
//! translation, viommu's `SlPageTable` beside the `x86_64` crate's
//! `OffsetPageTable`, both over a Vec-backed arena of 4 KiB frames.
//!
//! Workload: 64 Ki IOVAs spread over 129 2 MiB regions of a 4-level
//! table; page 511 of each region stays mapped, so no table ever becomes
//! empty and both mappers only touch leaf entries once warm.

use std::cell::{Cell, RefCell};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vtd_regs::regs::{Sagaw, SecondLevelPageSizes};
use vtd_regs::{DomainId, FrameAllocator, Iova, MemError, PageSize, PhysAddr, PhysMem};
use vtd_tables::walk::{ContextInfo, WalkLimits, walk_second_level};
use vtd_tables::{Access, Perm, SlPageTable, TableConfig, TranslationType};
use x86_64::VirtAddr;
use x86_64::structures::paging::mapper::Translate;
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags,
    PhysFrame, Size4KiB,
};

/// Pages in the workload.
const PAGES: usize = 64 * 1024;
/// Table frames in each arena (plenty for 129 regions).
const ARENA_FRAMES: usize = 1024;
/// Where mapped pages point: beyond the arena, never dereferenced.
const TARGET_BASE: u64 = 1 << 32;

/// The IOVA of workload page `i`: slot `i % 511` of region `i / 511`.
fn iova_of(i: usize) -> u64 {
    (((i / 511) * 512 + i % 511) as u64) << 12
}

/// The keeper pages: slot 511 of every region.
fn keepers() -> impl Iterator<Item = u64> {
    (0..PAGES.div_ceil(511)).map(|r| ((r * 512 + 511) as u64) << 12)
}

/// The workload IOVAs in a fixed pseudo-random order (xorshift64),
/// precomputed so the measurement is the mapper's work.
fn order() -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..PAGES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            iova_of((x % PAGES as u64) as usize)
        })
        .collect()
}

/// Bytes in each arena.
const ARENA_BYTES: usize = ARENA_FRAMES * 4096;

/// A zeroed, 4 KiB-aligned, leaked arena: both mappers get one of these.
fn arena_bytes() -> *mut u8 {
    let layout = std::alloc::Layout::from_size_align(ARENA_BYTES, 4096).expect("arena layout");
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!p.is_null(), "arena allocation failed");
    p
}

/// Physical memory `[0, ARENA_BYTES)` over an arena of 64-bit cells.
struct Arena {
    words: &'static [Cell<u64>],
}

impl Arena {
    fn new() -> Self {
        let p = arena_bytes();
        // SAFETY: `p` is a leaked, zeroed, 8-aligned allocation of
        // ARENA_BYTES bytes, and all-zero bytes are a valid `Cell<u64>`;
        // nothing else refers to it.
        let words = unsafe { std::slice::from_raw_parts(p.cast::<Cell<u64>>(), ARENA_BYTES / 8) };
        Self { words }
    }

    #[inline]
    fn cell(&self, addr: PhysAddr) -> Result<&Cell<u64>, MemError> {
        let a = addr.as_u64();
        if a & 7 != 0 {
            return Err(MemError::Misaligned { addr });
        }
        self.words.get((a >> 3) as usize).ok_or(MemError::OutOfRange { addr, len: 8 })
    }
}

impl PhysMem for Arena {
    #[inline]
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        self.cell(addr).map(Cell::get)
    }
    #[inline]
    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.cell(addr).map(|c| c.set(value))
    }
    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        for (k, b) in buf.iter_mut().enumerate() {
            let a = addr.as_u64() + k as u64;
            *b = (self.read_u64(PhysAddr::new(a & !7))? >> ((a & 7) * 8)) as u8;
        }
        Ok(())
    }
    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        for (k, b) in data.iter().enumerate() {
            let a = addr.as_u64() + k as u64;
            let c = self.cell(PhysAddr::new(a & !7))?;
            let sh = (a & 7) * 8;
            c.set((c.get() & !(0xff << sh)) | ((*b as u64) << sh));
        }
        Ok(())
    }
    fn zero_frame(&self, frame: PhysAddr) -> Result<(), MemError> {
        let start = (frame.as_u64() >> 3) as usize;
        let f = self
            .words
            .get(start..start + 512)
            .ok_or(MemError::OutOfRange { addr: frame, len: 4096 })?;
        f.iter().for_each(|c| c.set(0));
        Ok(())
    }
}

/// Frames of an arena, from a free list.
struct ArenaFrames {
    free: RefCell<Vec<u64>>,
}

impl ArenaFrames {
    fn new() -> Self {
        Self { free: RefCell::new((1..ARENA_FRAMES as u64).rev().map(|f| f << 12).collect()) }
    }
}

// SAFETY: each frame is handed out once until given back, and is reached
// only through the arena.
unsafe impl FrameAllocator for ArenaFrames {
    fn allocate(&self, order: u8) -> Option<PhysAddr> {
        if order != 0 {
            return None;
        }
        self.free.borrow_mut().pop().map(PhysAddr::new)
    }
    fn deallocate(&self, addr: PhysAddr, _order: u8) {
        self.free.borrow_mut().push(addr.as_u64());
    }
}

// SAFETY: each frame is handed out once, is 4 KiB aligned within the arena
// and unused by anything else.
unsafe impl X86FrameAllocator<Size4KiB> for ArenaFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let a = self.free.borrow_mut().pop()?;
        PhysFrame::from_start_address(x86_64::PhysAddr::new(a)).ok()
    }
}

/// A warm 4-level viommu table: every workload region's tables exist.
fn viommu_table() -> SlPageTable<&'static Arena, &'static ArenaFrames> {
    let arena: &'static Arena = Box::leak(Box::new(Arena::new()));
    let frames: &'static ArenaFrames = Box::leak(Box::new(ArenaFrames::new()));
    let cfg = TableConfig::new(Sagaw::BITS48_L4, SecondLevelPageSizes::all(), 48)
        .expect("4-level config");
    let mut t = SlPageTable::new(arena, frames, cfg).expect("root frame");
    for k in keepers() {
        t.map(Iova::new(k), PhysAddr::new(TARGET_BASE + k), PageSize::Size4KiB, Perm::READ_WRITE)
            .expect("keeper");
    }
    t
}

/// A warm `x86_64` mapper over its own arena, at the arena's address as
/// physical offset, with a frame allocator of the same kind.
fn x86_table() -> (OffsetPageTable<'static>, ArenaFrames) {
    let base = arena_bytes().cast::<PageTable>();
    // SAFETY: the arena is leaked, zeroed (an empty `PageTable`) and 4 KiB
    // aligned, and from here on it is reached only through this mapper, at
    // `base + physical address`: frame 0 is the level-4 table, the allocator
    // hands out the others.
    let mut mapper = unsafe { OffsetPageTable::new(&mut *base, VirtAddr::new(base as u64)) };
    let mut frames = ArenaFrames::new();
    for k in keepers() {
        x86_map(&mut mapper, &mut frames, k);
    }
    (mapper, frames)
}

#[inline]
fn x86_map(mapper: &mut OffsetPageTable<'static>, frames: &mut ArenaFrames, iova: u64) {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(iova));
    let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(TARGET_BASE + iova));
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    // SAFETY: the table is never loaded into CR3: the mapping only changes
    // arena memory, which nothing else references.
    unsafe { mapper.map_to(page, frame, flags, frames) }.expect("x86_64 map").ignore();
}

fn sl_map_unmap_4k(c: &mut Criterion) {
    let order = order();
    let mut g = c.benchmark_group("sl_map_unmap_4k");

    let mut t = viommu_table();
    let mut i = 0;
    g.bench_function("viommu", |b| {
        b.iter(|| {
            let iova = order[i % PAGES];
            i += 1;
            let (iova, phys) = (Iova::new(iova), PhysAddr::new(TARGET_BASE + iova));
            t.map(black_box(iova), phys, PageSize::Size4KiB, Perm::READ_WRITE).expect("map");
            let token = t.unmap(black_box(iova), PageSize::Size4KiB).expect("unmap");
            t.release(token).expect("own token");
        })
    });

    let (mut mapper, mut frames) = x86_table();
    let mut i = 0;
    g.bench_function("x86_64_offset_page_table", |b| {
        b.iter(|| {
            let iova = order[i % PAGES];
            i += 1;
            x86_map(&mut mapper, &mut frames, black_box(iova));
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(black_box(iova)));
            mapper.unmap(page).expect("x86_64 unmap").1.ignore();
        })
    });
    g.finish();
}

fn translate_4k(c: &mut Criterion) {
    let order = order();
    let mut g = c.benchmark_group("translate_4k");

    let mut t = viommu_table();
    let mut i = 0;
    for p in 0..PAGES {
        let iova = iova_of(p);
        t.map(
            Iova::new(iova),
            PhysAddr::new(TARGET_BASE + iova),
            PageSize::Size4KiB,
            Perm::READ_WRITE,
        )
        .expect("map");
    }
    g.bench_function("viommu", |b| {
        b.iter(|| {
            let iova = Iova::new(order[i % PAGES] + 0x123);
            i += 1;
            black_box(t.translate(black_box(iova)))
        })
    });

    // The untrusting walker on the same table, after a context-cache hit.
    let ctx = ContextInfo {
        domain: DomainId::new(1),
        translation_type: TranslationType::Untranslated,
        agaw: t.config().agaw(),
        slptptr: t.root(),
        fpd: false,
    };
    let limits = WalkLimits {
        haw: 48,
        mgaw: 48,
        sagaw: Sagaw::BITS48_L4,
        sllps: SecondLevelPageSizes::all(),
        pass_through: false,
        device_tlb: false,
        snoop_control: false,
    };
    let mem = *t.mem();
    g.bench_function("viommu_walker", |b| {
        b.iter(|| {
            let iova = Iova::new(order[i % PAGES] + 0x123);
            i += 1;
            black_box(walk_second_level(mem, &ctx, black_box(iova), Access::Read, &limits)).ok()
        })
    });

    let (mut mapper, mut frames) = x86_table();
    for p in 0..PAGES {
        x86_map(&mut mapper, &mut frames, iova_of(p));
    }
    g.bench_function("x86_64_offset_page_table", |b| {
        b.iter(|| {
            let va = VirtAddr::new(order[i % PAGES] + 0x123);
            i += 1;
            black_box(mapper.translate_addr(black_box(va)))
        })
    });
    g.finish();
}

criterion_group!(benches, sl_map_unmap_4k, translate_4k);
criterion_main!(benches);
