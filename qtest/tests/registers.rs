//! The identity of QEMU's remapping unit: VER, CAP and ECAP as QEMU 7.2 and
//! 10 report them, decoded with `vtd_regs` (§10.4.1-10.4.3).

mod common;

use viommu_qtest::{IommuOptions, QtestMmio};
use vtd_regs::regs::{Cap, Ecap, Sagaw, SecondLevelPageSizes, Ver};
use vtd_regs::{Mmio, PageSize};

#[test]
fn default_unit_identifies_itself() {
    let qemu = common::start(&IommuOptions::default());
    let mmio = QtestMmio::new(&qemu);

    let ver: Ver = mmio.read_reg();
    assert_eq!(ver, Ver(0x10));
    assert_eq!((ver.major(), ver.minor()), (1, 0));

    let cap: Cap = mmio.read_reg();
    assert_eq!(cap, Cap(0x00d2_008c_2226_0206), "{cap:?}");
    assert_eq!(cap.nd().id_bits(), Some(16));
    assert_eq!(cap.sagaw(), Sagaw::BITS39_L3);
    assert_eq!(cap.mgaw().bits(), 39);
    assert_eq!(cap.fro().byte_offset(), 0x220);
    assert_eq!(cap.nfr().count(), 1);
    assert_eq!(cap.sllps(), SecondLevelPageSizes::SIZE_2MIB | SecondLevelPageSizes::SIZE_1GIB);
    assert!(cap.sllps().supports(PageSize::Size1GiB));
    assert!(cap.psi());
    assert_eq!(cap.mamv().max_order(), 18);
    assert!(cap.drd() && cap.dwd());
    assert!(!cap.caching_mode() && !cap.rwbf() && !cap.afl() && !cap.zlr());

    let ecap: Ecap = mmio.read_reg();
    assert_eq!(ecap, Ecap(0xf0_0f4a), "{ecap:?}");
    assert!(ecap.qi() && ecap.ir() && ecap.pass_through());
    assert!(!ecap.coherent() && !ecap.device_tlb() && !ecap.snoop_control() && !ecap.eim());
    assert_eq!((ecap.iro().iva(), ecap.iro().iotlb()), (0xF0, 0xF8));
    assert_eq!(ecap.mhmv(), 0xf);
    assert!(!ecap.smts());
    qemu.check().unwrap();
}

#[test]
fn options_show_in_the_capabilities() {
    let options = IommuOptions {
        aw_bits: 48,
        caching_mode: true,
        device_iotlb: true,
        intremap: false,
        scalable_mode: false,
    };
    let qemu = common::start(&options);
    let mmio = QtestMmio::new(&qemu);
    let cap: Cap = mmio.read_reg();
    // aw-bits=48 alone gives 0x00d2008c222f0606; caching mode adds CAP.CM.
    assert_eq!(cap, Cap(0x00d2_008c_222f_0606).with_caching_mode(true), "{cap:?}");
    assert_eq!(cap.sagaw(), Sagaw::BITS39_L3 | Sagaw::BITS48_L4);
    assert_eq!(cap.mgaw().bits(), 48);
    assert!(cap.caching_mode());
    let ecap: Ecap = mmio.read_reg();
    // intremap=off drops ECAP.IR (and with it MHMV); device-iotlb sets DT.
    assert!(!ecap.ir() && ecap.device_tlb() && ecap.qi(), "{ecap:?}");
    assert_eq!(ecap, Ecap(0xf42).with_device_tlb(true));
    qemu.check().unwrap();
}
