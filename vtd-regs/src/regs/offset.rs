//! Byte offsets of the registers in a remapping unit's register page (§10.4, "Register Descriptions", table of registers).
//!
//! The IOTLB registers sit at the offset ECAP.IRO reports and the fault
//! recording registers at CAP.FRO; see [`IotlbRegisterOffset`](super::IotlbRegisterOffset)
//! and [`FaultRecordingOffset`](super::FaultRecordingOffset).

/// Version register (32-bit), §10.4.1.
pub const VER: usize = 0x00;
/// Capability register (64-bit), §10.4.2.
pub const CAP: usize = 0x08;
/// Extended capability register (64-bit), §10.4.3.
pub const ECAP: usize = 0x10;
/// Global command register (32-bit), §10.4.4.
pub const GCMD: usize = 0x18;
/// Global status register (32-bit), §10.4.5.
pub const GSTS: usize = 0x1C;
/// Root table address register (64-bit), §10.4.6.
pub const RTADDR: usize = 0x20;
/// Context command register (64-bit), §10.4.7.
pub const CCMD: usize = 0x28;
/// Fault status register (32-bit), §10.4.9.
pub const FSTS: usize = 0x34;
/// Fault event control register (32-bit), §10.4.10.
pub const FECTL: usize = 0x38;
/// Fault event data register (32-bit), §10.4.11.
pub const FEDATA: usize = 0x3C;
/// Fault event address register (32-bit), §10.4.12.
pub const FEADDR: usize = 0x40;
/// Fault event upper address register (32-bit), §10.4.13.
pub const FEUADDR: usize = 0x44;
/// Advanced fault log register (64-bit), §10.4.15.
pub const AFLOG: usize = 0x58;
/// Protected memory enable register (32-bit), §10.4.16.
pub const PMEN: usize = 0x64;
/// Protected low-memory base register (32-bit), §10.4.17.
pub const PLMBASE: usize = 0x68;
/// Protected low-memory limit register (32-bit), §10.4.18.
pub const PLMLIMIT: usize = 0x6C;
/// Protected high-memory base register (64-bit), §10.4.19.
pub const PHMBASE: usize = 0x70;
/// Protected high-memory limit register (64-bit), §10.4.20.
pub const PHMLIMIT: usize = 0x78;
/// Invalidation queue head register (64-bit), §10.4.21.
pub const IQH: usize = 0x80;
/// Invalidation queue tail register (64-bit), §10.4.22.
pub const IQT: usize = 0x88;
/// Invalidation queue address register (64-bit), §10.4.23.
pub const IQA: usize = 0x90;
/// Invalidation completion status register (32-bit), §10.4.24.
pub const ICS: usize = 0x9C;
/// Invalidation event control register (32-bit), §10.4.25.
pub const IECTL: usize = 0xA0;
/// Invalidation event data register (32-bit), §10.4.26.
pub const IEDATA: usize = 0xA4;
/// Invalidation event address register (32-bit), §10.4.27.
pub const IEADDR: usize = 0xA8;
/// Invalidation event upper address register (32-bit), §10.4.28.
pub const IEUADDR: usize = 0xAC;
/// Invalidation queue error record register (64-bit), §10.4.29.
pub const IQERCD: usize = 0xB0;
/// Interrupt remapping table address register (64-bit), §10.4.30.
pub const IRTA: usize = 0xB8;

/// Size of the register page every offset lies in.
pub const REGISTER_PAGE_SIZE: usize = 0x1000;
