//! The async bridge to the store's calls. Reads are awaited directly: the freshness round (a
//! runtime-neutral `Pending`), and a miss's Redis lookup and database read
//! (`Store::get_current_async`: on a network database the library's own runtime drives the
//! drivers, on a SQLite file the library's lookup threads read it, and either wakes the task; no
//! runtime thread blocks). Misses on an in-memory database, the health check and the other
//! blocking calls run on `spawn_blocking`, never on a runtime worker thread. Writes need no bridge: the store's
//! `*_async` methods return a `Pending` that the handlers await (the writer thread does the work).
//! Routing and HTTP are not here (`routes.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use guidstore::{Guid, Record, Store};

use crate::error::ApiError;

/// The live record `guid`: from the cache inline, else awaited from Redis or the database (see
/// `get_uncached`).
///
/// On a shared database (several servers) the cache is first brought up to date by a freshness
/// round shared with every read waiting at the time, so the answer reflects every write
/// acknowledged before the request, by any server — unless `max_stale` accepts the cache as it
/// is: it is at most [`Store::staleness`] behind the database, the time since the last round began.
///
/// A read that needs the database fails as `503 unavailable` at `started` (when the request
/// began) + [`Store::timeout`] at the latest, without a timer of its own on the common path:
/// - the freshness round answers by its own deadline, which is no later than one timeout after
///   the read joined it (the round carries the deadline, one timer per round: see the library's
///   `coherence.rs`), and the read joined after `started`;
/// - a cache miss after it (rare on hot records) is the only wait that arms a timer, at
///   `started + timeout`: what is left of the read's budget.
///
/// So the read ends by `started + timeout` plus the CPU time between `started` and its joining
/// the round (parsing the request), and never waits for the database longer than one timeout.
pub async fn get(
    store: &Arc<Store>,
    guid: Guid,
    max_stale: Option<Duration>,
    started: Instant,
) -> Result<Arc<Record>, ApiError> {
    if store.is_shared() {
        let fresh_enough = max_stale.zip(store.staleness()).is_some_and(|(accepted, behind)| behind <= accepted);
        if !fresh_enough {
            store.sync_async().await?;
        }
    }
    if let Some(record) = store.get_cached(&guid) {
        return Ok(record);
    }
    let Some(timeout) = store.timeout() else { return get_uncached(store, guid).await };
    match tokio::time::timeout_at((started + timeout).into(), get_uncached(store, guid)).await {
        Ok(result) => result,
        Err(_) => Err(guidstore::Error::from(guidstore::StorageError::transient(format!(
            "the database did not answer within {timeout:?} (a read)"
        )))
        .into()),
    }
}

/// A cache miss: awaited from Redis or the database (a network one, or a SQLite file's lookup
/// threads), or read from an in-memory database on a blocking thread.
async fn get_uncached(store: &Arc<Store>, guid: Guid) -> Result<Arc<Record>, ApiError> {
    if store.reads_without_blocking() {
        return Ok(store.get_current_async(&guid).await?);
    }
    let store = Arc::clone(store);
    Ok(tokio::task::spawn_blocking(move || store.get_current(&guid)).await??)
}

/// How many revisions the cache is behind the database (a query: for `/metrics` only). `None` when
/// the store is not shared or the database does not answer.
pub async fn revisions_behind(store: &Arc<Store>) -> Option<u64> {
    if !store.is_shared() {
        return None;
    }
    let store = Arc::clone(store);
    let newest = tokio::task::spawn_blocking(move || store.revision().map(|newest| (newest, store.counters()))).await;
    match newest {
        Ok(Ok((newest, counters))) => Some(newest.saturating_sub(counters.applied_revision)),
        _ => None,
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
    store.purge_all_expired_async(batch).await
}

/// Trims the change log to `retention` (and `count`), on a blocking thread; how many changes were
/// removed.
pub async fn trim_changes(store: &Arc<Store>, retention: Duration, count: Option<u64>) -> Result<u64, ApiError> {
    let store = Arc::clone(store);
    Ok(tokio::task::spawn_blocking(move || store.trim_changes(Some(retention), count)).await??)
}

/// Up to `limit` changes after `after` for a change-feed consumer, on a blocking thread (recent
/// ones come from memory, older ones from the change log).
pub async fn events_after(store: &Arc<Store>, after: u64, limit: usize) -> Result<Vec<guidstore::Change>, ApiError> {
    let store = Arc::clone(store);
    Ok(tokio::task::spawn_blocking(move || store.events_after(after, limit)).await??)
}
