//! Bounded first-in first-out rings over the slots of a
//! [`Storage`](iommu_platform::Storage) array: the flush queue's pending
//! unmaps ([`Ring`]) and posted batches ([`Batches`]).

use iommu_platform::Storage;

use crate::Ticket;

/// The posted batches of a flush queue, oldest first: each one's ticket and
/// how many unmaps it covers. Plain copies in the slots, no `Option`: the
/// hot path of a strict queue pushes and pops one per unmap.
pub(crate) struct Batches<S: Storage> {
    buf: S::Array<(Ticket, usize)>,
    head: usize,
    len: usize,
}

impl<S: Storage> Batches<S> {
    /// No batch, in `storage`.
    #[inline]
    pub(crate) fn new(storage: &S) -> Self {
        Self { buf: storage.filled((Ticket(0), 0)), head: 0, len: 0 }
    }

    /// The oldest batch.
    #[inline]
    pub(crate) fn front(&self) -> Option<(Ticket, usize)> {
        if self.len == 0 {
            return None;
        }
        self.buf.as_ref().get(self.head).copied()
    }

    /// The newest batch's ticket.
    #[inline]
    pub(crate) fn back(&self) -> Option<Ticket> {
        let cap = self.buf.as_ref().len();
        let last = (self.head + self.len.checked_sub(1)?) % cap.max(1);
        self.buf.as_ref().get(last).map(|&(t, _)| t)
    }

    /// Drops the oldest batch.
    #[inline]
    pub(crate) fn pop_front(&mut self) {
        if self.len > 0 {
            let cap = self.buf.as_ref().len();
            self.head = if self.head + 1 == cap { 0 } else { self.head + 1 };
            self.len -= 1;
        }
    }

    /// Records a posted batch; `false` when full.
    #[inline]
    pub(crate) fn push_back(&mut self, ticket: Ticket, count: usize) -> bool {
        let buf = self.buf.as_mut();
        let cap = buf.len();
        if self.len == cap {
            return false;
        }
        let at = self.head + self.len;
        let at = if at >= cap { at - cap } else { at };
        match buf.get_mut(at) {
            Some(slot) => *slot = (ticket, count),
            None => return false,
        }
        self.len += 1;
        true
    }
}

/// Up to as many elements `E` as the storage `S` holds, oldest at `head`.
pub(crate) struct Ring<E, S: Storage> {
    buf: S::Array<Option<E>>,
    head: usize,
    len: usize,
}

impl<E, S: Storage> Ring<E, S> {
    /// An empty ring in `storage`.
    #[inline]
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
        let buf = self.buf.as_mut();
        let (head, cap) = (self.head, buf.len());
        let e = buf.get_mut(head)?.take();
        self.head = if head + 1 == cap { 0 } else { head + 1 };
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

    /// The elements from the `start`-th oldest on, oldest first.
    #[inline]
    pub(crate) fn iter_from(&self, start: usize) -> Iter<'_, E> {
        let buf = self.buf.as_ref();
        let left = self.len.saturating_sub(start);
        let at = if left > 0 { self.slot(start) } else { 0 };
        let end = at + left.min(buf.len() - at);
        let first = buf.get(at..end).unwrap_or_default();
        let second = buf.get(..left - first.len()).unwrap_or_default();
        Iter { first, second }
    }
}

/// The elements of a [`Ring`], oldest first: the slots up to the end of
/// the buffer, then those from its start.
#[derive(Clone)]
pub(crate) struct Iter<'a, E> {
    first: &'a [Option<E>],
    second: &'a [Option<E>],
}

impl<'a, E> Iterator for Iter<'a, E> {
    type Item = &'a E;

    #[inline]
    fn next(&mut self) -> Option<&'a E> {
        if let Some((e, rest)) = self.first.split_first() {
            self.first = rest;
            return e.as_ref();
        }
        let (e, rest) = self.second.split_first()?;
        self.second = rest;
        e.as_ref()
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.first.len() + self.second.len()))
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
        assert_eq!((r.get(0), r.get(2), r.get(3)), (Some(&2), Some(&4), None));
        assert_eq!(
            [r.pop_front(), r.pop_front(), r.pop_front(), r.pop_front()],
            [Some(2), Some(3), Some(4), None]
        );
        assert_eq!(r.len(), 0);
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn batches_wrap_around() {
        let mut b: Batches<iommu_platform::Inline<2>> = Batches::new(&iommu_platform::Inline);
        assert_eq!((b.front(), b.back()), (None, None));
        assert!(
            b.push_back(Ticket(1), 3) && b.push_back(Ticket(2), 1) && !b.push_back(Ticket(3), 1)
        );
        b.pop_front();
        assert!(b.push_back(Ticket(3), 5));
        assert_eq!((b.front(), b.back()), (Some((Ticket(2), 1)), Some(Ticket(3))));
        b.pop_front();
        b.pop_front();
        b.pop_front();
        assert_eq!(b.front(), None);
    }
}
