//! How strictly a decoder reads the fields hardware tolerates.
//!
//! VT-d has hardware ignore some bits that a careful driver keeps clear:
//! the address bits below the 2^AM pages of a page-selective IOTLB
//! invalidation (§6.5.2.3, §6.5.2.4, and IVA_REG, §10.4.8.1) and the index
//! bits below the 2^IM entries of an index-selective interrupt entry cache
//! invalidation (§6.5.2.7). Real drivers set them: Linux before 6.9 rounds
//! a page-selective invalidation's page count up to a power of two and
//! keeps the unaligned start address, and hardware and QEMU flush the
//! aligned block that contains it. A remapping unit (an emulator, a
//! vIOMMU) must decode such a descriptor as hardware does; a driver that
//! checks its own descriptors wants every such bit reported.

/// The decoding mode of the descriptor decoders
/// ([`Descriptor::decode_with`](super::Descriptor::decode_with)).
///
/// Both modes refuse what hardware reports as an invalidation queue error
/// (reserved bits, unknown types, reserved granularities, §6.5.2.10); they
/// differ only on the low bits hardware ignores.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum Decoding {
    /// A decoded value means exactly what was encoded: an address not
    /// aligned to its address mask, or an interrupt index not aligned to
    /// its index mask, is an error ([`DescError::MisalignedAddress`],
    /// [`DescError::MisalignedIndex`]). What a driver checking its own
    /// descriptors, and the typed builders, use.
    ///
    /// [`DescError::MisalignedAddress`]: super::DescError::MisalignedAddress
    /// [`DescError::MisalignedIndex`]: super::DescError::MisalignedIndex
    #[default]
    Strict,
    /// As hardware decodes: the masked low bits are ignored, so the scope
    /// is the naturally aligned block that contains the address (or
    /// index). What a remapping unit uses.
    Hardware,
}

impl Decoding {
    /// `value` with its low `bits` bits cleared in [`Decoding::Hardware`]
    /// mode, unchanged in [`Decoding::Strict`] mode (where the caller's
    /// alignment check then refuses it) or when `bits` is 64 or more (no
    /// such mask exists: the caller refuses it).
    pub(crate) const fn align(self, value: u64, bits: u32) -> u64 {
        match self {
            Decoding::Strict => value,
            Decoding::Hardware => match 1u64.checked_shl(bits) {
                Some(size) => value & !(size - 1),
                None => value,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_mode_clears_the_masked_bits() {
        assert_eq!(Decoding::Strict.align(0x5001, 12), 0x5001);
        assert_eq!(Decoding::Hardware.align(0x5001, 12), 0x5000);
        assert_eq!(Decoding::Hardware.align(0x3000, 14), 0);
        assert_eq!(Decoding::Hardware.align(u64::MAX, 64), u64::MAX);
        assert_eq!(Decoding::default(), Decoding::Strict);
    }
}
