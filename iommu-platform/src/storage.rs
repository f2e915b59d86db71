//! Where a component keeps its bounded collections: inline arrays whose
//! length is a const generic ([`Inline`], no heap), or, with the `alloc`
//! feature, heap arrays whose length is chosen at run time ([`Boxed`]).
//!
//! The flush queue of `invalidation` and the registry of `teardown` are
//! generic over a [`Storage`], so the same code serves a unikernel without
//! a heap and a kernel that sizes its mapping layers at boot.

/// A provider of arrays of one length.
pub trait Storage {
    /// An array of [`len`](Self::len) elements of `T`.
    type Array<T>: AsRef<[T]> + AsMut<[T]>;

    /// The length when it is part of the type (`Inline<N>`: `Some(N)`),
    /// so a bad one is refused at compile time; `None` for a run-time
    /// length.
    const FIXED_LEN: Option<usize>;

    /// The length of every array.
    fn len(&self) -> usize;

    /// Whether the arrays are empty (a capacity of zero).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An array whose elements are `fill()`.
    fn array<T>(&self, fill: impl FnMut() -> T) -> Self::Array<T>;

    /// An array whose elements are `value`: for `Copy` elements, built
    /// in place without a temporary per element (large inline arrays stay
    /// off the stack's deep end in debug builds).
    fn filled<T: Copy>(&self, value: T) -> Self::Array<T>;
}

/// Arrays of `N` elements, inline (no heap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inline<const N: usize>;

impl<const N: usize> Storage for Inline<N> {
    type Array<T> = [T; N];
    const FIXED_LEN: Option<usize> = Some(N);

    #[inline]
    fn len(&self) -> usize {
        N
    }

    fn array<T>(&self, mut fill: impl FnMut() -> T) -> [T; N] {
        core::array::from_fn(|_| fill())
    }

    #[inline]
    fn filled<T: Copy>(&self, value: T) -> [T; N] {
        [value; N]
    }
}

/// Heap arrays of a length chosen at run time.
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boxed(pub usize);

#[cfg(feature = "alloc")]
impl Storage for Boxed {
    type Array<T> = alloc::boxed::Box<[T]>;
    const FIXED_LEN: Option<usize> = None;

    #[inline]
    fn len(&self) -> usize {
        self.0
    }

    fn array<T>(&self, mut fill: impl FnMut() -> T) -> alloc::boxed::Box<[T]> {
        (0..self.0).map(|_| fill()).collect()
    }

    fn filled<T: Copy>(&self, value: T) -> alloc::boxed::Box<[T]> {
        alloc::vec![value; self.0].into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_have_the_length() {
        let mut n = 0;
        let a = Inline::<3>.array(|| {
            n += 1;
            n
        });
        assert_eq!(a, [1, 2, 3]);
        assert_eq!(Inline::<2>.filled(9), [9, 9]);
        assert_eq!((Inline::<3>.len(), Inline::<3>::FIXED_LEN), (3, Some(3)));
        assert!(Inline::<0>.is_empty());
        #[cfg(feature = "alloc")]
        {
            let b = Boxed(4).array(|| 7u8);
            assert_eq!(&*b, &[7; 4]);
            assert_eq!(&*Boxed(2).filled(1u16), &[1, 1]);
            assert_eq!(Boxed::FIXED_LEN, None);
        }
    }
}
