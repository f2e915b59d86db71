//! Helpers for register values: field extraction and insertion, and a macro
//! that gives a register newtype one `const fn` getter and one builder per
//! single-bit field.

/// Bits `lo..=hi` of `value`.
#[inline]
pub(crate) const fn field(value: u64, lo: u32, hi: u32) -> u64 {
    (value >> lo) & mask(hi - lo + 1)
}

/// `value` with bits `lo..=hi` replaced by `f` (truncated to the field).
#[inline]
pub(crate) const fn with_field(value: u64, lo: u32, hi: u32, f: u64) -> u64 {
    let m = mask(hi - lo + 1) << lo;
    (value & !m) | ((f << lo) & m)
}

/// A mask of the low `bits` bits.
#[inline]
pub(crate) const fn mask(bits: u32) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

/// Declares, for a `#[repr(transparent)]` newtype over an integer, a getter
/// `name(self) -> bool` and a builder `with_name(self, bool) -> Self` for each
/// listed single-bit field.
macro_rules! bit_fields {
    ($ty:ident: $raw:ty { $($(#[$doc:meta])* $bit:literal => $get:ident / $set:ident;)* }) => {
        impl $ty {
            $(
                $(#[$doc])*
                #[inline]
                pub const fn $get(self) -> bool {
                    (self.0 >> $bit) & 1 == 1
                }

                #[doc = concat!("This value with `", stringify!($get), "` set to `on`.")]
                #[inline]
                #[must_use]
                pub const fn $set(self, on: bool) -> Self {
                    let m: $raw = 1 << $bit;
                    Self(if on { self.0 | m } else { self.0 & !m })
                }
            )*
        }
    };
}
pub(crate) use bit_fields;
