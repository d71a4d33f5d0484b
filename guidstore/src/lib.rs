//! guidstore: a registry of GUIDs and their metadata, each valid until an expiry time.
//!
//! The library owns every rule of the registry — what a valid GUID and expiry are, what a record
//! is, how merge-patch updates and `If-Match` preconditions work, when a record has expired — and
//! keeps records durably in SQLite behind a record cache (segmented LRU). It knows nothing of HTTP
//! or async runtimes: every call is synchronous and the [`Store`] is `Send + Sync`.
//!
//! ```
//! use guidstore::{Guid, IfMatch, NewRecord, Patch, Store};
//!
//! # fn main() -> Result<(), guidstore::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("guids.db"))?;
//!
//! // Create from a JSON body, exactly as the HTTP API does (an empty body means `{}`).
//! let now = store.now();
//! let record = store.create(NewRecord::parse(br#"{"user": "Jay Patel"}"#, None, now)?)?;
//! println!("{}", record.to_json()); // {"guid":"…","expire":"…","user":"Jay Patel"}
//!
//! // Read it back, then change it only if nobody else has.
//! let guid: Guid = *record.guid();
//! assert_eq!(store.get(&guid)?.metadata()["user"], "Jay Patel");
//! let patch = Patch::parse(br#"{"team": "ops"}"#, &guid, store.now())?;
//! let updated = store.update(&guid, patch, Some(IfMatch::parse(&record.etag())))?;
//! assert_ne!(updated.etag(), record.etag());
//!
//! store.delete(&guid, None)?;
//! assert_eq!(store.get(&guid).unwrap_err().code(), "not_found");
//! # Ok(()) }
//! ```
//!
//! Modules:
//! - `guid`: [`Guid`], parsed, never built from unchecked text.
//! - `expiry`: [`Expiry`] and the [`Clock`] ([`SystemClock`], [`ManualClock`]).
//! - `record`: [`Record`], [`NewRecord`], [`Patch`] (RFC 7396), [`IfMatch`].
//! - `json`: strict JSON parsing (duplicate keys and deep nesting rejected).
//! - `error`: [`Error`], its stable [`Code`], and the driver-neutral [`StorageError`].
//! - `change`: [`Change`] and [`Op`]: a committed change with its revision.
//! - `feed`: the change feed's fan-out to waiting consumers ([`Store::events_after`],
//!   [`Store::wait_for_changes_after`]).
//! - `pending`: [`Pending`], the runtime-neutral answer to a write (a `Future`, or `wait()`).
//! - `store`: [`Store`] and its [`Options`]: reads, the write API, the file lock.
//! - `shared`: what a store shares with its writer thread and its tailer, and the tailer's reading
//!   of the change log into the cache and the feed.
//! - `transfer`: [`Store::export`] and [`Store::import`] of NDJSON.
//! - `import`: what an import hands to the writer and gets back: [`OnConflict`], [`ImportStats`].
//! - `writer`: the writer thread, group commit, and the rules applied to each batch of writes.
//! - `cache`: the cache of records (a segmented LRU: records read outlive bursts of creates), kept
//!   in step with the change log; `cache::redis` (feature `redis`) the shared cache level in Redis,
//!   used only when proven current.
//! - `coherence`: the tailer that applies other processes' changes to the cache, and the shared
//!   freshness rounds that make reads from memory linearizable on a shared database.
//! - `backend`: the storage seam (`Backend`, `Transaction`); `backend::sqlite` is the embedded
//!   SQLite storage and `backend::vfs` the VFS shim its write connection uses.
#![deny(missing_docs)]

mod backend;
mod cache;
mod change;
mod coherence;
mod error;
mod expiry;
mod feed;
mod guid;
mod import;
mod json;
mod pending;
mod record;
mod shared;
mod store;
mod transfer;
mod writer;

/// The README's Rust code blocks, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use backend::location::{Location, redact_url};
pub use backend::sqlite::Synchronous;
pub use change::{Change, Op};
pub use error::{Code, Error, Result, StorageError};
pub use expiry::{Clock, DEFAULT_TTL_SECS, Expiry, ExpiryError, MAX_EXPIRE, ManualClock, SystemClock};
pub use guid::{GUID_LEN, Guid, GuidError};
pub use import::{ImportStats, OnConflict};
pub use pending::Pending;
pub use record::{IfMatch, Metadata, NewRecord, Patch, Record, merge_value, parse_json, parse_json_object};
pub use store::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_DB_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_POOL_SIZE, DEFAULT_PURGE_BATCH,
    DEFAULT_REDIS_TIMEOUT, DEFAULT_REDIS_TTL, DEFAULT_TAIL_INTERVAL, LONGEST_TIMEOUT, Options, SharedCacheStats, Stats,
    Store, lock_owner,
};
pub use transfer::{ExportError, IMPORT_BATCH, ImportError, SQLITE_IMPORT_BATCH};
