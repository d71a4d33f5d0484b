//! [`Slru`]: a segmented LRU (Karedla, Love and Wherry, 1994), the eviction policy of the record
//! cache.
//!
//! Entries enter a *probation* segment; a hit on an entry in probation promotes it to the
//! *protected* segment, which holds at most [`PROTECTED_SHARE`] of the capacity (its least
//! recently used entry is demoted back to probation when it is full). Eviction takes probation's
//! least recently used entry, and protected's only when probation is empty. A burst of entries
//! that nobody reads (creates) therefore cycles through probation and never pushes out an entry
//! that was read since it was cached; a plain LRU lets such a burst evict everything.
//!
//! A hit in protected costs what an LRU hit costs (one lookup, one relink); a hit in probation
//! moves the entry between the two lists. Nothing here depends on time: the order of calls alone
//! decides what is kept.

use std::hash::Hash;

use lru::LruCache;

/// The share of the capacity the protected segment may hold, in percent.
pub(crate) const PROTECTED_SHARE: usize = 80;

/// A segmented LRU map of at most `capacity` entries.
pub(crate) struct Slru<K: Hash + Eq, V> {
    probation: LruCache<K, V>,
    protected: LruCache<K, V>,
    capacity: usize,
    protected_capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Slru<K, V> {
    /// An empty map of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Slru<K, V> {
        let capacity = capacity.max(1);
        Slru {
            probation: LruCache::unbounded(),
            protected: LruCache::unbounded(),
            capacity,
            protected_capacity: capacity / 100 * PROTECTED_SHARE + capacity % 100 * PROTECTED_SHARE / 100,
        }
    }

    /// A clone of the entry of `key` (the cache's values are `Arc`s), counted as a use: it
    /// becomes the most recently used of protected.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        if let Some(value) = self.protected.get(key) {
            return Some(value.clone());
        }
        let value = self.probation.pop(key)?;
        self.protected.put(key.clone(), value.clone());
        if self.protected.len() > self.protected_capacity
            && let Some((demoted, demoted_value)) = self.protected.pop_lru()
        {
            // Back to probation as its most recently used entry: it is the next to go only
            // after every entry that entered probation before it.
            self.probation.put(demoted, demoted_value);
        }
        Some(value)
    }

    /// Stores `value` under `key`. A new key enters probation (evicting probation's least
    /// recently used entry when the map is full); a cached key keeps its place and segment: a
    /// write is not a read.
    pub(crate) fn put(&mut self, key: K, value: V) {
        if let Some(slot) = self.protected.peek_mut(&key) {
            *slot = value;
            return;
        }
        if let Some(slot) = self.probation.peek_mut(&key) {
            *slot = value;
            return;
        }
        if self.len() >= self.capacity && self.probation.pop_lru().is_none() {
            self.protected.pop_lru();
        }
        self.probation.put(key, value);
    }

    /// Stores `value` under `key` as just read (a read that missed the cache): it enters
    /// protected directly, as an entry of probation would on its first hit. A record someone
    /// reads is what a burst of unread entries must not push out.
    pub(crate) fn put_read(&mut self, key: K, value: V) {
        if self.probation.pop(&key).is_some() || self.protected.contains(&key) {
            self.protected.put(key, value);
        } else {
            if self.len() >= self.capacity && self.probation.pop_lru().is_none() {
                self.protected.pop_lru();
            }
            self.protected.put(key, value);
        }
        if self.protected.len() > self.protected_capacity
            && let Some((demoted, demoted_value)) = self.protected.pop_lru()
        {
            self.probation.put(demoted, demoted_value);
        }
    }

    /// Removes the entry of `key`, if any.
    pub(crate) fn remove(&mut self, key: &K) {
        if self.protected.pop(key).is_none() {
            self.probation.pop(key);
        }
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) {
        self.probation.clear();
        self.protected.clear();
    }

    /// How many entries are held.
    pub(crate) fn len(&self) -> usize {
        self.probation.len() + self.protected.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        for capacity in [1, 2, 3, 10, 101] {
            let mut map = Slru::new(capacity);
            for i in 0..1000u32 {
                map.put(i, i);
                if i % 3 == 0 {
                    map.get(&(i / 2));
                }
                assert!(map.len() <= capacity, "capacity {capacity}: {}", map.len());
            }
            assert_eq!(map.len(), capacity);
        }
    }

    #[test]
    fn an_entry_read_once_survives_a_burst_of_unread_entries() {
        let mut map = Slru::new(10);
        map.put(0, "hot");
        assert_eq!(map.get(&0), Some("hot"));
        for i in 1..1000 {
            map.put(i, "cold");
        }
        assert_eq!(map.get(&0), Some("hot"));
        // A plain LRU keeps only the last 10; probation holds the last 9 here.
        assert_eq!((1..1000).filter(|i| map.get(i).is_some()).count(), 9);
    }

    #[test]
    fn an_entry_filled_by_a_read_survives_a_burst_of_unread_entries() {
        let mut map = Slru::new(10);
        for i in 0..10 {
            map.put(i, "cold");
        }
        map.put_read(5000, "read");
        map.put_read(3, "read again");
        assert_eq!(map.len(), 10);
        for i in 10..1000 {
            map.put(i, "cold");
        }
        assert_eq!(map.get(&5000), Some("read"));
        assert_eq!(map.get(&3), Some("read again"));
        // Protected holds 8: an eleventh read demotes the least recent of them to probation.
        for i in 0..9 {
            map.put_read(2000 + i, "read");
        }
        assert_eq!(map.len(), 10);
        assert_eq!(map.get(&5000), None, "demoted, then evicted by the next read");
    }

    #[test]
    fn a_full_protected_segment_demotes_its_least_recently_used_entry() {
        let mut map = Slru::new(5); // protected holds 4
        for i in 0..5 {
            map.put(i, i);
            map.get(&i);
        }
        // 0 was demoted to probation when 4 was promoted; it goes first.
        map.put(5, 5);
        assert_eq!(map.get(&0), None);
        assert!((1..6).all(|i| map.get(&i).is_some()));
    }

    #[test]
    fn a_write_updates_in_place_and_remove_forgets() {
        let mut map = Slru::new(3);
        map.put(1, "a");
        map.get(&1);
        map.put(1, "b");
        map.put(2, "c");
        assert_eq!(map.get(&1), Some("b"));
        map.remove(&1);
        map.remove(&2);
        assert_eq!(map.get(&1), None);
        assert_eq!(map.get(&2), None);
        assert_eq!(map.len(), 0);
        map.put(3, "d");
        map.clear();
        assert_eq!(map.len(), 0);
    }
}
