//! The live, idle and stale mappings of a mapper, found by buffer (for
//! reuse) and by IOVA (for unmap) in O(1), with the stale ones on an
//! intrusive oldest-first list so a reuse takes one out in O(1).

use core::hash::Hasher;

use hash32::BuildHasherDefault;

use heapless::Vec;
use heapless::index_map::IndexMap;
use invalidation::Instant;
use iova_alloc::IovaRange;
use vtd_tables::Perm;

/// A multiplicative hash of the few words of a key (FxHash's scheme): the
/// keys are page numbers, and one multiply mixes them well enough.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl hash32::Hasher for WordHasher {
    #[inline]
    fn finish32(&self) -> u32 {
        (self.0 >> 32) as u32
    }
}

type Map<K, const N: usize> = IndexMap<K, SlotId, BuildHasherDefault<WordHasher>, N>;

/// Index of a mapping in the registry.
pub(crate) type SlotId = u32;

const NIL: SlotId = SlotId::MAX;

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
    stale: Option<Stale>,
}

#[derive(Clone, Copy, Debug)]
struct Stale {
    prev: SlotId,
    next: SlotId,
    since: Instant,
}

impl Mapping {
    /// What reuse matches on: the same pages with the same permission, so
    /// a buffer mapped for reads never becomes writable by reuse.
    fn buffer_key(&self) -> (u64, u64, u8) {
        (self.phys_page, self.pages, self.perm.bits())
    }

    pub(crate) fn new(iova: IovaRange, phys_page: u64, pages: u64, perm: Perm, keep: bool) -> Self {
        Mapping { iova, phys_page, pages, perm, refs: 1, keep, stale: None }
    }
}

/// Up to `N` mappings (`N` a power of two), each with the lease `L` of its
/// IOVA range (none for a placed mapping).
pub(crate) struct Registry<L, const N: usize> {
    slots: Vec<Mapping, N>,
    /// The lease of each slot's mapping; `None` while the slot is free or
    /// its mapping placed.
    leases: Vec<Option<L>, N>,
    free: Vec<SlotId, N>,
    by_buffer: Map<(u64, u64, u8), N>,
    by_iova: Map<u64, N>,
    stale_head: SlotId,
    stale_tail: SlotId,
    stale_len: usize,
}

impl<L, const N: usize> Registry<L, N> {
    pub(crate) fn new() -> Self {
        Registry {
            slots: Vec::new(),
            leases: Vec::new(),
            free: Vec::new(),
            by_buffer: Map::new(),
            by_iova: Map::new(),
            stale_head: NIL,
            stale_tail: NIL,
            stale_len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_iova.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() == N
    }

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
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                // `slots` and `leases` grow together, one slot at a time,
                // and only while fewer than N exist.
                if self.slots.push(m).is_err() || self.leases.push(None).is_err() {
                    return Err(lease);
                }
                (self.slots.len() - 1) as SlotId
            }
        };
        match (self.slots.get_mut(id as usize), self.leases.get_mut(id as usize)) {
            (Some(slot), Some(held)) => {
                *slot = m;
                *held = lease;
            }
            _ => return Err(lease),
        }
        // Room is guaranteed: both maps hold at most `len() < N` entries.
        let indexed = self.by_iova.insert(m.iova.start_page(), id);
        debug_assert!(indexed.is_ok(), "the IOVA index had no room");
        if index_buffer && !self.by_buffer.contains_key(&m.buffer_key()) {
            let indexed = self.by_buffer.insert(m.buffer_key(), id);
            debug_assert!(indexed.is_ok(), "the buffer index had no room");
        }
        Ok(id)
    }

    pub(crate) fn get(&self, id: SlotId) -> Option<&Mapping> {
        self.slots.get(id as usize)
    }

    pub(crate) fn get_mut(&mut self, id: SlotId) -> Option<&mut Mapping> {
        self.slots.get_mut(id as usize)
    }

    /// The mapping of exactly these pages with exactly this permission.
    pub(crate) fn find_buffer(&self, phys_page: u64, pages: u64, perm: Perm) -> Option<SlotId> {
        self.by_buffer.get(&(phys_page, pages, perm.bits())).copied()
    }

    pub(crate) fn find_iova(&self, iova_page: u64) -> Option<SlotId> {
        self.by_iova.get(&iova_page).copied()
    }

    /// Forgets a mapping (taking it off the stale list if it is there) and
    /// hands back its lease.
    pub(crate) fn remove(&mut self, id: SlotId) -> Option<(Mapping, Option<L>)> {
        self.unstale(id);
        let m = *self.get(id)?;
        let lease = self.leases.get_mut(id as usize)?.take();
        self.by_iova.swap_remove(&m.iova.start_page());
        if self.by_buffer.get(&m.buffer_key()) == Some(&id) {
            self.by_buffer.swap_remove(&m.buffer_key());
        }
        // `free` never holds more ids than there are slots.
        self.free.push(id).ok()?;
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
