//! guidstore: a registry of GUIDs and their metadata, each valid until an expiry time.
//!
//! The library owns every rule of the registry — what a valid GUID and expiry are, what a record
//! is, how merge-patch updates and `If-Match` preconditions work, when a record has expired — and
//! keeps records durably in SQLite behind an LRU cache. It knows nothing of HTTP or async runtimes:
//! every call is synchronous and the [`Store`] is `Send + Sync`.
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
//! - `error`: [`Error`], with a stable [`Error::code`].
//! - `store`: [`Store`], its [`Options`], the writer thread and group commit.
//! - `cache`: the LRU cache of records.
//! - `backend`: the [`Backend`] / [`Transaction`] seam for storage engines.
//! - `sqlite`: [`SqliteBackend`], the embedded default.
#![deny(missing_docs)]

mod backend;
mod cache;
mod error;
mod expiry;
mod guid;
mod json;
mod record;
mod sqlite;
mod store;
mod vfs;

/// The README's Rust code blocks, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use backend::{Backend, Transaction};
pub use error::{Error, Result};
pub use expiry::{Clock, DEFAULT_TTL_SECS, Expiry, ExpiryError, MAX_EXPIRE, ManualClock, SystemClock};
pub use guid::{GUID_LEN, Guid, GuidError};
pub use record::{IfMatch, Metadata, NewRecord, Patch, Record, merge_value, parse_json, parse_json_object};
pub use sqlite::{SqliteBackend, Synchronous};
pub use store::{DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_BODY, DEFAULT_PURGE_BATCH, Options, Reply, Stats, Store, Write, WriteOutcome, lock_owner};
