//! A VMM's guest RAM from rust-vmm's [`vm-memory`](vm_memory) as the viommu
//! crates see guest memory: [`GuestRam`] implements [`vtd_regs::PhysMem`]
//! and the vIOMMU's [`viommu::GuestRam`] (where the RAM regions are) over
//! any [`GuestAddressSpace`] whose memory is a [`GuestMemoryBackend`] (a
//! `&GuestMemoryMmap`, an `Arc<GuestMemoryMmap>`, a
//! `GuestMemoryAtomic<GuestMemoryMmap>`), so a VMM hands the vIOMMU the
//! memory it already has, several regions and holes included: one
//! vm-memory region is one RAM region of the vIOMMU (a range the vIOMMU
//! asks a backend to map lies in one, so in one contiguous host range).
//!
//! Every table pointer, queue address and status address a guest writes is
//! hostile input: an access that is not wholly inside guest RAM (a hole,
//! past the end, a wrapping range) is [`MemError::OutOfRange`] and touches
//! nothing, which the vIOMMU turns into the fault or queue error hardware
//! reports for an unreadable address (VT-d §7.1.3, §6.5.2.10). Accesses go
//! through vm-memory's volatile copies: the guest (and its devices) may
//! change the bytes at any time.
//!
//! [`GuestRam::host_range`] is the guest-physical -> host-virtual lookup a
//! host IOMMU backend that maps by user address (VFIO, iommufd) needs: the
//! host address of a range that lies in one region.
//!
//! ```
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! use viommu_vm_memory::GuestRam;
//! use vtd_regs::{MemError, PAGE_SIZE, PhysAddr, PhysMem};
//!
//! // 64 KiB at 0 and 64 KiB at 1 MiB: a hole between.
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[
//!     (GuestAddress(0), 0x1_0000),
//!     (GuestAddress(0x10_0000), 0x1_0000),
//! ])
//! .unwrap();
//! let ram = GuestRam::new(&mem);
//! ram.write_u64(PhysAddr::new(0x10_0008), 0x1234)?;
//! assert_eq!(ram.read_u64(PhysAddr::new(0x10_0008))?, 0x1234);
//! assert!(matches!(ram.read_u64(PhysAddr::new(0x2_0000)), Err(MemError::OutOfRange { .. })));
//!
//! let range = ram.host_range(PhysAddr::new(0x10_1000), 0x2000)?;
//! assert_eq!(range.len, 0x2000);
//! assert!(ram.host_range(PhysAddr::new(0xf000), 0x2000).is_err(), "ends in the hole");
//!
//! // The regions, as the vIOMMU asks for them.
//! use viommu::GuestRam as _;
//! let second = PhysAddr::new(0x10_0000)..PhysAddr::new(0x11_0000);
//! assert_eq!(ram.ram_from(PhysAddr::new(0x1_0000)), Some(second.clone()), "the next one");
//! assert_eq!(ram.ram_at(PhysAddr::new(0x1_0000)), None, "in the hole");
//! assert_eq!(ram.ram_at(PhysAddr::new(0x10_8000)), Some(second));
//! assert_eq!(ram.ram_from(PhysAddr::new(0x11_0000)), None, "above all RAM");
//! # Ok::<(), MemError>(())
//! ```
#![forbid(unsafe_code)]

use std::ops::Range;
use std::sync::atomic::Ordering;

use vm_memory::{
    Bytes, GuestAddress, GuestAddressSpace, GuestMemoryBackend, GuestMemoryRegion,
    MemoryRegionAddress,
};
use vtd_regs::{MemError, PAGE_SIZE, PhysAddr, PhysMem};

/// Guest RAM as the viommu crates read and write it: a vm-memory address
/// space, bounds-checked by region.
#[derive(Clone, Debug)]
pub struct GuestRam<A> {
    space: A,
}

/// A guest-physical range and the host virtual address that backs it, in
/// one vm-memory region (so contiguous in both spaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostRange {
    /// The first guest-physical byte.
    pub gpa: PhysAddr,
    /// The host virtual address of that byte, in this process.
    pub hva: usize,
    /// Length in bytes.
    pub len: u64,
}

impl<A> GuestRam<A>
where
    A: GuestAddressSpace,
    A::M: GuestMemoryBackend,
{
    /// The guest RAM of `space`.
    pub const fn new(space: A) -> Self {
        Self { space }
    }

    /// The address space.
    pub fn space(&self) -> &A {
        &self.space
    }

    /// A snapshot of the memory map (vm-memory's guard: regions stay mapped
    /// while it lives, even if the VMM swaps in a new map meanwhile).
    pub fn memory(&self) -> A::T {
        self.space.memory()
    }

    /// The host virtual address of `[gpa, gpa + len)`, which must lie in
    /// one region of the current memory map (`len` > 0).
    ///
    /// The address is only an address: whoever hands it to the kernel (a
    /// VFIO map) keeps the region mapped meanwhile, e.g. by holding
    /// [`memory`](Self::memory)'s guard and calling [`host_range_in`].
    pub fn host_range(&self, gpa: PhysAddr, len: u64) -> Result<HostRange, MemError> {
        host_range_in(&*self.space.memory(), gpa, len)
    }

    /// [`host_range`](Self::host_range) for a range that may span several
    /// regions (adjacent in guest-physical space): one [`HostRange`] per
    /// region, in address order; a hole anywhere is
    /// [`MemError::OutOfRange`].
    pub fn host_ranges(&self, gpa: PhysAddr, len: u64) -> Result<Vec<HostRange>, MemError> {
        let mem = self.space.memory();
        let err = out_of_range(gpa, len);
        let end = gpa.as_u64().checked_add(len).filter(|_| len > 0).ok_or(err)?;
        let mut ranges = Vec::new();
        let mut at = gpa.as_u64();
        while at < end {
            let region = mem.find_region(GuestAddress(at)).ok_or(err)?;
            let region_end = region.start_addr().0.checked_add(region.len()).ok_or(err)?;
            let piece = region_end.min(end) - at;
            ranges.push(host_range_in(&*mem, PhysAddr::new(at), piece)?);
            at += piece;
        }
        Ok(ranges)
    }
}

/// [`GuestRam::host_range`] in a memory map the caller holds.
pub fn host_range_in<M: GuestMemoryBackend + ?Sized>(
    mem: &M,
    gpa: PhysAddr,
    len: u64,
) -> Result<HostRange, MemError> {
    let err = out_of_range(gpa, len);
    if len == 0 {
        return Err(err);
    }
    let (region, offset) = mem.to_region_addr(GuestAddress(gpa.as_u64())).ok_or(err)?;
    let end = offset.0.checked_add(len).ok_or(err)?;
    if end > region.len() {
        return Err(err);
    }
    let hva = region.get_host_address(MemoryRegionAddress(offset.0)).map_err(|_| err)?;
    Ok(HostRange { gpa, hva: hva as usize, len })
}

fn out_of_range(addr: PhysAddr, len: u64) -> MemError {
    MemError::OutOfRange { addr, len: usize::try_from(len).unwrap_or(usize::MAX) }
}

impl<A> PhysMem for GuestRam<A>
where
    A: GuestAddressSpace,
    A::M: GuestMemoryBackend,
{
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        // An aligned 64-bit load, as the remapping hardware reads an entry.
        let value: u64 = self
            .space
            .memory()
            .load(GuestAddress(addr.as_u64()), Ordering::Acquire)
            .map_err(|_| out_of_range(addr, 8))?;
        Ok(u64::from_le(value))
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        if !addr.is_aligned(8) {
            return Err(MemError::Misaligned { addr });
        }
        self.space
            .memory()
            .store(value.to_le(), GuestAddress(addr.as_u64()), Ordering::Release)
            .map_err(|_| out_of_range(addr, 8))
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        if buf.is_empty() {
            return Ok(());
        }
        let mem = self.space.memory();
        check(&*mem, addr, buf.len())?;
        mem.read_slice(buf, GuestAddress(addr.as_u64()))
            .map_err(|_| out_of_range(addr, buf.len() as u64))
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        if data.is_empty() {
            return Ok(());
        }
        let mem = self.space.memory();
        check(&*mem, addr, data.len())?;
        mem.write_slice(data, GuestAddress(addr.as_u64()))
            .map_err(|_| out_of_range(addr, data.len() as u64))
    }
}

/// Where the guest's RAM is, for the vIOMMU: each vm-memory region of the
/// current memory map is one RAM region, its whole 4 KiB pages only (a
/// region whose start or end is not page-aligned is reported without its
/// partial pages, which the vIOMMU then never maps; reads and writes of
/// them still work: they are guest RAM).
impl<A> viommu::GuestRam for GuestRam<A>
where
    A: GuestAddressSpace,
    A::M: GuestMemoryBackend,
{
    fn ram_from(&self, gpa: PhysAddr) -> Option<Range<PhysAddr>> {
        let gpa = gpa.as_u64();
        self.space
            .memory()
            .iter()
            .filter_map(|region| {
                let start = region.start_addr().0.checked_next_multiple_of(PAGE_SIZE)?;
                let end = region.start_addr().0.checked_add(region.len())? & !(PAGE_SIZE - 1);
                (start < end && gpa < end).then_some(start..end)
            })
            .min_by_key(|r| r.start)
            .map(|r| PhysAddr::new(r.start)..PhysAddr::new(r.end))
    }
}

/// Refuses an access that is not wholly in guest RAM before any byte
/// moves (vm-memory's copies would do the part before a hole).
fn check<M: GuestMemoryBackend + ?Sized>(
    mem: &M,
    addr: PhysAddr,
    len: usize,
) -> Result<(), MemError> {
    if mem.check_range(GuestAddress(addr.as_u64()), len) {
        Ok(())
    } else {
        Err(out_of_range(addr, len as u64))
    }
}
