//! The storage seam: [`Backend`] and [`Transaction`]. The [`Store`](crate::Store) keeps every rule
//! (expiry, conflicts, preconditions, merge patches, caching, group commit, revisions); a backend
//! only loads records and saves the changes the store computed, with their revisions, in one
//! transaction.
//!
//! Backends: [`sqlite`] (the embedded default, always built). Each lives in its own file.

pub(crate) mod sqlite;
mod vfs;

use crate::{Change, Guid, Record, Result};

/// One write transaction, driven by the store's writer thread. Between its start and its end no
/// other write transaction commits on the same database (the backend serializes them), so what
/// [`Transaction::load`] returns stays true until the commit.
pub(crate) trait Transaction {
    /// The revision of the newest change committed before this transaction (0 when none).
    fn revision(&self) -> u64;
    /// The stored records with these GUIDs, expired or not; absent ones are left out.
    fn load(&mut self, guids: &[Guid]) -> Result<Vec<Record>>;
    /// Up to `limit` GUIDs of stored records with `expire <= now`.
    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<Guid>>;
    /// Saves `changes` (in revision order, numbered on from [`Transaction::revision`]): the
    /// records they leave, and the changes themselves in the change log.
    fn apply(&mut self, changes: &[Change]) -> Result<()>;
}

/// Durable storage of records and of the change log.
///
/// `write` is called only from the store's writer thread, one call at a time; the other methods
/// may be called from any thread, concurrently with `write`, and see every committed write.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The stored record with this GUID, expired or not.
    fn load(&self, guid: &Guid) -> Result<Option<Record>>;

    /// Runs `work` in one transaction: committed durably if `work` returns `Ok`, rolled back
    /// otherwise. Returns only after the commit is durable.
    fn write(&self, work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;

    /// The revision of the newest committed change (0 when none).
    fn revision(&self) -> Result<u64>;

    /// Up to `limit` committed changes with revisions above `after`, in revision order.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>>;

    /// The revision of the oldest change the log still holds (`None` when it is empty).
    fn oldest_revision(&self) -> Result<Option<u64>>;

    /// How many records are live (`expire > now`).
    fn count_live(&self, now: u64) -> Result<u64>;

    /// Whether storage answers a trivial query (for health checks).
    fn check(&self) -> Result<()>;

    /// Flushes whatever the backend keeps in memory before the store closes (e.g. a WAL checkpoint).
    fn close(&self) -> Result<()> {
        Ok(())
    }
}
