//! [`Cache`]: the LRU cache of recently used records in front of the backend.
//!
//! Invariants: an entry is inserted only from a committed write or a completed read; every write
//! updates or removes the entries it touches; a read that raced with a write does not insert (the
//! write sequence number changed); expiry is checked against the clock on every hit.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::{Guid, Record};

/// A token taken before a backend read, to be handed back when filling the cache with its result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket(u64);

pub(crate) struct Cache {
    inner: Option<Mutex<Inner>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Inner {
    entries: LruCache<Guid, Arc<Record>>,
    /// Incremented by every batch of writes; reads started before it may not fill the cache.
    write_sequence: u64,
}

/// A change a committed write makes to the cache.
#[derive(Debug)]
pub(crate) enum CacheUpdate {
    Put(Arc<Record>),
    Remove(Guid),
}

impl Cache {
    /// A cache of `capacity` records; 0 disables caching.
    pub(crate) fn new(capacity: usize) -> Cache {
        Cache {
            inner: NonZeroUsize::new(capacity)
                .map(|capacity| Mutex::new(Inner { entries: LruCache::new(capacity), write_sequence: 0 })),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> Option<MutexGuard<'_, Inner>> {
        // A panic while holding the lock cannot leave the LRU inconsistent in a way that matters
        // here (entries are whole Arcs), so a poisoned lock is used as is.
        self.inner.as_ref().map(|m| m.lock().unwrap_or_else(|poison| poison.into_inner()))
    }

    /// A live cached record, or `None` (and the ticket for filling the cache after a read).
    pub(crate) fn get(&self, guid: &Guid, now: u64) -> Result<Arc<Record>, ReadTicket> {
        let Some(mut inner) = self.lock() else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Err(ReadTicket(0));
        };
        match inner.entries.get(guid) {
            Some(record) if !record.is_expired_at(now) => {
                let record = Arc::clone(record);
                drop(inner);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(record)
            }
            found => {
                if found.is_some() {
                    inner.entries.pop(guid);
                }
                let ticket = ReadTicket(inner.write_sequence);
                drop(inner);
                self.misses.fetch_add(1, Ordering::Relaxed);
                Err(ticket)
            }
        }
    }

    /// A live cached record without counting a miss when there is none.
    pub(crate) fn peek_live(&self, guid: &Guid, now: u64) -> Option<Arc<Record>> {
        let mut inner = self.lock()?;
        let record = inner.entries.get(guid).filter(|r| !r.is_expired_at(now)).cloned()?;
        drop(inner);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(record)
    }

    /// Caches the result of a read, unless a write has happened since `ticket` was taken.
    pub(crate) fn fill(&self, ticket: ReadTicket, record: &Arc<Record>) {
        if let Some(mut inner) = self.lock()
            && inner.write_sequence == ticket.0
        {
            inner.entries.put(*record.guid(), Arc::clone(record));
        }
    }

    /// Applies the effects of one committed batch of writes.
    pub(crate) fn apply(&self, updates: impl IntoIterator<Item = CacheUpdate>) {
        if let Some(mut inner) = self.lock() {
            inner.write_sequence = inner.write_sequence.wrapping_add(1);
            for update in updates {
                match update {
                    CacheUpdate::Put(record) => {
                        inner.entries.put(*record.guid(), record);
                    }
                    CacheUpdate::Remove(guid) => {
                        inner.entries.pop(&guid);
                    }
                }
            }
        }
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map_or(0, |inner| inner.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expiry, Metadata};

    fn record(expire: u64) -> Arc<Record> {
        Arc::new(Record::new(Guid::random(), Expiry::new_after(expire, 0).unwrap(), Metadata::new(), 1))
    }

    #[test]
    fn a_read_that_raced_a_write_does_not_fill() {
        let cache = Cache::new(8);
        let rec = record(100);
        let ticket = cache.get(rec.guid(), 10).unwrap_err();
        cache.apply([CacheUpdate::Remove(*rec.guid())]);
        cache.fill(ticket, &rec);
        assert!(cache.get(rec.guid(), 10).is_err());
        let ticket = cache.get(rec.guid(), 10).unwrap_err();
        cache.fill(ticket, &rec);
        assert!(cache.get(rec.guid(), 10).is_ok());
    }

    #[test]
    fn expired_entries_are_not_served() {
        let cache = Cache::new(8);
        let rec = record(100);
        cache.apply([CacheUpdate::Put(Arc::clone(&rec))]);
        assert!(cache.get(rec.guid(), 99).is_ok());
        assert!(cache.get(rec.guid(), 100).is_err());
        assert_eq!(cache.len(), 0);
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[test]
    fn capacity_zero_disables_the_cache() {
        let cache = Cache::new(0);
        let rec = record(100);
        cache.apply([CacheUpdate::Put(Arc::clone(&rec))]);
        assert!(cache.get(rec.guid(), 10).is_err());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let cache = Cache::new(2);
        let (a, b, c) = (record(100), record(100), record(100));
        cache.apply([CacheUpdate::Put(a.clone()), CacheUpdate::Put(b.clone())]);
        assert!(cache.get(a.guid(), 0).is_ok());
        cache.apply([CacheUpdate::Put(c.clone())]);
        assert!(cache.get(b.guid(), 0).is_err());
        assert!(cache.get(a.guid(), 0).is_ok());
        assert!(cache.get(c.guid(), 0).is_ok());
    }
}
