//! Storage for the allocator's nodes and the cache's depot: one small trait,
//! implemented by a fixed-capacity `heapless::Vec` (no heap, for unikernels)
//! and, under the `alloc` feature, by a growable `alloc::vec::Vec`.

/// A stack-like, indexable store of `T`: what the tree's node arena and the
/// depot of magazines need. Slots are addressed by index; capacity is either
/// fixed ([`heapless::Vec`]) or growable (`Vec`, with the `alloc` feature).
pub trait Store<T> {
    /// The stored items.
    fn as_slice(&self) -> &[T];
    /// The stored items, mutably.
    fn as_mut_slice(&mut self) -> &mut [T];
    /// Appends `value`, or hands it back if the store is full.
    ///
    /// # Errors
    /// The value itself when there is no room.
    fn push(&mut self, value: T) -> core::result::Result<(), T>;
    /// Removes and returns the last item.
    fn pop(&mut self) -> Option<T>;
}

impl<T, const N: usize> Store<T> for heapless::Vec<T, N> {
    fn as_slice(&self) -> &[T] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    fn push(&mut self, value: T) -> core::result::Result<(), T> {
        heapless::Vec::push(self, value)
    }
    fn pop(&mut self) -> Option<T> {
        heapless::Vec::pop(self)
    }
}

#[cfg(feature = "alloc")]
impl<T> Store<T> for alloc::vec::Vec<T> {
    fn as_slice(&self) -> &[T] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    fn push(&mut self, value: T) -> core::result::Result<(), T> {
        alloc::vec::Vec::push(self, value);
        Ok(())
    }
    fn pop(&mut self) -> Option<T> {
        alloc::vec::Vec::pop(self)
    }
}
