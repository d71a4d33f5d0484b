//! The storage seam: [`Backend`] and [`Transaction`]. The [`Store`](crate::Store) keeps the rules
//! (expiry, conflicts, preconditions, caching, group commit); a backend only loads and saves
//! records. [`SqliteBackend`](crate::SqliteBackend) is the embedded default; a network SQL backend
//! implements the same two traits.

use crate::{Guid, Record, Result};

/// One write transaction, driven by the store's single writer thread.
pub trait Transaction {
    /// The stored record with this GUID, expired or not.
    fn load(&mut self, guid: &Guid) -> Result<Option<Record>>;
    /// Inserts the record, or updates the stored one with the same GUID in place.
    fn put(&mut self, record: &Record) -> Result<()>;
    /// Inserts the record unless a live one (`expire > now`) has its GUID; an expired one is
    /// replaced. Whether it was written.
    fn insert_unless_live(&mut self, record: &Record, now: u64) -> Result<bool>;
    /// Removes the record; whether one was stored.
    fn remove(&mut self, guid: &Guid) -> Result<bool>;
    /// Removes up to `limit` records with `expire <= now`; how many were removed.
    fn purge_expired(&mut self, now: u64, limit: usize) -> Result<u64>;
}

/// Durable storage of records.
///
/// `write` is called only from the store's writer thread, one call at a time; `load`, `count_live`
/// and `check` may be called from any thread, concurrently with `write`, and must see every
/// committed write.
pub trait Backend: Send + Sync + 'static {
    /// The stored record with this GUID, expired or not.
    fn load(&self, guid: &Guid) -> Result<Option<Record>>;

    /// Runs `work` in one transaction: committed durably if `work` returns `Ok`, rolled back
    /// otherwise. Returns only after the commit is durable.
    fn write(&self, work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;

    /// How many records are live (`expire > now`).
    fn count_live(&self, now: u64) -> Result<u64>;

    /// Whether storage answers a trivial query (for health checks).
    fn check(&self) -> Result<()>;

    /// Flushes whatever the backend keeps in memory before the store closes (e.g. a WAL checkpoint).
    fn close(&self) -> Result<()> {
        Ok(())
    }
}
