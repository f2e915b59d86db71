//! The invalidation queue registers: IQH, IQT and IQA (§10.4.21
//! to §10.4.23), ICS (10.4.24) and IQERCD (10.4.29).

use super::bits::{bit_fields, field, with_field};
use crate::addr::PhysAddr;
use crate::ids::SourceId;
use crate::mmio::register;

/// The size of one descriptor in the queue, IQA.DW (§10.4.23).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum DescriptorWidth {
    /// 128-bit descriptors (DW = 0): the legacy format.
    #[default]
    Bits128,
    /// 256-bit descriptors (DW = 1): required in scalable mode.
    Bits256,
}

impl DescriptorWidth {
    /// Bytes per descriptor: 16 or 32.
    pub const fn bytes(self) -> usize {
        match self {
            DescriptorWidth::Bits128 => 16,
            DescriptorWidth::Bits256 => 32,
        }
    }
    /// log2 of [`bytes`](Self::bytes).
    pub const fn shift(self) -> u32 {
        match self {
            DescriptorWidth::Bits128 => 4,
            DescriptorWidth::Bits256 => 5,
        }
    }
    /// 64-bit words per descriptor slot: 2 or 4.
    pub const fn quadwords(self) -> usize {
        self.bytes() / 8
    }
}

/// IQA.QS (bits 2:0): the queue is 2^QS 4 KiB pages.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Default)]
#[repr(transparent)]
pub struct QueueSize(u8);

impl QueueSize {
    /// The size of 2^`order` pages, or `None` if `order` > 7.
    pub const fn from_order(order: u8) -> Option<Self> {
        if order > 7 { None } else { Some(Self(order)) }
    }
    /// The QS field: log2 of the number of pages.
    pub const fn order(self) -> u8 {
        self.0
    }
    /// The queue's size in bytes.
    pub const fn bytes(self) -> usize {
        4096 << self.0
    }
    /// How many descriptors of `width` the queue holds.
    pub const fn entries(self, width: DescriptorWidth) -> usize {
        self.bytes() >> width.shift()
    }
}

/// Invalidation queue address register (64-bit, offset 0x90), §10.4.23: IQA (bits 63:12), DW (bit 11) and QS (bits 2:0).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Iqa(pub u64);
register!(Iqa, super::offset::IQA, u64, ReadWrite);

impl Iqa {
    /// The value for a queue at `base` (4 KiB aligned; low bits dropped).
    pub const fn new(base: PhysAddr, size: QueueSize, width: DescriptorWidth) -> Self {
        Self(0).with_base(base).with_size(size).with_width(width)
    }
    /// IQA, bits 63:12: the queue's physical address.
    pub const fn base(self) -> PhysAddr {
        PhysAddr::new(self.0 & !0xfff)
    }
    /// This value with IQA replaced.
    #[must_use]
    pub const fn with_base(self, base: PhysAddr) -> Self {
        Self((self.0 & 0xfff) | (base.as_u64() & !0xfff))
    }
    /// DW, bit 11.
    pub const fn width(self) -> DescriptorWidth {
        if self.0 & (1 << 11) != 0 { DescriptorWidth::Bits256 } else { DescriptorWidth::Bits128 }
    }
    /// This value with DW replaced.
    #[must_use]
    pub const fn with_width(self, width: DescriptorWidth) -> Self {
        let dw = matches!(width, DescriptorWidth::Bits256) as u64;
        Self(with_field(self.0, 11, 11, dw))
    }
    /// QS, bits 2:0.
    pub const fn size(self) -> QueueSize {
        QueueSize(field(self.0, 0, 2) as u8)
    }
    /// This value with QS replaced.
    #[must_use]
    pub const fn with_size(self, size: QueueSize) -> Self {
        Self(with_field(self.0, 0, 2, size.0 as u64))
    }
    /// How many descriptors the queue holds.
    pub const fn entries(self) -> usize {
        self.size().entries(self.width())
    }
}

macro_rules! queue_pointer {
    ($(#[$doc:meta])* $ty:ident, $offset:ident, $access:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
        #[repr(transparent)]
        pub struct $ty(pub u64);
        register!($ty, super::offset::$offset, u64, $access);

        impl $ty {
            #[doc = concat!("The value pointing at descriptor `index` of a queue of `width`; ",
                "indices beyond the 19-bit byte offset are truncated.")]
            pub const fn from_index(index: usize, width: DescriptorWidth) -> Self {
                Self(((index as u64) << width.shift()) & 0x7fff0)
            }
            #[doc = concat!($field, " (bits 18:4) as a byte offset into the queue.")]
            pub const fn byte_offset(self) -> usize {
                (self.0 & 0x7fff0) as usize
            }
            /// The descriptor index for a queue of `width` (bit 4 is
            /// reserved with 256-bit descriptors and ignored).
            pub const fn index(self, width: DescriptorWidth) -> usize {
                self.byte_offset() >> width.shift()
            }
        }
    };
}

queue_pointer!(
    /// Invalidation queue head register (64-bit, RO, offset 0x80), §10.4.21: where the unit will fetch the next descriptor.
    Iqh, IQH, ReadOnly, "QH"
);
queue_pointer!(
    /// Invalidation queue tail register (64-bit, offset 0x88), §10.4.22: where software will write the next descriptor. Writing it
    /// hands the descriptors between head and tail to the unit.
    Iqt, IQT, ReadWrite, "QT"
);

/// Invalidation completion status register (32-bit, offset 0x9C), §10.4.24.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Ics(pub u32);
register!(Ics, super::offset::ICS, u32, ReadWrite);

bit_fields!(Ics: u32 {
    /// IWC (bit 0, RW1C): an invalidation wait descriptor with IF set completed.
    0 => iwc / with_iwc;
});

/// IQERCD.IQEI (bits 3:0): why FSTS.IQE was set (§10.4.29).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum QueueErrorInfo {
    /// 0: no detail (older hardware).
    NotAvailable,
    /// 1: the tail pointer is invalid (beyond the queue, or bit 4 set with
    /// 256-bit descriptors).
    InvalidTail,
    /// 2: fetching a descriptor failed.
    FetchError,
    /// 3: a descriptor has an invalid type.
    InvalidType,
    /// 4: a descriptor of a valid type has a reserved field set.
    ReservedField,
    /// 5: IQA.DW selects a width the unit cannot use.
    InvalidWidth,
    /// Any other value, reserved by the specification.
    Reserved(u8),
}

impl QueueErrorInfo {
    /// Decodes the 4-bit field.
    pub const fn from_field(iqei: u8) -> Self {
        match iqei & 0xf {
            0 => QueueErrorInfo::NotAvailable,
            1 => QueueErrorInfo::InvalidTail,
            2 => QueueErrorInfo::FetchError,
            3 => QueueErrorInfo::InvalidType,
            4 => QueueErrorInfo::ReservedField,
            5 => QueueErrorInfo::InvalidWidth,
            other => QueueErrorInfo::Reserved(other),
        }
    }
    /// The 4-bit encoding.
    pub const fn field(self) -> u8 {
        match self {
            QueueErrorInfo::NotAvailable => 0,
            QueueErrorInfo::InvalidTail => 1,
            QueueErrorInfo::FetchError => 2,
            QueueErrorInfo::InvalidType => 3,
            QueueErrorInfo::ReservedField => 4,
            QueueErrorInfo::InvalidWidth => 5,
            QueueErrorInfo::Reserved(v) => v & 0xf,
        }
    }
}

/// Invalidation queue error record register (64-bit, RO, offset 0xB0),
/// §10.4.29. Each field is valid only while its FSTS bit is set.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct Iqercd(pub u64);
register!(Iqercd, super::offset::IQERCD, u64, ReadOnly);

impl Iqercd {
    /// ICESID (bits 63:48): the device whose completion caused FSTS.ICE.
    pub const fn icesid(self) -> SourceId {
        SourceId::from_raw(field(self.0, 48, 63) as u16)
    }
    /// This value with ICESID replaced.
    #[must_use]
    pub const fn with_icesid(self, sid: SourceId) -> Self {
        Self(with_field(self.0, 48, 63, sid.raw() as u64))
    }
    /// ITESID (bits 47:32): the device whose invalidation timed out (FSTS.ITE).
    pub const fn itesid(self) -> SourceId {
        SourceId::from_raw(field(self.0, 32, 47) as u16)
    }
    /// This value with ITESID replaced.
    #[must_use]
    pub const fn with_itesid(self, sid: SourceId) -> Self {
        Self(with_field(self.0, 32, 47, sid.raw() as u64))
    }
    /// IQEI (bits 3:0): why FSTS.IQE was set.
    pub const fn iqei(self) -> QueueErrorInfo {
        QueueErrorInfo::from_field(field(self.0, 0, 3) as u8)
    }
    /// This value with IQEI replaced.
    #[must_use]
    pub const fn with_iqei(self, info: QueueErrorInfo) -> Self {
        Self(with_field(self.0, 0, 3, info.field() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iqa_encodings() {
        // Linux qi enable: IQA = virt_to_phys(desc) | DW (1 << 11) | qi->order.
        let q = Iqa::new(
            PhysAddr::new(0x1_2345_6000),
            QueueSize::from_order(0).unwrap(),
            DescriptorWidth::Bits256,
        );
        assert_eq!(q.0, 0x1_2345_6800);
        assert_eq!(q.entries(), 128);
        let q = Iqa(0x1000_0002);
        assert_eq!(q.width(), DescriptorWidth::Bits128);
        assert_eq!(q.size().bytes(), 16384);
        assert_eq!(q.entries(), 1024);
        assert_eq!(q.base(), PhysAddr::new(0x1000_0000));
        assert_eq!(QueueSize::from_order(8), None);
        assert_eq!(Iqa(u64::MAX).entries(), (4096 << 7) / 32);
    }

    #[test]
    fn head_and_tail() {
        // Linux writes IQT = index << shift (4 for 128-bit, 5 for 256-bit descriptors).
        assert_eq!(Iqt::from_index(3, DescriptorWidth::Bits128).0, 0x30);
        assert_eq!(Iqt::from_index(3, DescriptorWidth::Bits256).0, 0x60);
        assert_eq!(Iqh(0x60).index(DescriptorWidth::Bits256), 3);
        assert_eq!(Iqh(0x70).index(DescriptorWidth::Bits256), 3);
        assert_eq!(Iqh(0x70).index(DescriptorWidth::Bits128), 7);
        // Bits outside 18:4 are reserved and not part of the offset.
        assert_eq!(Iqh(0xffff_ffff_ffff_ffff).byte_offset(), 0x7fff0);
        assert_eq!(Iqt::from_index(1 << 15, DescriptorWidth::Bits128).0, 0);
    }

    #[test]
    fn error_record() {
        let e = Iqercd(0x0010_0008_0000_0004);
        assert_eq!(e.icesid(), SourceId::from_raw(0x10));
        assert_eq!(e.itesid(), SourceId::from_raw(0x08));
        assert_eq!(e.iqei(), QueueErrorInfo::ReservedField);
        assert_eq!(Iqercd(0).with_iqei(QueueErrorInfo::InvalidTail).0, 1);
        assert_eq!(Iqercd(9).iqei(), QueueErrorInfo::Reserved(9));
        for v in 0..16 {
            assert_eq!(QueueErrorInfo::from_field(v).field(), v);
        }
        assert!(Ics(1).iwc());
    }
}
