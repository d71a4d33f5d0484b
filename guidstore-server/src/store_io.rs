//! The async bridge to the store's blocking calls: reads that miss the cache and the health check
//! run on `spawn_blocking`, never on a runtime worker thread. Writes need no bridge: the store's
//! `*_async` methods return a runtime-neutral `Pending` future that the handlers await directly
//! (the writer thread does the work). Routing and HTTP are not here (`routes.rs`).

use std::sync::Arc;

use guidstore::{Guid, Record, Store};

use crate::error::ApiError;

/// The live record `guid`: from the cache inline, or from storage on a blocking thread.
pub async fn get(store: &Arc<Store>, guid: Guid) -> Result<Arc<Record>, ApiError> {
    if let Some(record) = store.get_cached(&guid) {
        return Ok(record);
    }
    let store = Arc::clone(store);
    Ok(tokio::task::spawn_blocking(move || store.get(&guid)).await??)
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
