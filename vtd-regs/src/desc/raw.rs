//! The raw invalidation descriptor: 128 (or 256) bits as they sit in the
//! invalidation queue (VT-d section 6.5.2), and the type field every
//! descriptor shares.
//!
//! The queue is an array of descriptors in memory, little-endian. With
//! IQA_REG.DW = 0 each slot holds 128 bits; with IQA_REG.DW = 1 (required
//! for scalable-mode translation) each slot holds 256 bits (section 6.5.2,
//! 10.4.23). The queue base is 4 KiB aligned, so every 128-bit slot is 16-byte
//! aligned and every 256-bit slot 32-byte aligned; the types below carry
//! those alignments. Their fields are little-endian integers, so the byte
//! image is the hardware's on any host.

use zerocopy::byteorder::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::DescType;
use super::error::DescError;
use crate::ids::DomainId;
use crate::regs::bits::{field, with_field};
use crate::scope::Granularity;

/// One 128-bit invalidation descriptor, as software writes it to (and the
/// remapping unit fetches it from) a queue with IQA_REG.DW = 0.
///
/// Every descriptor type keeps all its fields in these 128 bits: quadword 0
/// (bits 63:0) and quadword 1 (bits 127:64).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(16))]
pub struct RawDescriptor {
    qw: [U64; 2],
}

static_assertions::const_assert_eq!(core::mem::size_of::<RawDescriptor>(), 16);
static_assertions::const_assert_eq!(core::mem::align_of::<RawDescriptor>(), 16);

impl RawDescriptor {
    /// A descriptor from its two quadwords (bits 63:0 and 127:64).
    #[inline]
    pub const fn new(qw0: u64, qw1: u64) -> Self {
        Self { qw: [U64::new(qw0), U64::new(qw1)] }
    }

    /// Quadword 0: bits 63:0, which hold the type.
    #[inline]
    pub const fn qw0(self) -> u64 {
        self.qw[0].get()
    }

    /// Quadword 1: bits 127:64.
    #[inline]
    pub const fn qw1(self) -> u64 {
        self.qw[1].get()
    }

    /// The descriptor as the 16 bytes of its queue slot.
    #[inline]
    pub fn to_le_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.qw0().to_le_bytes());
        out[8..].copy_from_slice(&self.qw1().to_le_bytes());
        out
    }

    /// The descriptor held in the 16 bytes of a queue slot.
    #[inline]
    pub fn from_le_bytes(bytes: [u8; 16]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = bytes;
        Self::new(
            u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        )
    }

    /// The 7-bit type code: bits 3:0 of quadword 0 as bits 3:0, and bits
    /// 11:9 (the upper type field added by revision 3.0) as bits 6:4.
    #[inline]
    pub const fn type_code(self) -> u8 {
        type_code(self.qw0())
    }
}

impl core::fmt::Debug for RawDescriptor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RawDescriptor({:#018x}, {:#018x})", self.qw0(), self.qw1())
    }
}

/// One 256-bit invalidation descriptor, the slot of a queue with
/// IQA_REG.DW = 1 (section 6.5.2).
///
/// Every descriptor type defined so far keeps its fields in the low 128
/// bits; for all of them bits 255:128 are reserved and must be zero, and the
/// unit reports an invalidation queue error (IQE) otherwise.
/// [`Descriptor::decode_wide`](super::Descriptor::decode_wide) checks that.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(32))]
pub struct RawDescriptor256 {
    qw: [U64; 4],
}

static_assertions::const_assert_eq!(core::mem::size_of::<RawDescriptor256>(), 32);
static_assertions::const_assert_eq!(core::mem::align_of::<RawDescriptor256>(), 32);

impl RawDescriptor256 {
    /// A descriptor from its four quadwords, lowest first.
    #[inline]
    pub const fn new(qw: [u64; 4]) -> Self {
        Self { qw: [U64::new(qw[0]), U64::new(qw[1]), U64::new(qw[2]), U64::new(qw[3])] }
    }

    /// `low` in a 256-bit slot, bits 255:128 zero.
    #[inline]
    pub const fn widen(low: RawDescriptor) -> Self {
        Self::new([low.qw0(), low.qw1(), 0, 0])
    }

    /// The four quadwords, lowest first.
    #[inline]
    pub const fn quadwords(self) -> [u64; 4] {
        [self.qw[0].get(), self.qw[1].get(), self.qw[2].get(), self.qw[3].get()]
    }

    /// Bits 127:0, where every descriptor type keeps its fields.
    #[inline]
    pub const fn low(self) -> RawDescriptor {
        RawDescriptor::new(self.qw[0].get(), self.qw[1].get())
    }

    /// Bits 255:128 (quadwords 2 and 3).
    #[inline]
    pub const fn high(self) -> [u64; 2] {
        [self.qw[2].get(), self.qw[3].get()]
    }

    /// The descriptor as the 32 bytes of its queue slot.
    #[inline]
    pub fn to_le_bytes(self) -> [u8; 32] {
        let mut out = [0; 32];
        for (chunk, q) in out.chunks_exact_mut(8).zip(self.quadwords()) {
            chunk.copy_from_slice(&q.to_le_bytes());
        }
        out
    }

    /// The descriptor held in the 32 bytes of a queue slot.
    #[inline]
    pub fn from_le_bytes(bytes: [u8; 32]) -> Self {
        let mut qw = [0u64; 4];
        for (q, chunk) in qw.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0; 8];
            b.copy_from_slice(chunk);
            *q = u64::from_le_bytes(b);
        }
        Self::new(qw)
    }
}

impl core::fmt::Debug for RawDescriptor256 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.quadwords();
        write!(f, "RawDescriptor256({a:#018x}, {b:#018x}, {c:#018x}, {d:#018x})")
    }
}

/// The 7-bit type code of quadword 0 (bits 3:0 and 11:9).
#[inline]
pub(crate) const fn type_code(qw0: u64) -> u8 {
    (field(qw0, 0, 3) | (field(qw0, 9, 11) << 4)) as u8
}

/// Quadword 0 of a descriptor of type `ty` with no other field set.
#[inline]
pub(crate) const fn with_type(ty: DescType) -> u64 {
    let code = ty.code() as u64;
    with_field(with_field(0, 0, 3, code), 9, 11, code >> 4)
}

/// Checks that `raw` is of type `ty` and has none of the `reserved` bits of
/// its quadwords set.
pub(crate) const fn check(
    raw: RawDescriptor,
    ty: DescType,
    reserved: [u64; 2],
) -> Result<(), DescError> {
    let found = raw.type_code();
    if found != ty.code() {
        return Err(DescError::TypeMismatch { expected: ty, found });
    }
    let q = [raw.qw0(), raw.qw1()];
    let mut i = 0;
    while i < 2 {
        let bits = q[i] & reserved[i];
        if bits != 0 {
            return Err(DescError::ReservedBits { qword: i as u8, bits });
        }
        i += 1;
    }
    Ok(())
}

/// Checks `raw` like [`check`] and reads the fields the context-cache and
/// IOTLB invalidate descriptors share (§6.5.2.1, §6.5.2.3): the granularity
/// (G, bits 5:4; 0 is reserved) and the domain id (DID, bits 31:16).
pub(crate) const fn check_domain_scoped(
    raw: RawDescriptor,
    ty: DescType,
    reserved: [u64; 2],
) -> Result<(Granularity, DomainId), DescError> {
    if let Err(e) = check(raw, ty, reserved) {
        return Err(e);
    }
    let qw0 = raw.qw0();
    let domain = DomainId::new(field(qw0, 16, 31) as u16);
    match Granularity::from_field(field(qw0, 4, 5) as u8) {
        Some(g) => Ok((g, domain)),
        None => Err(DescError::InvalidGranularity { ty, granularity: 0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_images_are_little_endian() {
        let d = RawDescriptor::new(0x0807_0605_0403_0201, 0x100f_0e0d_0c0b_0a09);
        let bytes: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        assert_eq!(d.to_le_bytes(), bytes);
        assert_eq!(d.as_bytes(), &bytes);
        assert_eq!(RawDescriptor::from_le_bytes(bytes), d);
        assert_eq!(RawDescriptor::read_from_bytes(&bytes).unwrap(), d);

        let w = RawDescriptor256::new([1, 2, 3, 4]);
        let wb = w.to_le_bytes();
        assert_eq!(w.as_bytes(), &wb);
        assert_eq!(RawDescriptor256::from_le_bytes(wb), w);
        assert_eq!(w.low(), RawDescriptor::new(1, 2));
        assert_eq!(w.high(), [3, 4]);
        assert_eq!(RawDescriptor256::widen(d).high(), [0, 0]);
    }

    #[test]
    fn type_code_has_two_parts() {
        // Bits 3:0 = 0x6, bits 11:9 = 0b101: code 0x56.
        assert_eq!(RawDescriptor::new(0xa06, 0).type_code(), 0x56);
        for ty in DescType::ALL {
            assert_eq!(type_code(with_type(ty)), ty.code());
        }
    }
}
