//! Brings up the embedded software VT-d the way a driver brings up real
//! hardware, prints what its capability registers decode to, then maps a
//! DMA buffer, lets the device reach it, unmaps it and shows the fault the
//! next access records.
//!
//! `cargo run --release -p viommu-examples --bin bringup [-- --modern]`:
//! QEMU's `intel-iommu` capabilities by default, `--modern` for a unit like
//! recent server hardware.

use invalidation::{FlushConfig, NoClock};
use iova_alloc::{IovaTree, Window};
use teardown::{Fixed, Mapper, MapperConfig, NoPinning, Reuse};
use viommu_examples::{DEVICE, DOMAIN, Emu, Testbed};
use vtd_emu::EmuConfig;
use vtd_regs::{Iova, PageSize, PhysAddr, RemappingUnit};
use vtd_tables::{Access, Perm};

fn main() {
    let modern = std::env::args().any(|a| a == "--modern");
    let (name, cfg) = if modern {
        ("modern server preset", EmuConfig::modern())
    } else {
        ("QEMU intel-iommu preset", EmuConfig::qemu())
    };
    let mut bed = Testbed::new(cfg);
    let unit = bed.inv.unit();
    let (ver, cap, ecap) = (unit.ver(), unit.cap(), unit.ecap());
    println!(
        "software VT-d ({name}), brought up: root table set, translation and queued invalidation on"
    );
    println!("  VER  {:#x}  (version {}.{})", ver.0, ver.major(), ver.minor());
    println!("  CAP  {:#x}", cap.0);
    println!("    domain ids (ND)           {:?} bits", cap.nd().id_bits());
    println!("    table depths (SAGAW)      {:?}", cap.sagaw());
    println!("    max guest width (MGAW)    {} bits", cap.mgaw().bits());
    println!(
        "    fault records (FRO, NFR)  at {:#x}, {}",
        cap.fro().byte_offset(),
        cap.nfr().count()
    );
    println!(
        "    page-selective inv. (PSI) {}, max mask (MAMV) {}",
        cap.psi(),
        cap.mamv().max_order()
    );
    println!(
        "    superpages (SLLPS)        2 MiB {}, 1 GiB {}",
        cap.sllps().supports(PageSize::Size2MiB),
        cap.sllps().supports(PageSize::Size1GiB)
    );
    println!("    caching mode (CM)         {}", cap.caching_mode());
    println!("  ECAP {:#x}", ecap.0);
    println!("    queued invalidation (QI)  {}", ecap.qi());
    println!("    interrupt remapping (IR)  {}", ecap.ir());
    println!("    pass-through (PT)         {}", ecap.pass_through());
    println!("    IOTLB registers (IRO)     at {:#x}", ecap.iro().iotlb() - 8);
    println!("    device TLB (DT)           {}", ecap.device_tlb());
    println!("    snoop control (SC)        {}", ecap.snoop_control());

    let emu = bed.emu;
    let space = IovaTree::new(Window::from_pages(1, (1 << 20) - 1).expect("window"), Vec::new());
    let config = MapperConfig {
        reuse: Reuse::SingleUse,
        flush: FlushConfig::strict(),
        domain: DOMAIN,
        dma_limit: Iova::new(1 << 32),
    };
    let platform = bed.platform(NoClock);
    let mut mapper = Mapper::with_capacity(
        platform,
        bed.table,
        space,
        bed.inv,
        NoPinning,
        config,
        Fixed::<64, 16>,
    )
    .expect("config");
    let buffer = PhysAddr::new(0x12_3450);
    let iova = mapper.map(buffer, 1500, Perm::WRITE).expect("map");
    println!(
        "\nmapped a 1500-byte receive buffer at {buffer:?} for device {DEVICE:?}: IOVA {iova:?}"
    );
    dma(emu, mapper.invalidator().unit(), iova, Access::Write);
    dma(emu, mapper.invalidator().unit(), iova, Access::Read);
    mapper.unmap(iova, 1500).expect("unmap");
    println!("unmapped (strict: invalidated before unmap returned)");
    dma(emu, mapper.invalidator().unit(), iova, Access::Write);
    let c = *mapper.counters();
    let i = *mapper.invalidator().counters();
    println!(
        "\ncounters: {} map, {} unmap, {} table updates; {} IQT writes, {} descriptors",
        c.maps,
        c.unmaps,
        c.table_updates,
        i.tail_writes,
        i.descriptors.iter().sum::<u64>()
    );
}

/// One device access at `iova`, and the fault records it left.
fn dma(emu: &Emu, unit: &mut RemappingUnit<&Emu>, iova: Iova, access: Access) {
    match emu.translate(DEVICE, iova, access) {
        Ok(phys) => println!("  device {access:?} at {iova:?} -> {phys:?}"),
        Err(fault) => println!("  device {access:?} at {iova:?} -> blocked: {:?}", fault.reason),
    }
    for r in unit.drain_faults() {
        println!(
            "    fault record {}: source {:?}, {:?} at {:#x}, reason {:#x}: {}",
            r.index,
            r.source,
            r.kind,
            r.fault_info,
            r.reason_code,
            r.reason().map_or("reserved", |r| r.description()),
        );
    }
}
