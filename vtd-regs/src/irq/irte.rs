//! Interrupt remapping table entries (IRTEs): 128 bits each, in the table
//! IRTA_REG points at (§5.1.3), in one of two formats chosen by bit 15
//! (IM): remapped (§9.10) or posted (§9.11).
//!
//! Remapped format, bits: P 0, FPD 1, DM 2, RH 3, TM 4, DLM 7:5, AVL 11:8,
//! reserved 14:12, IM 15 (0), V 23:16, reserved 31:24, DST 63:32 (xAPIC
//! mode: the APIC id in 47:40, bits 39:32 and 63:48 reserved), SID 79:64,
//! SQ 81:80, SVT 83:82, reserved 127:84.
//!
//! Posted format, bits: P 0, FPD 1, reserved 7:2, AVL 11:8, reserved
//! 13:12, URG 14, IM 15 (1), VV 23:16, reserved 37:24, PDA 63:38 (address
//! bits 31:6), SID, SQ, SVT as above, reserved 95:84, PDA 127:96 (address
//! bits 63:32).
//!
//! The same layout as Linux's `struct irte` (include/linux/dmar.h) and
//! QEMU's `VTD_IR_TableEntry`.

use core::fmt;

use zerocopy::byteorder::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::delivery::{DeliveryMode, DestinationMode, Interrupt, InterruptMode, TriggerMode};
use crate::addr::PhysAddr;
use crate::ids::SourceId;
use crate::regs::bits::{field, with_field};

/// One interrupt remapping table entry as it sits in the table.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(16))]
pub struct RawIrte {
    qw: [U64; 2],
}

static_assertions::const_assert_eq!(core::mem::size_of::<RawIrte>(), 16);
static_assertions::const_assert_eq!(core::mem::align_of::<RawIrte>(), 16);

/// Reserved bits of the low quadword of a remapped-format entry, in either
/// mode: 14:12 and 31:24.
const REMAPPED_RESERVED_LO: u64 = 0x0000_0000_ff00_7000;
/// Further reserved bits in xAPIC mode: destination bits 39:32 and 63:48.
const XAPIC_RESERVED_LO: u64 = 0xffff_00ff_0000_0000;
/// Reserved bits of the high quadword of a remapped-format entry: 127:84.
const REMAPPED_RESERVED_HI: u64 = 0xffff_ffff_fff0_0000;
/// Reserved bits of the low quadword of a posted-format entry: 7:2, 13:12,
/// 37:24.
const POSTED_RESERVED_LO: u64 = 0x0000_003f_ff00_30fc;
/// Reserved bits of the high quadword of a posted-format entry: 95:84.
const POSTED_RESERVED_HI: u64 = 0x0000_0000_fff0_0000;

/// Bit 15 (IM): 1 for the posted format.
const IM: u64 = 1 << 15;

impl RawIrte {
    /// Bytes per entry.
    pub const SIZE: u64 = 16;

    /// An entry from its two quadwords (bits 63:0 and 127:64).
    pub const fn new(lo: u64, hi: u64) -> Self {
        Self { qw: [U64::new(lo), U64::new(hi)] }
    }
    /// The not-present entry, all zero.
    pub const ZERO: Self = Self::new(0, 0);

    /// Bits 63:0.
    pub const fn lo(self) -> u64 {
        self.qw[0].get()
    }
    /// Bits 127:64.
    pub const fn hi(self) -> u64 {
        self.qw[1].get()
    }
    /// P (bit 0): the entry is present.
    pub const fn present(self) -> bool {
        self.lo() & 1 != 0
    }
    /// FPD (bit 1): faults of requests through this entry are not recorded
    /// (evaluated whatever P says, §9.10).
    pub const fn fpd(self) -> bool {
        self.lo() & 2 != 0
    }
    /// IM (bit 15): the entry is in the posted format (§9.11).
    pub const fn posted(self) -> bool {
        self.lo() & IM != 0
    }

    /// Decodes the entry as a unit in `mode` does (§5.1.4): a not-present
    /// entry, or one of the two formats with every reserved field zero
    /// (else [`IrteError`], fault 24h on a unit).
    pub const fn decode(self, mode: InterruptMode) -> Result<Irte, IrteError> {
        if !self.present() {
            return Ok(Irte::NotPresent { fpd: self.fpd() });
        }
        if self.posted() {
            match PostedIrte::decode(self) {
                Ok(p) => Ok(Irte::Posted(p)),
                Err(e) => Err(e),
            }
        } else {
            match RemappedIrte::decode(self, mode) {
                Ok(r) => Ok(Irte::Remapped(r)),
                Err(e) => Err(e),
            }
        }
    }
}

impl fmt::Debug for RawIrte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawIrte({:#018x}_{:016x})", self.hi(), self.lo())
    }
}

/// Why an entry is not a valid IRTE.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum IrteError {
    /// Reserved bits are set: the offending bits of each quadword.
    Reserved {
        /// Bits of quadword 0.
        lo: u64,
        /// Bits of quadword 1.
        hi: u64,
    },
    /// DLM holds a reserved encoding (011b or 110b).
    ReservedDeliveryMode(u8),
    /// SVT holds the reserved encoding 11b.
    ReservedSourceValidation,
    /// A destination id wider than the interrupt mode allows (above 255 in
    /// xAPIC mode).
    DestinationTooWide(u32),
    /// A posted-interrupt descriptor address not aligned to 64 bytes.
    MisalignedDescriptor(PhysAddr),
}

impl fmt::Display for IrteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reserved { lo, hi } => {
                write!(f, "reserved IRTE bits set: {hi:#x}:{lo:#x}")
            }
            Self::ReservedDeliveryMode(m) => write!(f, "reserved delivery mode {m:#05b}"),
            Self::ReservedSourceValidation => f.write_str("reserved source validation type 11b"),
            Self::DestinationTooWide(d) => write!(f, "destination {d:#x} too wide for xAPIC"),
            Self::MisalignedDescriptor(a) => {
                write!(f, "posted descriptor {:#x} not 64-byte aligned", a.as_u64())
            }
        }
    }
}

impl core::error::Error for IrteError {}

/// A decoded entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Irte {
    /// P = 0: requests through the entry fault (22h) unless FPD.
    NotPresent {
        /// FPD.
        fpd: bool,
    },
    /// A remapped-format entry (§9.10).
    Remapped(RemappedIrte),
    /// A posted-format entry (§9.11).
    Posted(PostedIrte),
}

/// SQ (bits 81:80): which requester-id bits SVT = 01b compares.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
#[repr(u8)]
pub enum SidQualifier {
    /// 00b: all 16 bits.
    #[default]
    All = 0,
    /// 01b: all but bit 2 (function number bit 2).
    IgnoreBit2 = 1,
    /// 10b: all but bits 2:1.
    IgnoreBits2To1 = 2,
    /// 11b: all but bits 2:0 (any function of the device).
    IgnoreBits2To0 = 3,
}

impl SidQualifier {
    /// Decodes the 2-bit field.
    pub const fn from_field(f: u8) -> Self {
        match f & 3 {
            0 => Self::All,
            1 => Self::IgnoreBit2,
            2 => Self::IgnoreBits2To1,
            _ => Self::IgnoreBits2To0,
        }
    }
    /// The requester-id bits compared.
    pub const fn mask(self) -> u16 {
        match self {
            Self::All => 0xffff,
            Self::IgnoreBit2 => 0xfffb,
            Self::IgnoreBits2To1 => 0xfff9,
            Self::IgnoreBits2To0 => 0xfff8,
        }
    }
}

/// SVT, SQ and SID (bits 83:64): which requesters may use the entry
/// (§9.10). Fault 26h for the others.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum SourceValidation {
    /// SVT = 00b: any requester.
    None,
    /// SVT = 01b: requesters whose id equals `sid` in the bits `qualifier`
    /// selects.
    Requester {
        /// The expected requester id.
        sid: SourceId,
        /// Which bits are compared.
        qualifier: SidQualifier,
    },
    /// SVT = 10b: requesters on a bus from `start` to `end` (SID bits 15:8
    /// and 7:0): devices behind a PCIe-to-PCI bridge, which may take the
    /// bridge's id.
    Bus {
        /// The first bus (SID bits 15:8).
        start: u8,
        /// The last bus (SID bits 7:0).
        end: u8,
    },
}

impl SourceValidation {
    /// Exactly `sid`: what a driver programs for a PCIe function (Linux's
    /// `set_msi_sid` with SQ_ALL_16).
    pub const fn exact(sid: SourceId) -> Self {
        Self::Requester { sid, qualifier: SidQualifier::All }
    }

    /// Whether `requester` passes.
    pub const fn permits(self, requester: SourceId) -> bool {
        match self {
            Self::None => true,
            Self::Requester { sid, qualifier } => {
                let m = qualifier.mask();
                requester.raw() & m == sid.raw() & m
            }
            Self::Bus { start, end } => start <= requester.bus() && requester.bus() <= end,
        }
    }

    /// Decodes bits 83:64.
    const fn decode(hi: u64) -> Result<Self, IrteError> {
        let sid = field(hi, 0, 15) as u16;
        match field(hi, 18, 19) {
            0 => Ok(Self::None),
            1 => Ok(Self::Requester {
                sid: SourceId::from_raw(sid),
                qualifier: SidQualifier::from_field(field(hi, 16, 17) as u8),
            }),
            2 => Ok(Self::Bus { start: (sid >> 8) as u8, end: sid as u8 }),
            _ => Err(IrteError::ReservedSourceValidation),
        }
    }

    /// Bits 83:64 (SQ is zero unless validating a requester id).
    const fn encode(self) -> u64 {
        match self {
            Self::None => 0,
            Self::Requester { sid, qualifier } => {
                sid.raw() as u64 | (qualifier as u64) << 16 | 1 << 18
            }
            Self::Bus { start, end } => (start as u64) << 8 | end as u64 | 2 << 18,
        }
    }
}

/// A remapped-format entry (§9.10): the interrupt it produces and who may
/// send it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct RemappedIrte {
    /// FPD: faults through this entry are not recorded.
    pub fpd: bool,
    /// The interrupt delivered.
    pub interrupt: Interrupt,
    /// AVL (bits 11:8), left to software.
    pub available: u8,
    /// Source validation.
    pub source: SourceValidation,
}

impl RemappedIrte {
    /// An entry delivering `interrupt` for requests from `source` only
    /// (the default a driver should program).
    pub const fn for_device(source: SourceId, interrupt: Interrupt) -> Self {
        Self { fpd: false, interrupt, available: 0, source: SourceValidation::exact(source) }
    }

    /// The entry, present, in `mode`'s destination form (xAPIC: the 8-bit
    /// id in bits 47:40; x2APIC: bits 63:32).
    pub const fn encode(&self, mode: InterruptMode) -> Result<RawIrte, IrteError> {
        let i = self.interrupt;
        if i.destination > mode.max_destination() {
            return Err(IrteError::DestinationTooWide(i.destination));
        }
        let dst = match mode {
            InterruptMode::XApic => (i.destination as u64) << 8,
            InterruptMode::X2Apic => i.destination as u64,
        };
        let mut lo = 1 | (self.fpd as u64) << 1;
        lo |= i.destination_mode.bit() << 2 | (i.redirection_hint as u64) << 3;
        lo |= i.trigger.bit() << 4 | (i.delivery as u64) << 5;
        lo = with_field(lo, 8, 11, self.available as u64);
        lo |= (i.vector as u64) << 16 | dst << 32;
        Ok(RawIrte::new(lo, self.source.encode()))
    }

    /// Decodes a present remapped-format entry (IM = 0).
    const fn decode(raw: RawIrte, mode: InterruptMode) -> Result<Self, IrteError> {
        let (lo, hi) = (raw.lo(), raw.hi());
        let reserved_lo = match mode {
            InterruptMode::XApic => REMAPPED_RESERVED_LO | XAPIC_RESERVED_LO,
            InterruptMode::X2Apic => REMAPPED_RESERVED_LO,
        };
        if lo & reserved_lo != 0 || hi & REMAPPED_RESERVED_HI != 0 {
            return Err(IrteError::Reserved {
                lo: lo & reserved_lo,
                hi: hi & REMAPPED_RESERVED_HI,
            });
        }
        let dlm = field(lo, 5, 7) as u8;
        let Some(delivery) = DeliveryMode::from_field(dlm) else {
            return Err(IrteError::ReservedDeliveryMode(dlm));
        };
        let source = match SourceValidation::decode(hi) {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        let dst = field(lo, 32, 63) as u32;
        let destination = match mode {
            InterruptMode::XApic => dst >> 8,
            InterruptMode::X2Apic => dst,
        };
        Ok(Self {
            fpd: raw.fpd(),
            interrupt: Interrupt {
                vector: field(lo, 16, 23) as u8,
                delivery,
                trigger: TriggerMode::from_bit(lo & 1 << 4 != 0),
                destination_mode: DestinationMode::from_bit(lo & 1 << 2 != 0),
                redirection_hint: lo & 1 << 3 != 0,
                destination,
            },
            available: field(lo, 8, 11) as u8,
            source,
        })
    }
}

/// A posted-format entry (§9.11): the interrupt is recorded in a posted
/// interrupt descriptor for a virtual CPU instead of being delivered.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PostedIrte {
    /// FPD.
    pub fpd: bool,
    /// URG (bit 14): notify even while the descriptor's SN is set.
    pub urgent: bool,
    /// VV (bits 23:16): the virtual vector posted in the descriptor's PIR.
    pub vector: u8,
    /// PDA: the 64-byte aligned posted-interrupt descriptor (§9.12).
    pub descriptor: PhysAddr,
    /// AVL (bits 11:8).
    pub available: u8,
    /// Source validation.
    pub source: SourceValidation,
}

impl PostedIrte {
    /// The entry, present, with IM set.
    pub const fn encode(&self) -> Result<RawIrte, IrteError> {
        let pda = self.descriptor.as_u64();
        if pda & 63 != 0 {
            return Err(IrteError::MisalignedDescriptor(self.descriptor));
        }
        let mut lo = 1 | (self.fpd as u64) << 1 | (self.urgent as u64) << 14 | IM;
        lo = with_field(lo, 8, 11, self.available as u64);
        lo |= (self.vector as u64) << 16 | (pda & 0xffff_ffc0) << 32;
        let hi = self.source.encode() | (pda >> 32) << 32;
        Ok(RawIrte::new(lo, hi))
    }

    /// Decodes a present posted-format entry (IM = 1).
    const fn decode(raw: RawIrte) -> Result<Self, IrteError> {
        let (lo, hi) = (raw.lo(), raw.hi());
        if lo & POSTED_RESERVED_LO != 0 || hi & POSTED_RESERVED_HI != 0 {
            return Err(IrteError::Reserved {
                lo: lo & POSTED_RESERVED_LO,
                hi: hi & POSTED_RESERVED_HI,
            });
        }
        let source = match SourceValidation::decode(hi & 0xf_ffff) {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        Ok(Self {
            fpd: raw.fpd(),
            urgent: lo & 1 << 14 != 0,
            vector: field(lo, 16, 23) as u8,
            descriptor: PhysAddr::new((hi >> 32) << 32 | (lo >> 32) & 0xffff_ffc0),
            available: field(lo, 8, 11) as u8,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> SourceId {
        SourceId::new(0, 1, 0).unwrap()
    }

    #[test]
    fn remapped_known_answers() {
        // Linux's `struct irte` for a fixed, edge, physical interrupt,
        // vector 0x31 to APIC 2 in xAPIC mode with SVT_VERIFY_SID_SQ and
        // SQ_ALL_16 for 00:01.0: present (bit 0), vector << 16, dest_id =
        // IRTE_DEST(2) = 2 << 8 in bits 63:32; sid 0x0008, svt 1 << 18.
        let e = RemappedIrte::for_device(dev(), Interrupt::fixed(2, 0x31));
        let raw = e.encode(InterruptMode::XApic).unwrap();
        assert_eq!((raw.lo(), raw.hi()), (0x0000_0200_0031_0001, 0x0000_0000_0004_0008));
        assert_eq!(raw.decode(InterruptMode::XApic), Ok(Irte::Remapped(e)));
        // The same in x2APIC mode: dest_id = 2 (IRTE_DEST without the shift).
        let raw = e.encode(InterruptMode::X2Apic).unwrap();
        assert_eq!(raw.lo(), 0x0000_0002_0031_0001);
        // QEMU's vtd_remap_irq_get reads the xAPIC id from dest_id & 0xff00.
        let x2 = RawIrte::new(0x1234_5678_0031_0001, 0);
        let Ok(Irte::Remapped(r)) = x2.decode(InterruptMode::X2Apic) else { panic!() };
        assert_eq!(r.interrupt.destination, 0x1234_5678);
        assert_eq!(r.source, SourceValidation::None);
        // Every field: FPD, DM, RH, TM, DLM (lowest priority), AVL.
        let all = RemappedIrte {
            fpd: true,
            interrupt: Interrupt {
                vector: 0xef,
                delivery: DeliveryMode::LowestPriority,
                trigger: TriggerMode::Level,
                destination_mode: DestinationMode::Logical,
                redirection_hint: true,
                destination: 0xff,
            },
            available: 0xa,
            source: SourceValidation::Bus { start: 1, end: 3 },
        };
        let raw = all.encode(InterruptMode::XApic).unwrap();
        assert_eq!(raw.lo(), 0x0000_ff00_00ef_0a3f);
        assert_eq!(raw.hi(), 0x0008_0103);
        assert_eq!(raw.decode(InterruptMode::XApic), Ok(Irte::Remapped(all)));
    }

    #[test]
    fn reserved_fields_and_encodings() {
        let mode = InterruptMode::XApic;
        // Bits 14:12, 31:24, and in xAPIC mode 39:32 and 63:48.
        for bit in [12, 14, 24, 31, 32, 39, 48, 63] {
            let e = RawIrte::new(1 | 1 << bit, 0).decode(mode);
            assert_eq!(e, Err(IrteError::Reserved { lo: 1 << bit, hi: 0 }), "bit {bit}");
        }
        // x2APIC mode uses the whole destination.
        assert!(RawIrte::new(1 | 1 << 63, 0).decode(InterruptMode::X2Apic).is_ok());
        assert_eq!(
            RawIrte::new(1, 1 << (84 - 64)).decode(mode),
            Err(IrteError::Reserved { lo: 0, hi: 1 << (84 - 64) })
        );
        assert_eq!(
            RawIrte::new(1 | 3 << 5, 0).decode(mode),
            Err(IrteError::ReservedDeliveryMode(3))
        );
        assert_eq!(RawIrte::new(1, 3 << 18).decode(mode), Err(IrteError::ReservedSourceValidation));
        // Not present: nothing else is looked at, FPD is.
        assert_eq!(RawIrte::new(!1, !0).decode(mode), Ok(Irte::NotPresent { fpd: true }));
        assert_eq!(RawIrte::ZERO.decode(mode), Ok(Irte::NotPresent { fpd: false }));
        assert_eq!(
            RemappedIrte::for_device(dev(), Interrupt::fixed(256, 1)).encode(mode),
            Err(IrteError::DestinationTooWide(256))
        );
    }

    #[test]
    fn source_validation() {
        // QEMU's vtd_svt_mask: 0xffff, 0xfffb, 0xfff9, 0xfff8 for SQ 0..3.
        let masks: [u16; 4] = [0xffff, 0xfffb, 0xfff9, 0xfff8];
        for (q, m) in masks.iter().enumerate() {
            assert_eq!(SidQualifier::from_field(q as u8).mask(), *m);
        }
        let f0 = SourceId::new(3, 4, 0).unwrap();
        let f5 = SourceId::new(3, 4, 5).unwrap();
        let exact = SourceValidation::exact(f0);
        assert!(exact.permits(f0) && !exact.permits(f5));
        let any_fn =
            SourceValidation::Requester { sid: f0, qualifier: SidQualifier::IgnoreBits2To0 };
        assert!(any_fn.permits(f5) && !any_fn.permits(SourceId::new(3, 5, 0).unwrap()));
        // Linux's set_irte_verify_bus(start, end) puts start in SID 15:8.
        let bus = SourceValidation::Bus { start: 2, end: 4 };
        assert_eq!(bus.encode(), 0x8_0204);
        assert_eq!(SourceValidation::decode(0x8_0204), Ok(bus));
        assert!(bus.permits(SourceId::new(3, 0, 0).unwrap()));
        assert!(!bus.permits(SourceId::new(5, 0, 0).unwrap()));
        assert!(!bus.permits(SourceId::new(1, 0, 0).unwrap()));
        assert!(SourceValidation::None.permits(f5));
    }

    #[test]
    fn posted_known_answers() {
        // Linux's `struct irte` posted fields: p_urgent bit 14, p_pst bit
        // 15, p_vector 23:16, pda_l (address >> 6) in 63:38, pda_h
        // (address >> 32) in 127:96.
        let p = PostedIrte {
            fpd: false,
            urgent: true,
            vector: 0x45,
            descriptor: PhysAddr::new(0x0000_0012_3456_7840),
            available: 0,
            source: SourceValidation::exact(dev()),
        };
        let raw = p.encode().unwrap();
        assert_eq!(raw.lo(), 0x3456_7840_0045_c001);
        assert_eq!(raw.lo() >> 38, 0x3456_7840 >> 6);
        assert_eq!(raw.hi(), 0x0000_0012_0004_0008);
        assert_eq!(raw.decode(InterruptMode::X2Apic), Ok(Irte::Posted(p)));
        assert!(raw.posted());
        let mis = PostedIrte { descriptor: PhysAddr::new(0x1020), ..p };
        assert_eq!(mis.encode(), Err(IrteError::MisalignedDescriptor(PhysAddr::new(0x1020))));
        for bit in [2, 7, 12, 13, 24, 37] {
            let raw = RawIrte::new(1 | IM | 1 << bit, 0);
            assert_eq!(
                raw.decode(InterruptMode::XApic),
                Err(IrteError::Reserved { lo: 1 << bit, hi: 0 })
            );
        }
        assert!(RawIrte::new(1 | IM, 1 << (84 - 64)).decode(InterruptMode::XApic).is_err());
        assert!(RawIrte::new(1 | IM, 1 << (96 - 64)).decode(InterruptMode::XApic).is_ok());
    }
}
