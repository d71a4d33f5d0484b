//! [`Error`]: the one error type of the library, and [`Code`], the stable machine code of every
//! error. Front-ends map codes to their own vocabulary (HTTP status, exit code, metrics label) with
//! an exhaustive `match` on [`Code`]; the library picks none.
//!
//! No storage driver's type appears here: a storage failure is a [`StorageError`], which says
//! whether it is transient and keeps its cause for the log.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{ExpiryError, Guid, GuidError};

/// The stable machine code of an error, as the HTTP API's error bodies and the CLI's messages
/// spell it (`invalid_guid`, `not_found`, ...).
///
/// Some codes are produced only by front-ends (`method_not_allowed`, `unauthorized`); they are
/// listed here so that every front-end shares one vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// A GUID that is not 32 uppercase hexadecimal characters.
    InvalidGuid,
    /// An `expire` that breaks the rules.
    InvalidExpire,
    /// Metadata that breaks a rule.
    InvalidMetadata,
    /// A body that is not a JSON object.
    InvalidJson,
    /// A query parameter that is not valid (e.g. `after=x` on `/events`).
    InvalidQuery,
    /// A body `guid` that differs from the path's.
    GuidMismatch,
    /// An update that tries to change the GUID.
    GuidImmutable,
    /// No live record (or no resource).
    NotFound,
    /// A live record already has the GUID.
    AlreadyExists,
    /// The resource does not support the method.
    MethodNotAllowed,
    /// A body, or a record after an update, larger than the limit.
    PayloadTooLarge,
    /// An `If-Match` precondition failed.
    PreconditionFailed,
    /// Missing or wrong credentials.
    Unauthorized,
    /// A change-feed position older than the oldest change kept.
    EventsTruncated,
    /// Storage is temporarily unable to answer; retrying later can succeed.
    Unavailable,
    /// Any other failure.
    Internal,
}

impl Code {
    /// Every code, in documentation order.
    pub const ALL: [Code; 16] = [
        Code::InvalidGuid,
        Code::InvalidExpire,
        Code::InvalidMetadata,
        Code::InvalidJson,
        Code::InvalidQuery,
        Code::GuidMismatch,
        Code::GuidImmutable,
        Code::NotFound,
        Code::AlreadyExists,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::PreconditionFailed,
        Code::Unauthorized,
        Code::EventsTruncated,
        Code::Unavailable,
        Code::Internal,
    ];

    /// The code as written in error bodies: `invalid_guid`, `not_found`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidGuid => "invalid_guid",
            Code::InvalidExpire => "invalid_expire",
            Code::InvalidMetadata => "invalid_metadata",
            Code::InvalidJson => "invalid_json",
            Code::InvalidQuery => "invalid_query",
            Code::GuidMismatch => "guid_mismatch",
            Code::GuidImmutable => "guid_immutable",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::PayloadTooLarge => "payload_too_large",
            Code::PreconditionFailed => "precondition_failed",
            Code::Unauthorized => "unauthorized",
            Code::EventsTruncated => "events_truncated",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }

    /// The code written as `text`, if it is one (for a client reading an error body).
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// Whether the code blames the request (bad input, a state conflict, missing credentials)
    /// rather than the service (`unavailable`, `internal`).
    pub fn is_client_error(self) -> bool {
        !matches!(self, Code::Unavailable | Code::Internal)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// A failure of the storage engine (SQLite, PostgreSQL, MySQL), with no driver type in its
/// signature. Cheap to clone: every write of a failed group commit gets a copy.
#[derive(Debug, Clone)]
pub struct StorageError {
    transient: bool,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    /// A fault that may clear by itself (connection lost, disk full, read-only, busy, timeout).
    pub fn transient(message: impl Into<String>) -> StorageError {
        StorageError { transient: true, message: message.into(), source: None }
    }

    /// A fault that retrying will not clear (corrupt data, a bug, an unexpected schema).
    pub fn permanent(message: impl Into<String>) -> StorageError {
        StorageError { transient: false, message: message.into(), source: None }
    }

    /// The same error, keeping `source` as its cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> StorageError {
        self.source = Some(Arc::new(source));
        self
    }

    /// A new error saying `message`, as transient as `cause`, with `cause` as its source.
    pub fn context(message: impl Into<String>, cause: StorageError) -> StorageError {
        StorageError { transient: cause.transient, message: message.into(), source: None }.with_source(cause)
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Display for StorageError {
    /// The message and its chain of causes (drivers often say little at the top: "db error"),
    /// skipping a cause whose text is already written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = self.message.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static));
        while let Some(error) = cause {
            let text = error.to_string();
            if !written.contains(&text) {
                written.push_str(": ");
                written.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&written)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// Every failure the library reports.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A GUID that is not 32 uppercase hexadecimal characters.
    #[error(transparent)]
    InvalidGuid(#[from] GuidError),
    /// An `expire` that breaks the rules (format, future, upper bound).
    #[error(transparent)]
    InvalidExpire(#[from] ExpiryError),
    /// Metadata that breaks a rule (for example `user` not a non-empty string).
    #[error("{0}")]
    InvalidMetadata(String),
    /// A body that is not a JSON object: invalid JSON or UTF-8, a duplicate key, too deep, not an object.
    #[error("request body must be a JSON object: {0}")]
    InvalidJson(String),
    /// A body `guid` that differs from the GUID the request names.
    #[error("body guid {body:?} does not match the GUID in the path ({path})")]
    GuidMismatch {
        /// The GUID the request names.
        path: Guid,
        /// The `guid` value of the body, as given.
        body: String,
    },
    /// An update that tries to change the GUID.
    #[error("guid cannot be changed (record {0})")]
    GuidImmutable(Guid),
    /// No live record has this GUID (never created, deleted, or expired).
    #[error("no record with GUID {0}")]
    NotFound(Guid),
    /// A live record already has this GUID.
    #[error("a record with GUID {0} already exists")]
    AlreadyExists(Guid),
    /// An `If-Match` precondition did not match the record's current entity-tag.
    #[error("record {0} does not match the given entity-tag")]
    PreconditionFailed(Guid),
    /// A record that would render to more bytes than the store accepts
    /// ([`Options::max_record_bytes`](crate::Options::max_record_bytes)); nothing was written.
    #[error("the record would be {size} bytes, more than the limit of {limit}")]
    RecordTooLarge {
        /// The size the record would have, in bytes of JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A change-feed position older than the oldest change the log still holds: the consumer
    /// must read the registry again.
    #[error("changes after revision {after} are no longer kept (the oldest kept is {oldest}); read the registry again")]
    EventsTruncated {
        /// The revision asked for.
        after: u64,
        /// The oldest revision kept.
        oldest: u64,
    },
    /// A storage URL that cannot be used: malformed, an unknown scheme, or a backend this build
    /// does not include.
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database file is in use by another process's [`Store`](crate::Store).
    #[error("database {path} is in use by another process{}", owner_suffix(.owner))]
    Locked {
        /// The database file.
        path: PathBuf,
        /// What the owner wrote in the lock file: a server writes its URL.
        owner: Option<String>,
    },
    /// The database exists but is not a guidstore database (another schema, or not a database).
    #[error("{path} is not a guidstore database: {reason}")]
    NotAGuidstoreDatabase {
        /// The database (a file path, or a redacted URL).
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The database was written by a newer guidstore (its schema version is unknown here).
    #[error("database schema version {found} is newer than this guidstore supports ({supported})")]
    UnsupportedSchema {
        /// The version in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The database cannot be opened (missing directory, permissions, ...).
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying cause.
        source: Arc<std::io::Error>,
    },
    /// The storage engine failed: transient faults (read-only, disk full, connection lost, timeout)
    /// are `unavailable`, the rest `internal`.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// The store's writer has stopped (the store is closing or a thread failed).
    #[error("store is closed")]
    Closed,
}

fn owner_suffix(owner: &Option<String>) -> String {
    match owner {
        Some(owner) if !owner.is_empty() => format!(" ({owner})"),
        _ => String::new(),
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable machine code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidGuid(_) => Code::InvalidGuid,
            Error::InvalidExpire(_) => Code::InvalidExpire,
            Error::InvalidMetadata(_) => Code::InvalidMetadata,
            Error::InvalidJson(_) => Code::InvalidJson,
            Error::GuidMismatch { .. } => Code::GuidMismatch,
            Error::GuidImmutable(_) => Code::GuidImmutable,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::PreconditionFailed(_) => Code::PreconditionFailed,
            Error::RecordTooLarge { .. } => Code::PayloadTooLarge,
            Error::EventsTruncated { .. } => Code::EventsTruncated,
            Error::Locked { .. } | Error::Closed => Code::Unavailable,
            Error::Storage(error) if error.is_transient() => Code::Unavailable,
            Error::InvalidUrl { .. }
            | Error::NotAGuidstoreDatabase { .. }
            | Error::UnsupportedSchema { .. }
            | Error::Open { .. }
            | Error::Storage(_) => Code::Internal,
        }
    }

    /// Whether the error is the caller's fault (bad input or a state conflict), as opposed to a
    /// failure of storage.
    pub fn is_client_error(&self) -> bool {
        self.code().is_client_error()
    }

    /// An [`Error::Open`] for `path`.
    pub(crate) fn open(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Open { path: path.into(), source: Arc::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_text() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert_eq!(code, code.as_str());
        }
        assert_eq!(Code::parse("something_new"), None);
        assert_eq!(Code::parse(""), None);
    }

    #[test]
    fn storage_errors_are_unavailable_only_when_transient() {
        assert_eq!(Error::from(StorageError::transient("disk full")).code(), Code::Unavailable);
        assert_eq!(Error::from(StorageError::permanent("corrupt")).code(), Code::Internal);
        let with_source = StorageError::transient("connect").with_source(std::io::Error::other("refused"));
        assert_eq!(with_source.to_string(), "connect: refused");
        let nested = StorageError::context("cannot connect", with_source.clone());
        assert!(nested.is_transient());
        assert_eq!(nested.to_string(), "cannot connect: connect: refused");
        assert!(std::error::Error::source(&with_source).is_some());
    }
}
