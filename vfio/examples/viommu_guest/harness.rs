//! `viommu::conformance` on the VFIO backend, observed through real DMA:
//! [`EduHarness::dma`] has edu read or write 8 bytes at the IOVA through the
//! Linux kernel's IOMMU and finds where they went.
//!
//! - Every 8-byte word of guest data RAM holds a marker of its own address
//!   (`address ^ TAG`): a read that reached guest RAM returns the marker of
//!   the word it reached; a blocked read returns zeros (edu's buffer slot is
//!   cleared first).
//! - Edu's buffer slot `SLOT_S` holds a nonce found nowhere in guest RAM; a
//!   write puts it at the IOVA, and the word of guest RAM that changed (at
//!   the IOVA's page offset, in any page of guest RAM, tables included) is
//!   where it landed; it is restored.
//! - Edu's buffer is loaded and read back through a scratch page of the
//!   VMM's own memory (not guest RAM), mapped at `SCRATCH_IOVA` in the
//!   shared container only for the few DMAs that need it.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use viommu::Assignment;
use viommu::conformance::Harness;
use viommu_vfio::{Container, DmaMapping, Perm, SharedContainer, VfioBackend};
use viommu_vm_memory::GuestRam;
use vm_memory::GuestMemoryMmap;
use vtd_regs::{Iova, PhysAddr, PhysMem};
use vtd_tables::Access;

use crate::edu::Edu;
use crate::{DATA, PAGE, REGIONS, TABLES, ioctls_of};

/// Marks every word of guest data RAM.
pub(crate) const TAG: u64 = 0x5eed_0000_0000_0000;
/// The IOVA of the VMM's scratch page: one the checks never map.
const SCRATCH_IOVA: u64 = 0xf000_0000;
/// Offsets in the scratch page: zeros, the nonce, and where edu's slot is
/// written back.
const ZEROS: u64 = 0x100;
const NONCE_AT: u64 = 0x200;
const OUT: u64 = 0x300;
const NONCE: u64 = 0x6e6f_6e63_6521_2121;
/// Edu buffer slots: what a read brings in, and the nonce.
const SLOT_R: usize = 0x800;
const SLOT_S: usize = 0x900;
const _: () =
    assert!(SLOT_R + 8 <= crate::edu::BUFFER_SIZE && SLOT_S + 8 <= crate::edu::BUFFER_SIZE);

/// Writes the markers into guest data RAM.
pub(crate) fn mark(ram: &GuestRam<&GuestMemoryMmap<()>>) -> Result<(), String> {
    for page in DATA.step_by(PAGE as usize) {
        let words: Vec<u8> =
            (0..PAGE / 8).flat_map(|i| ((page + 8 * i) ^ TAG).to_le_bytes()).collect();
        ram.write_bytes(PhysAddr::new(page), &words).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub(crate) type Ram<'m> = GuestRam<&'m GuestMemoryMmap<()>>;
pub(crate) type Backend<'m> = VfioBackend<&'m GuestMemoryMmap<()>, SharedContainer>;

/// The VMM of the checks: guest RAM, the shared container, edu, and the
/// VMM's scratch page.
pub(crate) struct EduHarness<'m, 'd> {
    mem: &'m GuestMemoryMmap<()>,
    container: SharedContainer,
    device: Assignment,
    edu: &'d Edu<'d>,
    scratch: GuestRam<&'m GuestMemoryMmap<()>>,
    scratch_hva: usize,
    /// DMAs done.
    pub(crate) dmas: u64,
    /// What [`write_only_is_readable`](Self::write_only_is_readable) found.
    pub(crate) write_only_readable: bool,
}

impl<'m, 'd> EduHarness<'m, 'd> {
    /// Loads the nonce into edu's buffer (and checks it round-trips).
    pub(crate) fn new(
        mem: &'m GuestMemoryMmap<()>,
        container: SharedContainer,
        device: Assignment,
        edu: &'d Edu<'d>,
        scratch: &'m GuestMemoryMmap<()>,
    ) -> Result<Self, String> {
        let scratch = GuestRam::new(scratch);
        let scratch_hva = scratch.host_range(PhysAddr::ZERO, PAGE).map_err(|e| e.to_string())?.hva;
        let mut h = EduHarness {
            mem,
            container,
            device,
            edu,
            scratch,
            scratch_hva,
            dmas: 0,
            write_only_readable: false,
        };
        h.poke(NONCE_AT, NONCE);
        h.with_scratch(|h| {
            h.edu.read_memory(SCRATCH_IOVA + NONCE_AT, SLOT_S, 8)?;
            h.edu.write_memory(SLOT_S, SCRATCH_IOVA + OUT, 8)?;
            h.dmas += 2;
            Ok(())
        })?;
        if h.peek(OUT) != NONCE {
            return Err(format!("the scratch page reads back {:#x}", h.peek(OUT)));
        }
        Ok(h)
    }

    /// Whether the device reads a page the container maps write-only (at
    /// the scratch IOVA's next page; the VMM's own page, holding the nonce).
    pub(crate) fn write_only_is_readable(&mut self) -> Result<bool, String> {
        let page = DmaMapping {
            iova: SCRATCH_IOVA + PAGE,
            hva: self.scratch_hva,
            len: PAGE,
            perm: Perm::WRITE,
        };
        let container = Arc::clone(&self.container);
        // SAFETY: as in `with_scratch`.
        unsafe { container.lock().unwrap().map(page) }.map_err(|e| e.to_string())?;
        self.poke(OUT, 0);
        let result = self.with_scratch(|h| {
            h.edu.read_memory(SCRATCH_IOVA + ZEROS, SLOT_R, 8)?;
            h.edu.read_memory(SCRATCH_IOVA + PAGE + NONCE_AT, SLOT_R, 8)?;
            h.edu.write_memory(SLOT_R, SCRATCH_IOVA + OUT, 8)
        });
        container.lock().unwrap().unmap(SCRATCH_IOVA + PAGE, PAGE).map_err(|e| e.to_string())?;
        result?;
        Ok(self.peek(OUT) == NONCE)
    }

    fn peek(&self, off: u64) -> u64 {
        self.scratch.read_u64(PhysAddr::new(off)).expect("scratch page")
    }

    fn poke(&self, off: u64, value: u64) {
        self.scratch.write_u64(PhysAddr::new(off), value).expect("scratch page")
    }

    /// Runs `f` with the scratch page mapped in the device's container.
    fn with_scratch(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let page = DmaMapping {
            iova: SCRATCH_IOVA,
            hva: self.scratch_hva,
            len: PAGE,
            perm: Perm::READ | Perm::WRITE,
        };
        let container = Arc::clone(&self.container);
        // SAFETY: the scratch page is memory of this process reached only
        // through vm-memory's volatile copies, alive as long as `self`.
        unsafe { container.lock().unwrap().map(page) }.map_err(|e| e.to_string())?;
        let result = f(self);
        container.lock().unwrap().unmap(SCRATCH_IOVA, PAGE).map_err(|e| e.to_string())?;
        result
    }

    /// The word of guest RAM at page offset `off` of every page.
    fn words_at(&self, off: u64) -> Vec<(u64, u64)> {
        REGIONS
            .iter()
            .flat_map(|&(start, len)| (start..start + len as u64).step_by(PAGE as usize))
            .map(|page| {
                let at = PhysAddr::new(page + off);
                (page + off, GuestRam::new(self.mem).read_u64(at).expect("guest RAM"))
            })
            .collect()
    }

    fn read(&mut self, iova: u64) -> Result<Option<PhysAddr>, String> {
        self.with_scratch(|h| {
            h.edu.read_memory(SCRATCH_IOVA + ZEROS, SLOT_R, 8)?;
            h.edu.read_memory(iova, SLOT_R, 8)?;
            h.edu.write_memory(SLOT_R, SCRATCH_IOVA + OUT, 8)?;
            h.dmas += 3;
            Ok(())
        })?;
        match self.peek(OUT) {
            0 => Ok(None),
            v if DATA.contains(&(v ^ TAG)) && (v ^ TAG).is_multiple_of(8) => {
                Ok(Some(PhysAddr::new(v ^ TAG)))
            }
            v => Err(format!("a read at {iova:#x} brought {v:#x}: not guest data")),
        }
    }

    fn write(&mut self, iova: u64) -> Result<Option<PhysAddr>, String> {
        let off = iova % PAGE;
        let before = self.words_at(off);
        self.edu.write_memory(SLOT_S, iova, 8)?;
        self.dmas += 1;
        let after = self.words_at(off);
        let changed: Vec<u64> =
            before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, _)| b.0).collect();
        for &(gpa, old) in before.iter().filter(|(gpa, _)| changed.contains(gpa)) {
            GuestRam::new(self.mem).write_u64(PhysAddr::new(gpa), old).expect("guest RAM");
        }
        match changed[..] {
            [] => Ok(None),
            [gpa] => Ok(Some(PhysAddr::new(gpa))),
            _ => Err(format!("a write at {iova:#x} changed {changed:#x?}")),
        }
    }
}

impl<'m> Harness for EduHarness<'m, '_> {
    type Ram = Ram<'m>;
    type Backend = Backend<'m>;

    fn ram(&self) -> Ram<'m> {
        GuestRam::new(self.mem)
    }

    fn backend(&mut self) -> Backend<'m> {
        // SAFETY: guest RAM of `mem`, reached only through vm-memory, alive
        // for as long as the backend ('m).
        let mut b = unsafe { VfioBackend::new(GuestRam::new(self.mem)) };
        b.add_container(Arc::clone(&self.container), &[self.device.host]).expect("one container");
        b
    }

    fn device(&self) -> Assignment {
        self.device
    }

    fn table_frames(&self) -> Range<PhysAddr> {
        PhysAddr::new(TABLES.start)..PhysAddr::new(TABLES.end)
    }

    fn data(&self) -> Range<PhysAddr> {
        PhysAddr::new(DATA.start)..PhysAddr::new(DATA.end)
    }

    fn enforces_write_only(&self) -> bool {
        !self.write_only_readable
    }

    fn dma(&mut self, iova: Iova, access: Access) -> Option<PhysAddr> {
        let result = match access {
            Access::Read => self.read(iova.as_u64()),
            Access::Write => self.write(iova.as_u64()),
        };
        result.unwrap_or_else(|e| panic!("edu DMA: {e}"))
    }
}

/// A fresh shared container holding the device at `address`, and the
/// device.
pub(crate) fn shared_container(
    address: &str,
) -> Result<(SharedContainer, viommu_vfio::Device), String> {
    let e = |e: viommu_vfio::Error| e.to_string();
    let mut container = Container::new().map_err(e)?;
    let dev = container.open_device(address).map_err(e)?;
    dev.enable_dma().map_err(e)?;
    println!("setup {}", ioctls_of(container.ioctl_counts()));
    Ok((Arc::new(Mutex::new(container)), dev))
}
