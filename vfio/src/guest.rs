//! Guest RAM from rust-vmm's vm-memory, mapped by guest-physical address.

use viommu_vm_memory::{GuestRam, host_range_in};
use vm_memory::{GuestAddressSpace, GuestMemoryBackend};
use vtd_regs::PhysAddr;

use crate::container::{Container, Type1};
use crate::dma::{DmaMapping, Perm};
use crate::error::{Error, Result};

impl<K: Type1> Container<K> {
    /// Maps guest RAM `[gpa, gpa + len)` at `[iova, iova + len)`: the
    /// guest-physical range is looked up in `ram` (one piece per vm-memory
    /// region it spans, so one `VFIO_IOMMU_MAP_DMA` per piece whose host
    /// addresses do not continue the previous one) and mapped as one batch
    /// while the memory map's snapshot is held. A range that is not wholly
    /// guest RAM maps nothing ([`Error::OutsideGuestRam`]).
    ///
    /// # Safety
    ///
    /// [`map_batch`](Self::map_batch)'s contract, for guest RAM: the regions
    /// stay mapped in the process until the range is unmapped through this
    /// container (a VMM that removes guest memory unmaps it here first).
    /// vm-memory gives out no Rust references to guest RAM, so the rest of
    /// the contract holds for it.
    pub unsafe fn map_guest<A>(
        &mut self,
        ram: &GuestRam<A>,
        iova: u64,
        gpa: u64,
        len: u64,
        perm: Perm,
    ) -> Result<()>
    where
        A: GuestAddressSpace,
        A::M: GuestMemoryBackend,
    {
        let outside = Error::OutsideGuestRam { gpa, len };
        let ranges = ram.host_ranges(PhysAddr::new(gpa), len).map_err(|_| outside)?;
        // The snapshot the addresses came from stays alive over the ioctls.
        let mem = ram.memory();
        let mut batch = Vec::with_capacity(ranges.len());
        for r in ranges {
            // The address is re-read from the snapshot held.
            let r = host_range_in(&*mem, r.gpa, r.len).map_err(|_| outside)?;
            let offset = r.gpa.as_u64() - gpa;
            batch.push(DmaMapping { iova: iova + offset, hva: r.hva, len: r.len, perm });
        }
        // SAFETY: the caller's contract, for guest RAM in `mem`.
        unsafe { self.map_batch(&batch) }
    }
}
