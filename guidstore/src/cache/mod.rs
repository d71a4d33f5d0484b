//! [`Cache`]: the cache of recently used records in front of the backend, kept in step with the
//! change log. Its eviction policy is a segmented LRU ([`slru`]): a record read since it was
//! cached (a hit, or the read that filled it) survives a burst of records that nobody reads
//! (creates).
//!
//! Changes reach the cache two ways: this process's own commits ([`Cache::apply_local`], at once,
//! before the writer answers), and — on a database shared with other processes — the change log
//! as the tailer reads it, in revision order ([`Cache::apply_log`]). `applied` is the revision up to
//! which the log has been applied: every change at or below it is reflected here.
//!
//! Invariants:
//! - An entry is inserted only from a committed change or a completed read.
//! - A read that raced with any change does not insert (`epoch` moved): it may hold an older record.
//! - A change never overwrites a newer one: a local commit ahead of the tailer is remembered in
//!   `ahead` until the tailer passes it, and the tailer skips older changes of that GUID; a local
//!   commit the tailer has already passed is not applied again.
//! - A record from the shared cache level (current as of the revision the tailer has read) is not
//!   inserted while a local commit of its GUID is ahead of the tailer: it may be older than that
//!   commit, which the tailer then skips, so it would stay.
//! - Expiry is checked against the clock on every hit.

#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Change, Guid, Record};

mod slru;

use slru::Slru;

/// A token taken before a backend read, to be handed back when filling the cache with its result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket(u64);

pub(crate) struct Cache {
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Inner {
    /// `None` when caching is disabled (capacity 0); the revision bookkeeping goes on.
    entries: Option<Slru<Guid, Arc<Record>>>,
    /// Incremented by every change applied; reads started before it may not fill the cache.
    epoch: u64,
    /// Every change of the log up to this revision is reflected in the cache.
    applied: u64,
    /// Whether other processes write to the same database (then the tailer moves `applied`).
    shared: bool,
    /// Local commits applied before the tailer reached them: GUID → revision.
    ahead: HashMap<Guid, u64>,
}

impl Inner {
    fn put_or_remove(&mut self, change: &Change) {
        let Some(entries) = &mut self.entries else { return };
        match change.record() {
            Some(record) => {
                entries.put(*change.guid(), Arc::clone(record));
            }
            None => {
                entries.remove(change.guid());
            }
        }
    }
}

impl Cache {
    /// A cache of `capacity` records (0 disables caching), whose log starts after `applied`.
    /// `shared`: other processes write to the database too.
    pub(crate) fn new(capacity: usize, applied: u64, shared: bool) -> Cache {
        let entries = (capacity > 0).then(|| Slru::new(capacity));
        Cache {
            inner: Mutex::new(Inner { entries, epoch: 0, applied, shared, ahead: HashMap::new() }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that matters
        // here (entries are whole Arcs), so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// A live cached record, or `None` (and the ticket for filling the cache after a read).
    pub(crate) fn get(&self, guid: &Guid, now: u64) -> Result<Arc<Record>, ReadTicket> {
        let mut inner = self.lock();
        let ticket = ReadTicket(inner.epoch);
        let Some(entries) = &mut inner.entries else {
            drop(inner);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Err(ticket);
        };
        match entries.get(guid) {
            Some(record) if !record.is_expired_at(now) => {
                drop(inner);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(record)
            }
            found => {
                if found.is_some() {
                    entries.remove(guid);
                }
                drop(inner);
                self.misses.fetch_add(1, Ordering::Relaxed);
                Err(ticket)
            }
        }
    }

    /// A live cached record without counting a miss when there is none.
    pub(crate) fn peek_live(&self, guid: &Guid, now: u64) -> Option<Arc<Record>> {
        let mut inner = self.lock();
        let record = inner.entries.as_mut()?.get(guid).filter(|r| !r.is_expired_at(now))?;
        drop(inner);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(record)
    }

    /// Caches the result of a read, unless a change has been applied since `ticket` was taken.
    pub(crate) fn fill(&self, ticket: ReadTicket, record: &Arc<Record>) {
        let mut inner = self.lock();
        if inner.epoch == ticket.0
            && let Some(entries) = &mut inner.entries
        {
            entries.put_read(*record.guid(), Arc::clone(record));
        }
    }

    /// Whether this process has committed a change of `guid` that the tailer has not passed yet:
    /// the shared cache level can then prove nothing newer than that commit, so a read skips it.
    #[cfg(feature = "redis")]
    pub(crate) fn is_ahead(&self, guid: &Guid) -> bool {
        self.lock().ahead.contains_key(guid)
    }

    /// Caches a record the shared cache level proved current, unless a change has been applied
    /// since `ticket` was taken, or this process has committed a change of its GUID that the
    /// tailer has not passed yet. Such a record is current only as of the revision the tailer had
    /// read, which can be below that local commit: caching it would put the older record back,
    /// and the tailer, which skips changes up to the local commit's revision, would leave it there.
    #[cfg(feature = "redis")]
    pub(crate) fn fill_from_shared(&self, ticket: ReadTicket, record: &Arc<Record>) {
        let mut inner = self.lock();
        if inner.epoch == ticket.0
            && !inner.ahead.contains_key(record.guid())
            && let Some(entries) = &mut inner.entries
        {
            entries.put_read(*record.guid(), Arc::clone(record));
        }
    }

    /// Applies this process's own committed changes (in revision order). Unshared, they are the
    /// whole log. Shared, a change the tailer has already passed is skipped (it applied that one
    /// and maybe later ones); the others are applied and remembered until the tailer passes them.
    pub(crate) fn apply_local(&self, changes: &[Change]) {
        let Some(last) = changes.last() else { return };
        let mut inner = self.lock();
        inner.epoch += 1;
        for change in changes {
            if inner.shared && change.revision() <= inner.applied {
                continue;
            }
            inner.put_or_remove(change);
            if inner.shared {
                inner.ahead.insert(*change.guid(), change.revision());
            }
        }
        if !inner.shared {
            inner.applied = inner.applied.max(last.revision());
        }
    }

    /// Applies changes read from the log, which must continue it: the first is `applied() + 1`
    /// and they are consecutive. A change older than a local commit of its GUID applied ahead of
    /// the log is skipped.
    pub(crate) fn apply_log(&self, changes: &[Change]) {
        let Some(last) = changes.last() else { return };
        let mut inner = self.lock();
        inner.epoch += 1;
        for change in changes {
            let newer_local = inner.ahead.get(change.guid()).is_some_and(|local| *local >= change.revision());
            if !newer_local {
                inner.put_or_remove(change);
            }
        }
        inner.applied = inner.applied.max(last.revision());
        let applied = inner.applied;
        inner.ahead.retain(|_, revision| *revision > applied);
    }

    /// Forgets every entry and continues the log after `applied` (the tailer fell behind the
    /// log's retention window, so some changes can no longer be read).
    pub(crate) fn reset(&self, applied: u64) {
        let mut inner = self.lock();
        inner.epoch += 1;
        if let Some(entries) = &mut inner.entries {
            entries.clear();
        }
        inner.ahead.clear();
        inner.applied = applied;
    }

    /// The revision up to which the log is reflected.
    pub(crate) fn applied(&self) -> u64 {
        self.lock().applied
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().entries.as_ref().map_or(0, Slru::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expiry, Metadata, Op};

    fn record_of(guid: Guid, n: i64) -> Arc<Record> {
        let metadata: Metadata = [("n".to_owned(), n.into())].into_iter().collect();
        Arc::new(Record::new(guid, Expiry::new_after(100, 0).unwrap(), metadata, n as u64))
    }

    fn record(expire: u64) -> Arc<Record> {
        Arc::new(Record::new(Guid::random(), Expiry::new_after(expire, 0).unwrap(), Metadata::new(), 1))
    }

    fn put(revision: u64, record: &Arc<Record>) -> Change {
        Change::put(revision, Op::Update, 0, Arc::clone(record))
    }

    fn n_of(cache: &Cache, guid: &Guid) -> Option<i64> {
        cache.get(guid, 0).ok().and_then(|r| r.metadata()["n"].as_i64())
    }

    #[test]
    fn a_read_that_raced_a_write_does_not_fill() {
        let cache = Cache::new(8, 0, false);
        let rec = record(100);
        let ticket = cache.get(rec.guid(), 10).unwrap_err();
        cache.apply_local(&[Change::remove(1, Op::Delete, 0, *rec.guid())]);
        cache.fill(ticket, &rec);
        assert!(cache.get(rec.guid(), 10).is_err());
        let ticket = cache.get(rec.guid(), 10).unwrap_err();
        cache.fill(ticket, &rec);
        assert!(cache.get(rec.guid(), 10).is_ok());
    }

    #[test]
    fn expired_entries_are_not_served() {
        let cache = Cache::new(8, 0, false);
        let rec = record(100);
        cache.apply_local(&[put(1, &rec)]);
        assert!(cache.get(rec.guid(), 99).is_ok());
        assert!(cache.get(rec.guid(), 100).is_err());
        assert_eq!(cache.len(), 0);
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[test]
    fn capacity_zero_disables_the_cache_but_not_the_revision() {
        let cache = Cache::new(0, 0, false);
        let rec = record(100);
        cache.apply_local(&[put(7, &rec)]);
        assert!(cache.get(rec.guid(), 10).is_err());
        assert_eq!((cache.len(), cache.applied()), (0, 7));
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let cache = Cache::new(2, 0, false);
        let (a, b, c) = (record(100), record(100), record(100));
        cache.apply_local(&[put(1, &a), put(2, &b)]);
        assert!(cache.get(a.guid(), 0).is_ok());
        cache.apply_local(&[put(3, &c)]);
        assert!(cache.get(b.guid(), 0).is_err());
        assert!(cache.get(a.guid(), 0).is_ok());
        assert!(cache.get(c.guid(), 0).is_ok());
    }

    /// Creates `count` records, committed `batch` at a time as the writer does, reading `reads`
    /// records of `hot` (in turn, from `next`) after each batch; returns the next to read.
    fn burst(cache: &Cache, revision: &mut u64, count: usize, hot: &[Arc<Record>], mut next: usize) -> usize {
        const BATCH: usize = 64;
        const READS: usize = 4;
        for _ in 0..count / BATCH {
            let changes: Vec<Change> = (0..BATCH)
                .map(|_| {
                    *revision += 1;
                    Change::put(*revision, Op::Create, 0, record(100))
                })
                .collect();
            cache.apply_local(&changes);
            for _ in 0..READS {
                let _ = cache.get(hot[next % hot.len()].guid(), 0);
                next += 1;
            }
        }
        next
    }

    #[test]
    fn a_read_set_survives_a_burst_of_creates_nobody_reads() {
        // The case: 10,000 records read in a loop, 200,000 creates into a 100,000-record cache.
        let cache = Cache::new(100_000, 0, false);
        let hot: Vec<Arc<Record>> = (0..10_000).map(|_| record(100)).collect();
        let mut revision = 0;
        for chunk in hot.chunks(64) {
            let changes: Vec<Change> = chunk
                .iter()
                .map(|rec| {
                    revision += 1;
                    put(revision, rec)
                })
                .collect();
            cache.apply_local(&changes);
        }
        for rec in &hot {
            assert!(cache.get(rec.guid(), 0).is_ok());
        }
        burst(&cache, &mut revision, 200_000, &hot, 0);
        let (hits, misses) = (cache.hits(), cache.misses());
        for rec in &hot {
            let _ = cache.get(rec.guid(), 0);
        }
        let after = (cache.hits() - hits, cache.misses() - misses);
        // Every one survives here; the issue asks for at least 95%.
        assert_eq!(after, (10_000, 0), "(hits, misses) of the read set after the burst");
        assert_eq!(cache.len(), 100_000);
    }

    #[test]
    fn a_record_read_once_from_storage_survives_a_burst_of_creates() {
        let cache = Cache::new(1_000, 0, false);
        let read: Vec<Arc<Record>> = (0..500).map(|_| record(100)).collect();
        for rec in &read {
            let ticket = cache.get(rec.guid(), 0).unwrap_err();
            cache.fill(ticket, rec);
        }
        let mut revision = 0;
        burst(&cache, &mut revision, 10_000, &read[..1], 0);
        assert!(read.iter().all(|rec| cache.get(rec.guid(), 0).is_ok()));
    }

    #[test]
    fn a_write_burst_larger_than_the_cache_leaves_later_reads_cached() {
        // Records read only once during the burst still enter the protected segment, so a read
        // set that changes over time is not locked out by an older one.
        let cache = Cache::new(1_000, 0, false);
        let old: Vec<Arc<Record>> = (0..800).map(|_| record(100)).collect();
        let new: Vec<Arc<Record>> = (0..800).map(|_| record(100)).collect();
        let mut revision = 0;
        for rec in old.iter().chain(&new) {
            revision += 1;
            cache.apply_local(&[put(revision, rec)]);
            let _ = cache.get(rec.guid(), 0);
        }
        burst(&cache, &mut revision, 5_000, &new, 0);
        assert!(new.iter().all(|rec| cache.get(rec.guid(), 0).is_ok()));
    }

    #[test]
    fn the_tailer_never_overwrites_a_newer_local_commit() {
        let cache = Cache::new(8, 8, true);
        let guid = Guid::random();
        // This process commits revision 10 before the tailer has read 9 (another process's).
        cache.apply_local(&[put(10, &record_of(guid, 10))]);
        cache.apply_log(&[put(9, &record_of(guid, 9))]);
        assert_eq!(n_of(&cache, &guid), Some(10));
        cache.apply_log(&[put(10, &record_of(guid, 10))]);
        cache.apply_log(&[put(11, &record_of(guid, 11))]);
        assert_eq!((n_of(&cache, &guid), cache.applied()), (Some(11), 11));
        // A delete ahead of the log is not undone by an older create from the log.
        cache.apply_local(&[Change::remove(13, Op::Delete, 0, guid)]);
        cache.apply_log(&[put(12, &record_of(guid, 12))]);
        assert_eq!(n_of(&cache, &guid), None);
    }

    #[test]
    fn a_local_commit_the_tailer_has_passed_is_not_applied_again() {
        let cache = Cache::new(8, 0, true);
        let guid = Guid::random();
        cache.apply_log(&[put(1, &record_of(guid, 1)), Change::remove(2, Op::Delete, 0, guid)]);
        // The writer answers late for revision 1: the log already shows its GUID deleted.
        cache.apply_local(&[put(1, &record_of(guid, 1))]);
        assert_eq!(n_of(&cache, &guid), None);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_shared_cache_hit_older_than_a_local_commit_is_not_cached() {
        // Capacity 1: a second GUID's commit evicts the first.
        let cache = Cache::new(1, 8, true);
        let (guid, other) = (Guid::random(), Guid::random());
        // This process commits 10 for `guid` (ahead of the tailer, at 8), then 11 for `other`.
        cache.apply_local(&[put(10, &record_of(guid, 10))]);
        cache.apply_local(&[put(11, &record_of(other, 11))]);
        // A read misses, and the shared cache proves `guid`'s entry of revision 9 current as of
        // the 9 the tailer has read: true then, older than the local commit.
        let ticket = cache.get(&guid, 0).unwrap_err();
        cache.fill_from_shared(ticket, &record_of(guid, 9));
        assert_eq!(n_of(&cache, &guid), None);
        // The tailer skips 9 and 10 (the local commit is newer or the same): nothing stale stays.
        cache.apply_log(&[put(9, &record_of(guid, 9)), put(10, &record_of(guid, 10)), put(11, &record_of(other, 11))]);
        assert_eq!((n_of(&cache, &guid), cache.applied()), (None, 11));
        // Once the tailer has passed it, a hit is cached again.
        let ticket = cache.get(&guid, 0).unwrap_err();
        cache.fill_from_shared(ticket, &record_of(guid, 10));
        assert_eq!(n_of(&cache, &guid), Some(10));
    }

    #[test]
    fn a_reset_forgets_everything() {
        let cache = Cache::new(8, 0, true);
        let rec = record(100);
        cache.apply_log(&[put(1, &rec)]);
        cache.reset(50);
        assert!(cache.get(rec.guid(), 0).is_err());
        assert_eq!(cache.applied(), 50);
    }
}
