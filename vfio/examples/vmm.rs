//! For VMM authors: a vIOMMU for a guest with one assigned PCI device, on
//! a Linux host, with the guest RAM the VMM already has (rust-vmm
//! `vm-memory`) and the host IOMMU reached through VFIO type1.
//!
//! ```text
//! cargo run -p viommu-vfio --features viommu --example vmm -- 0000:03:00.0
//! ```
//! (the device bound to `vfio-pci`; as root, or with `/dev/vfio/<group>`
//! and enough `RLIMIT_MEMLOCK` for the guest's mapped pages).
//!
//! What a VMM does, in order:
//! 1. open the device's VFIO container and device (`Container`), enable
//!    its DMA (bus master);
//! 2. build the backend over the guest RAM (`VfioBackend`), hand it the
//!    container with the device's host source id;
//! 3. build the `Viommu` over the same guest RAM, with the device's guest
//!    and host source ids, and expose its DMAR table and register page to
//!    the guest (here: a guest driver in this process plays the guest);
//! 4. forward every trapped access to the register page to
//!    `read_register` / `write_register`, and every DMA fault the host
//!    reports for the device to `report_host_fault`.
//!
//! The guest's map then becomes one `VFIO_IOMMU_MAP_DMA` of the guest page's
//! host virtual address, its unmap one `VFIO_IOMMU_UNMAP_DMA` that has
//! returned before the guest's invalidation completes. The kernel pins.

use viommu::{Assignment, Viommu, ViommuConfig};
use viommu_vfio::{Container, VfioBackend};
use viommu_vm_memory::GuestRam;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vtd_dma::{Direction, DmaConfig, DmaDomain, PhysAddr, StdClock};
use vtd_emu::SimFrameAllocator;
use vtd_regs::SourceId;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args().nth(1).ok_or("usage: vmm <pci-address bound to vfio-pci>")?;

    // The VMM's guest RAM: 64 MiB below a hole, 64 MiB above it.
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), 64 << 20),
        (GuestAddress(1 << 32), 64 << 20),
    ])?;

    // 1. The device, through VFIO.
    let mut container = Container::new()?;
    let device = container.open_device(&address)?;
    device.enable_dma()?;
    let host = host_source_id(&address).ok_or("not a PCI address")?;
    let guest = SourceId::new(0, 4, 0).ok_or("source id")?; // 00:04.0 in the guest

    // 2. The backend. SAFETY: the guest RAM is reached only through
    // vm-memory (volatile copies, no references) and stays mapped while the
    // backend, owned by the vIOMMU, lives.
    let mut backend = unsafe { VfioBackend::new(GuestRam::new(&mem)) };
    backend.add_container(container, &[host])?;

    // 3. The vIOMMU.
    let devices = [Assignment { guest, host }];
    let viommu = Viommu::new(GuestRam::new(&mem), backend, &devices, ViommuConfig::qemu())
        .map_err(|e| e.to_string())?;

    // 4. The guest's side, played here by the workspace's DMA API over the
    // vIOMMU's registers (a real VMM traps them from its vCPUs instead).
    let ram = GuestRam::new(&mem);
    let frames =
        SimFrameAllocator::new(ram.clone(), PhysAddr::new(1 << 20), PhysAddr::new(2 << 20));
    let mut dma = DmaDomain::new((ram, &frames, StdClock::new()), &viommu, DmaConfig::strict())?;
    dma.attach(guest)?;
    let buffer = PhysAddr::new(8 << 20);
    let iova = dma.map(buffer, 4096, Direction::FromDevice)?;
    let counts = viommu.with_backend(|b| b.ioctl_counts());
    println!("guest mapped {buffer:?} at {iova:?}: {} VFIO map ioctl(s)", counts.map);
    dma.unmap(iova, 4096)?;
    let counts = viommu.with_backend(|b| b.ioctl_counts());
    println!("guest unmapped it: {} VFIO unmap ioctl(s), completed", counts.unmap);
    Ok(())
}

/// The host source id (bus << 8 | device << 3 | function) of `0000:BB:DD.F`.
fn host_source_id(address: &str) -> Option<SourceId> {
    let (bus, rest) = address.rsplit_once(':').map(|(b, r)| (b.rsplit(':').next(), r))?;
    let (dev, func) = rest.split_once('.')?;
    let hex = |s: &str| u8::from_str_radix(s, 16).ok();
    SourceId::new(hex(bus?)?, hex(dev)?, hex(func)?)
}
