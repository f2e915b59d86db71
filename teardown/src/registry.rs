//! The live, idle and stale mappings of a mapper, found by buffer (for
//! reuse) and by IOVA (for unmap) in O(1), with the stale ones on an
//! intrusive oldest-first list so a reuse takes one out in O(1). Every
//! array is one of the mapper's [`Storage`], so the registry holds as many
//! mappings as that says, fixed in the type or chosen at run time.

use invalidation::Instant;
use iommu_platform::Storage;
use iova_alloc::IovaRange;
use vtd_regs::Iova;
use vtd_tables::Perm;

use crate::Error;
use crate::index::{Bucket, Index, NIL, hash_buffer, hash_page};

/// Index of a mapping in the registry.
pub(crate) type SlotId = u32;

/// The range of a free slot (never read).
const VACANT_RANGE: IovaRange = match IovaRange::from_pages(0, 1) {
    Ok(r) => r,
    Err(_) => panic!("one page at page 0 is a range"),
};

/// One mapping: `pages` pages of a buffer starting at page `phys_page`
/// (guest-physical when pinning), mapped at the start of `iova`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mapping {
    pub(crate) iova: IovaRange,
    pub(crate) phys_page: u64,
    pub(crate) pages: u64,
    pub(crate) perm: Perm,
    /// Maps not yet unmapped; 0 = idle (persistent) or stale (optimistic).
    pub(crate) refs: u32,
    /// Persistent: never torn down.
    pub(crate) keep: bool,
    /// Never reused: torn down on its last unmap whatever the policy
    /// (placed and scatter-gather mappings).
    pub(crate) single: bool,
    stale: Option<Stale>,
}

#[derive(Clone, Copy, Debug)]
struct Stale {
    prev: SlotId,
    next: SlotId,
    since: Instant,
}

impl Mapping {
    /// Drops one map of this mapping for an unmap of `pages` pages at
    /// `iova` (`len` bytes, as the caller gave it): the maps left, or why
    /// the unmap does not match the mapping.
    pub(crate) fn unref(&mut self, pages: u64, iova: Iova, len: u64) -> crate::Result<u32> {
        if self.pages != pages {
            return Err(Error::LengthMismatch { iova, len });
        }
        if self.refs == 0 {
            return Err(Error::NotMapped { iova });
        }
        self.refs -= 1;
        Ok(self.refs)
    }

    /// What reuse matches on: the same pages with the same permission, so
    /// a buffer mapped for reads never becomes writable by reuse.
    fn buffer_key(&self) -> (u64, u64, u8) {
        (self.phys_page, self.pages, self.perm.bits())
    }

    /// The hash of [`buffer_key`](Self::buffer_key).
    fn buffer_hash(&self) -> u32 {
        hash_buffer(self.phys_page, self.pages, self.perm.bits())
    }

    pub(crate) fn new(
        iova: IovaRange,
        phys_page: u64,
        pages: u64,
        perm: Perm,
        keep: bool,
        single: bool,
    ) -> Self {
        Mapping { iova, phys_page, pages, perm, refs: 1, keep, single, stale: None }
    }

    /// What a free slot holds.
    const VACANT: Self = Mapping {
        iova: VACANT_RANGE,
        phys_page: 0,
        pages: 0,
        perm: Perm::empty(),
        refs: 0,
        keep: false,
        single: false,
        stale: None,
    };
}

/// Up to as many mappings as the storage `M` holds, each with the lease
/// `L` of its IOVA range (none for a placed mapping).
pub(crate) struct Registry<L, M: Storage> {
    slots: M::Array<Mapping>,
    /// The lease of each slot's mapping; `None` while the slot is free or
    /// its mapping placed.
    leases: M::Array<Option<L>>,
    /// Freed slots, a stack of `free_len` ids.
    free: M::Array<SlotId>,
    free_len: usize,
    /// Slots ever used: `0..used`.
    used: usize,
    by_buffer: Index<M::Array<[Bucket; 2]>>,
    by_iova: Index<M::Array<[Bucket; 2]>>,
    len: usize,
    stale_head: SlotId,
    stale_tail: SlotId,
    stale_len: usize,
}

impl<L, M: Storage> Registry<L, M> {
    pub(crate) fn new(storage: &M) -> Self {
        Registry {
            slots: storage.filled(Mapping::VACANT),
            leases: storage.array(|| None),
            free: storage.filled(NIL),
            free_len: 0,
            used: 0,
            by_buffer: Index::new(storage.filled(Bucket::PAIR)),
            by_iova: Index::new(storage.filled(Bucket::PAIR)),
            len: 0,
            stale_head: NIL,
            stale_tail: NIL,
            stale_len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.len == self.slots.as_ref().len()
    }

    #[inline]
    pub(crate) fn stale_len(&self) -> usize {
        self.stale_len
    }

    /// Records a mapping and its lease; `index_buffer` makes it findable
    /// by its buffer. The lease back when full.
    pub(crate) fn insert(
        &mut self,
        m: Mapping,
        lease: Option<L>,
        index_buffer: bool,
    ) -> Result<SlotId, Option<L>> {
        if self.is_full() {
            return Err(lease);
        }
        let id = match self.free_len.checked_sub(1) {
            Some(top) => {
                self.free_len = top;
                self.free.as_ref().get(top).copied().unwrap_or(NIL)
            }
            None => {
                self.used += 1;
                (self.used - 1) as SlotId
            }
        };
        match (self.slots.as_mut().get_mut(id as usize), self.leases.as_mut().get_mut(id as usize))
        {
            (Some(slot), Some(held)) => {
                *slot = m;
                *held = lease;
            }
            _ => return Err(lease),
        }
        self.len += 1;
        // Room is guaranteed: both indexes hold at most `len <= capacity`
        // keys in twice as many buckets.
        let slots = self.slots.as_ref();
        let page = m.iova.start_page();
        let at = |s: SlotId| slots.get(s as usize).is_some_and(|o| o.iova.start_page() == page);
        let indexed = self.by_iova.insert(hash_page(page), id, at);
        debug_assert!(indexed, "an IOVA was indexed twice");
        if index_buffer {
            // A second mapping of the same buffer (placed elsewhere) stays
            // findable by IOVA only.
            let key = m.buffer_key();
            let same = |s: SlotId| slots.get(s as usize).is_some_and(|o| o.buffer_key() == key);
            self.by_buffer.insert(m.buffer_hash(), id, same);
        }
        Ok(id)
    }

    #[inline]
    pub(crate) fn get(&self, id: SlotId) -> Option<&Mapping> {
        self.slots.as_ref().get(id as usize)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: SlotId) -> Option<&mut Mapping> {
        self.slots.as_mut().get_mut(id as usize)
    }

    /// The mapping of exactly these pages with exactly this permission.
    #[inline]
    pub(crate) fn find_buffer(&self, phys_page: u64, pages: u64, perm: Perm) -> Option<SlotId> {
        let (slots, key) = (self.slots.as_ref(), (phys_page, pages, perm.bits()));
        let same = |s: SlotId| slots.get(s as usize).is_some_and(|o| o.buffer_key() == key);
        self.by_buffer.get(hash_buffer(phys_page, pages, perm.bits()), same)
    }

    #[inline]
    pub(crate) fn find_iova(&self, iova_page: u64) -> Option<SlotId> {
        let slots = self.slots.as_ref();
        let at =
            |s: SlotId| slots.get(s as usize).is_some_and(|o| o.iova.start_page() == iova_page);
        self.by_iova.get(hash_page(iova_page), at)
    }

    /// Forgets a mapping (taking it off the stale list if it is there) and
    /// hands back its lease.
    pub(crate) fn remove(&mut self, id: SlotId) -> Option<(Mapping, Option<L>)> {
        self.unstale(id);
        let m = *self.get(id)?;
        let lease = self.leases.as_mut().get_mut(id as usize)?.take();
        // The mapping itself is indexed: remove its own buckets.
        self.by_iova.remove(hash_page(m.iova.start_page()), |s| s == id);
        self.by_buffer.remove(m.buffer_hash(), |s| s == id);
        // `free` never holds more ids than there are slots.
        *self.free.as_mut().get_mut(self.free_len)? = id;
        self.free_len += 1;
        self.len -= 1;
        Some((m, lease))
    }

    /// Appends a mapping to the stale list (newest last).
    pub(crate) fn make_stale(&mut self, id: SlotId, now: Instant) {
        let tail = self.stale_tail;
        let Some(m) = self.get_mut(id) else { return };
        if m.stale.is_some() {
            return;
        }
        m.stale = Some(Stale { prev: tail, next: NIL, since: now });
        match self.get_mut(tail).and_then(|t| t.stale.as_mut()) {
            Some(t) => t.next = id,
            None => self.stale_head = id,
        }
        self.stale_tail = id;
        self.stale_len += 1;
    }

    /// Takes a mapping off the stale list, if it is on it.
    pub(crate) fn unstale(&mut self, id: SlotId) {
        let Some(Stale { prev, next, .. }) = self.get_mut(id).and_then(|m| m.stale.take()) else {
            return;
        };
        match self.get_mut(prev).and_then(|p| p.stale.as_mut()) {
            Some(p) => p.next = next,
            None => self.stale_head = next,
        }
        match self.get_mut(next).and_then(|n| n.stale.as_mut()) {
            Some(n) => n.prev = prev,
            None => self.stale_tail = prev,
        }
        self.stale_len -= 1;
    }

    /// The oldest stale mapping and when it became stale.
    pub(crate) fn oldest_stale(&self) -> Option<(SlotId, Instant)> {
        let m = self.get(self.stale_head)?;
        m.stale.map(|s| (self.stale_head, s.since))
    }
}
