//! A bounded first-in first-out ring over the slots of a
//! [`Storage`](iommu_platform::Storage) array: the flush queue's pending
//! unmaps and posted batches.

use iommu_platform::Storage;

/// Up to as many elements `E` as the storage `S` holds, oldest at `head`.
pub(crate) struct Ring<E, S: Storage> {
    buf: S::Array<Option<E>>,
    head: usize,
    len: usize,
}

impl<E, S: Storage> Ring<E, S> {
    /// An empty ring in `storage`.
    pub(crate) fn new(storage: &S) -> Self {
        Self { buf: storage.array(|| None), head: 0, len: 0 }
    }

    /// How many elements it holds at most.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.as_ref().len()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    /// The slot of the `i`-th element from the oldest (`i < capacity`).
    #[inline]
    fn slot(&self, i: usize) -> usize {
        let at = self.head + i;
        if at >= self.capacity() { at - self.capacity() } else { at }
    }

    /// Appends `e`, or hands it back when full.
    #[inline]
    pub(crate) fn push_back(&mut self, e: E) -> Result<(), E> {
        if self.is_full() {
            return Err(e);
        }
        let at = self.slot(self.len);
        match self.buf.as_mut().get_mut(at) {
            Some(slot) => *slot = Some(e),
            None => return Err(e),
        }
        self.len += 1;
        Ok(())
    }

    /// Removes the oldest element.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<E> {
        if self.len == 0 {
            return None;
        }
        let e = self.buf.as_mut().get_mut(self.head)?.take();
        self.head = self.slot(1);
        self.len -= 1;
        e
    }

    /// The `i`-th element from the oldest.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&E> {
        if i >= self.len {
            return None;
        }
        self.buf.as_ref().get(self.slot(i))?.as_ref()
    }

    #[inline]
    pub(crate) fn front(&self) -> Option<&E> {
        self.get(0)
    }

    #[inline]
    pub(crate) fn back(&self) -> Option<&E> {
        self.get(self.len.checked_sub(1)?)
    }

    /// The elements from the `start`-th oldest on, oldest first.
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = &E> + Clone {
        (start..self.len).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around_and_refuses_when_full() {
        let mut r: Ring<u32, iommu_platform::Inline<3>> = Ring::new(&iommu_platform::Inline);
        assert_eq!((r.push_back(1), r.push_back(2), r.push_back(3)), (Ok(()), Ok(()), Ok(())));
        assert_eq!(r.push_back(4), Err(4));
        assert_eq!(r.pop_front(), Some(1));
        r.push_back(4).unwrap();
        assert_eq!(r.iter_from(1).copied().collect::<std::vec::Vec<_>>(), [3, 4]);
        assert_eq!((r.front(), r.back(), r.get(3)), (Some(&2), Some(&4), None));
        assert_eq!(
            [r.pop_front(), r.pop_front(), r.pop_front(), r.pop_front()],
            [Some(2), Some(3), Some(4), None]
        );
        assert_eq!(r.len(), 0);
    }
}
