//! Which L1 keys each id holds, for tiers whose keys are composite (a sku's
//! prices in every segment and currency, an order as each customer asked
//! for it): an event or a purge naming a bare id finds its keys here
//! instead of walking L1.
//!
//! Entries are named by their address, so a late eviction of a replaced
//! entry never unlists the entry that replaced it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use super::freshness::Cached;
use super::key::Key;

/// Keys by the hash of their id. An id rarely has more than a few keys (a
/// sku's segments and currencies), so they sit in a short list beside the
/// address of the entry L1 holds for each: a map per id would cost more
/// than the entries it indexes.
pub(super) struct Ids<K> {
    by_id: Mutex<HashMap<u64, Vec<(K, usize)>>>,
    hasher: RandomState,
}

/// What the index costs per key, beyond what L1 weighs for the key itself:
/// a second copy of the key, the entry's address, and a slot in the table.
pub(super) fn weight<K: Key>(key: &K) -> usize {
    size_of::<K>() + size_of::<usize>() + 2 * key.weight() + 48
}

impl<K: Key> Ids<K> {
    pub(super) fn new() -> Ids<K> {
        Ids {
            by_id: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// Lists `key` under its id, as held by `entry`.
    pub(super) fn insert<V>(&self, key: &K, entry: &Arc<Cached<V>>) {
        let mut by_id = self.lock();
        let keys = by_id
            .entry(self.hasher.hash_one(key.id()))
            .or_insert_with(|| Vec::with_capacity(1));
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, held)) => *held = address(entry),
            None => keys.push((key.clone(), address(entry))),
        }
    }

    /// Unlists `key` if `entry` is still the one listed.
    pub(super) fn remove<V>(&self, key: &K, entry: &Arc<Cached<V>>) {
        let hash = self.hasher.hash_one(key.id());
        let mut by_id = self.lock();
        let Some(keys) = by_id.get_mut(&hash) else {
            return;
        };
        keys.retain(|(k, held)| !(k == key && *held == address(entry)));
        if keys.is_empty() {
            by_id.remove(&hash);
        }
    }

    /// The keys listed under `id`.
    pub(super) fn keys(&self, id: &str) -> Vec<K> {
        self.lock()
            .get(&self.hasher.hash_one(id))
            .map(|keys| {
                keys.iter()
                    .filter(|(k, _)| k.id() == id)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Vec<(K, usize)>>> {
        // Every change is one insert or remove: a panic leaves it whole.
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An entry's identity. Only compared, never followed: the entry being
/// evicted is alive while its listener runs, so no other entry can have
/// taken its address yet.
fn address<V>(entry: &Arc<Cached<V>>) -> usize {
    Arc::as_ptr(entry) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::{join, split};
    use crate::domain::Timestamp;

    /// An id and one more component, like a sku and its segment.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct Pair(String, String);

    impl Key for Pair {
        const COMPOSITE: bool = true;

        fn encode(&self) -> String {
            join(&[&self.0, &self.1])
        }

        fn decode(text: &str) -> Option<Pair> {
            let mut parts = split(text, 2)?.into_iter();
            Some(Pair(parts.next()?, parts.next()?))
        }

        fn id(&self) -> &str {
            &self.0
        }
    }

    fn key(id: &str, rest: &str) -> Pair {
        Pair(id.into(), rest.into())
    }

    #[test]
    fn a_late_eviction_never_unlists_the_entry_that_replaced_it() {
        let ids = Ids::new();
        let old = Arc::new(Cached::new(Some(1), Timestamp(0), 8));
        let new = Arc::new(Cached::new(Some(2), Timestamp(1), 8));
        ids.insert(&key("A", "default"), &old);
        ids.insert(&key("A", "vip"), &old);
        ids.insert(&key("B", "default"), &old);
        ids.insert(&key("A", "default"), &new);
        ids.remove(&key("A", "default"), &old);
        let mut keys = ids.keys("A");
        keys.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(keys, [key("A", "default"), key("A", "vip")]);
        ids.remove(&key("A", "default"), &new);
        ids.remove(&key("A", "vip"), &old);
        assert!(ids.keys("A").is_empty());
        assert_eq!(ids.keys("B"), [key("B", "default")]);
    }
}
