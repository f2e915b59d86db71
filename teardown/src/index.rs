//! An open-addressing hash index from a key to a registry slot, over the
//! slots of a [`Storage`](iommu_platform::Storage) array: twice as many
//! buckets as the registry holds mappings, so probes stay short; linear
//! probing, deletion by backward shift (no tombstones). A bucket is 8
//! bytes, a 32-bit hash tag and the slot: the key itself is the mapping's,
//! compared through the registry (as `IndexMap` keeps indices apart from
//! entries). Any capacity works, not only powers of two: a bucket is picked
//! by the high half of `tag * buckets` (Lemire's multiply-shift reduction).

use crate::registry::SlotId;

/// A slot id that marks an empty bucket.
pub(crate) const NIL: SlotId = SlotId::MAX;

/// The multiplier of FxHash: one multiply mixes a page number well enough.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The 32-bit hash of a page number: the high half of one multiply, which
/// depends on every bit of the key.
#[inline]
pub(crate) fn hash_page(page: u64) -> u32 {
    (page.wrapping_mul(SEED) >> 32) as u32
}

/// The 32-bit hash of a buffer: its first page, page count and access.
#[inline]
pub(crate) fn hash_buffer(page: u64, pages: u64, perm: u8) -> u32 {
    let h = page.wrapping_mul(SEED);
    let h = (h.rotate_left(5) ^ pages).wrapping_mul(SEED);
    ((h.rotate_left(5) ^ u64::from(perm)).wrapping_mul(SEED) >> 32) as u32
}

/// One bucket: the key's hash and its slot, or [`NIL`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tag: u32,
    slot: SlotId,
}

impl Bucket {
    /// Two empty buckets (the index has two per mapping).
    pub(crate) const PAIR: [Self; 2] = [Self { tag: 0, slot: NIL }; 2];
}

/// Keys to slots, in `A`: an array of bucket pairs.
pub(crate) struct Index<A> {
    buckets: A,
}

impl<A: AsRef<[[Bucket; 2]]> + AsMut<[[Bucket; 2]]>> Index<A> {
    /// An empty index over `buckets` (every one empty).
    pub(crate) fn new(buckets: A) -> Self {
        Self { buckets }
    }

    #[inline]
    fn table(&self) -> &[Bucket] {
        self.buckets.as_ref().as_flattened()
    }

    /// The bucket where the probe of a key of hash `tag` starts.
    #[inline]
    fn home(tag: u32, len: usize) -> usize {
        ((u64::from(tag) * len as u64) >> 32) as usize
    }

    /// The bucket after `i`.
    #[inline]
    fn next(i: usize, len: usize) -> usize {
        if i + 1 == len { 0 } else { i + 1 }
    }

    /// Where the key of hash `tag` whose slot `is_key` accepts is, or the
    /// empty bucket where it would go. The table is never more than half
    /// full, so an empty bucket ends every probe; the probe is bounded by
    /// the table's length all the same.
    #[inline]
    fn find(&self, tag: u32, is_key: impl Fn(SlotId) -> bool) -> Result<usize, usize> {
        let t = self.table();
        let mut i = Self::home(tag, t.len());
        for _ in 0..t.len() {
            let b = t.get(i).ok_or(i)?;
            if b.slot == NIL {
                return Err(i);
            }
            if b.tag == tag && is_key(b.slot) {
                return Ok(i);
            }
            i = Self::next(i, t.len());
        }
        Err(usize::MAX)
    }

    /// The slot of the key of hash `tag` that `is_key` accepts.
    #[inline]
    pub(crate) fn get(&self, tag: u32, is_key: impl Fn(SlotId) -> bool) -> Option<SlotId> {
        let i = self.find(tag, is_key).ok()?;
        self.table().get(i).map(|b| b.slot)
    }

    /// Adds `slot` under hash `tag`, unless a slot `is_key` accepts is
    /// there already (`false`, nothing changes).
    #[inline]
    pub(crate) fn insert(
        &mut self,
        tag: u32,
        slot: SlotId,
        is_key: impl Fn(SlotId) -> bool,
    ) -> bool {
        match self.find(tag, is_key) {
            Ok(_) => false,
            Err(i) => match self.buckets.as_mut().as_flattened_mut().get_mut(i) {
                Some(b) => {
                    *b = Bucket { tag, slot };
                    true
                }
                None => false,
            },
        }
    }

    /// Removes the slot of hash `tag` that `is_key` accepts, shifting back
    /// the entries whose probe passed its bucket, so every probe still
    /// finds its key.
    #[inline]
    pub(crate) fn remove(&mut self, tag: u32, is_key: impl Fn(SlotId) -> bool) -> Option<SlotId> {
        let mut hole = self.find(tag, is_key).ok()?;
        let t = self.buckets.as_mut().as_flattened_mut();
        let len = t.len();
        let slot = t.get(hole)?.slot;
        let mut j = Self::next(hole, len);
        for _ in 0..len {
            let Some(&b) = t.get(j) else { break };
            if b.slot == NIL {
                break;
            }
            // `b` may fill the hole unless its home lies cyclically in
            // (hole, j]: then its probe never passed the hole.
            let home = Self::home(b.tag, len);
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                if let Some(h) = t.get_mut(hole) {
                    *h = b;
                }
                hole = j;
            }
            j = Self::next(j, len);
        }
        if let Some(h) = t.get_mut(hole) {
            h.slot = NIL;
        }
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Against `HashMap`, at a capacity that is not a power of two and
        /// with keys whose hashes collide (a hash of 3 bits): the index
        /// holds exactly the model's keys.
        #[test]
        fn behaves_as_a_map(
            ops in prop::collection::vec((any::<bool>(), 0u64..40), 1..400),
        ) {
            let mut index: Index<[[Bucket; 2]; 13]> = Index::new([Bucket::PAIR; 13]);
            // Slot s holds key keys[s]; the model maps key -> slot.
            let mut keys = [u64::MAX; 13];
            let mut model: HashMap<u64, SlotId> = HashMap::new();
            let tag = |k: u64| hash_page(k) & 0xe000_0000;
            for (insert, key) in ops {
                if insert && !model.contains_key(&key) {
                    let Some(slot) = keys.iter().position(|k| *k == u64::MAX) else { continue };
                    keys[slot] = key;
                    let keys = keys;
                    prop_assert!(index.insert(tag(key), slot as SlotId, |s| keys[s as usize] == key));
                    model.insert(key, slot as SlotId);
                } else if !insert {
                    let removed = index.remove(tag(key), |s| keys[s as usize] == key);
                    prop_assert_eq!(removed, model.remove(&key));
                    if let Some(s) = removed {
                        keys[s as usize] = u64::MAX;
                    }
                }
                for k in 0..40 {
                    prop_assert_eq!(index.get(tag(k), |s| keys[s as usize] == k), model.get(&k).copied());
                }
            }
        }
    }
}
