//! The async bridge to the store: the one place where the server's tasks wait for the
//! synchronous [`Store`] without blocking a runtime worker thread.
//!
//! Reads are served from the store's cache inline, otherwise on `spawn_blocking`; writes are
//! submitted to the store's writer thread and awaited on a oneshot channel. No SQLite call runs
//! on a runtime worker thread. Routing and HTTP are not here (`routes.rs`).

use std::sync::Arc;

use guidstore::{Guid, IfMatch, NewRecord, Patch, Record, Store, Write, WriteOutcome};

use crate::error::ApiError;

/// The live record `guid`: from the cache inline, or from storage on a blocking thread.
pub async fn get(store: &Arc<Store>, guid: Guid) -> Result<Arc<Record>, ApiError> {
    if let Some(record) = store.get_cached(&guid) {
        return Ok(record);
    }
    let store = Arc::clone(store);
    Ok(tokio::task::spawn_blocking(move || store.get(&guid)).await??)
}

/// Creates a record; the durable result.
pub async fn create(store: &Store, new_record: NewRecord) -> Result<Arc<Record>, guidstore::Error> {
    match write(store, Write::Create(new_record)).await? {
        WriteOutcome::Record(record) => Ok(record),
        other => Err(unexpected(other)),
    }
}

/// Merge-patches the live record `guid`, if `if_match` (when given) matches.
pub async fn update(
    store: &Store,
    guid: Guid,
    patch: Patch,
    if_match: Option<IfMatch>,
) -> Result<Arc<Record>, guidstore::Error> {
    match write(store, Write::Update { guid, patch, if_match }).await? {
        WriteOutcome::Record(record) => Ok(record),
        other => Err(unexpected(other)),
    }
}

/// Deletes the live record `guid`, if `if_match` (when given) matches.
pub async fn delete(store: &Store, guid: Guid, if_match: Option<IfMatch>) -> Result<(), guidstore::Error> {
    match write(store, Write::Delete { guid, if_match }).await? {
        WriteOutcome::Deleted => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Whether storage answers (`/healthz`), checked on a blocking thread.
pub async fn check(store: &Arc<Store>) -> Result<(), ApiError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.check()).await?.map_err(ApiError::Unhealthy)
}

/// Removes every expired record, `batch` at a time (one transaction each, through the writer
/// thread); how many were removed.
pub async fn purge_expired(store: &Store, batch: usize) -> Result<u64, guidstore::Error> {
    let batch = batch.max(1);
    let mut total = 0;
    loop {
        let removed = match write(store, Write::Purge { limit: batch }).await? {
            WriteOutcome::Purged(removed) => removed,
            other => return Err(unexpected(other)),
        };
        total += removed;
        if removed < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}

/// Submits a write to the store's writer thread and waits, without blocking, for its durable result.
async fn write(store: &Store, write: Write) -> Result<WriteOutcome, guidstore::Error> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    store.submit(write, move |result| {
        let _ = sender.send(result);
    });
    receiver.await.unwrap_or(Err(guidstore::Error::Closed))
}

/// A write answered with the outcome of another kind of write: a bug of the store, logged, and
/// answered as if the store had closed.
fn unexpected(outcome: WriteOutcome) -> guidstore::Error {
    log::error!("the store answered a write with an unexpected outcome: {outcome:?}");
    guidstore::Error::Closed
}
