//! [`Error`]: the one error type of the library, with a stable machine [`code`](Error::code) for
//! every variant. Front-ends map codes to their own vocabulary (HTTP status, exit code); the library
//! picks none.

use std::path::PathBuf;

use crate::{ExpiryError, Guid, GuidError};

/// Every failure the library reports.
#[derive(Debug, thiserror::Error)]
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
    /// The database file is in use by another process's [`Store`](crate::Store).
    #[error("database {path} is in use by another process{}", owner_suffix(.owner))]
    Locked {
        /// The database file.
        path: PathBuf,
        /// What the owner wrote in the lock file: a server writes its URL.
        owner: Option<String>,
    },
    /// The file exists but is not a guidstore database (another SQLite schema, or not SQLite at all).
    #[error("{path} is not a guidstore database: {reason}")]
    NotAGuidstoreDatabase {
        /// The database file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The database was written by a newer guidstore (its schema version is unknown here).
    #[error("database schema version {found} is newer than this guidstore supports ({supported})")]
    UnsupportedSchema {
        /// The version in the file.
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
        source: std::io::Error,
    },
    /// Storage is temporarily unable to write: read-only file or directory, disk full, busy.
    /// Reads may still work; retrying after the fault clears succeeds.
    #[error("storage unavailable: {}", describe(.0))]
    Unavailable(#[source] rusqlite::Error),
    /// Any other database failure.
    #[error("database error: {}", describe(.0))]
    Db(#[source] rusqlite::Error),
    /// The store's writer has stopped (the store is closing or a thread failed).
    #[error("store is closed")]
    Closed,
}

/// A rusqlite error with SQLite's extended result code, which names the failing system call
/// (e.g. `SQLITE_IOERR_WRITE`, `SQLITE_IOERR_FSYNC`, `SQLITE_READONLY_DBMOVED`).
fn describe(error: &rusqlite::Error) -> String {
    use rusqlite::ffi;
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let name = match failure.extended_code {
                ffi::SQLITE_IOERR_WRITE => " SQLITE_IOERR_WRITE",
                ffi::SQLITE_IOERR_FSYNC => " SQLITE_IOERR_FSYNC",
                ffi::SQLITE_IOERR_TRUNCATE => " SQLITE_IOERR_TRUNCATE",
                ffi::SQLITE_IOERR_SHMOPEN => " SQLITE_IOERR_SHMOPEN",
                ffi::SQLITE_IOERR_SHMSIZE => " SQLITE_IOERR_SHMSIZE",
                ffi::SQLITE_FULL => " SQLITE_FULL",
                ffi::SQLITE_READONLY => " SQLITE_READONLY",
                ffi::SQLITE_READONLY_DBMOVED => " SQLITE_READONLY_DBMOVED",
                ffi::SQLITE_CANTOPEN => " SQLITE_CANTOPEN",
                ffi::SQLITE_BUSY => " SQLITE_BUSY",
                _ => "",
            };
            let text = message.clone().unwrap_or_else(|| failure.to_string());
            format!("{text} (extended code {}{name})", failure.extended_code)
        }
        other => other.to_string(),
    }
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
    /// The stable machine code of this error, as used in API error bodies and CLI messages:
    /// `invalid_guid`, `invalid_expire`, `invalid_metadata`, `invalid_json`, `guid_mismatch`,
    /// `guid_immutable`, `not_found`, `already_exists`, `precondition_failed`, `unavailable`,
    /// or `internal` for everything else.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidGuid(_) => "invalid_guid",
            Error::InvalidExpire(_) => "invalid_expire",
            Error::InvalidMetadata(_) => "invalid_metadata",
            Error::InvalidJson(_) => "invalid_json",
            Error::GuidMismatch { .. } => "guid_mismatch",
            Error::GuidImmutable(_) => "guid_immutable",
            Error::NotFound(_) => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::PreconditionFailed(_) => "precondition_failed",
            Error::Unavailable(_) | Error::Locked { .. } | Error::Closed => "unavailable",
            Error::NotAGuidstoreDatabase { .. }
            | Error::UnsupportedSchema { .. }
            | Error::Open { .. }
            | Error::Db(_) => "internal",
        }
    }

    /// Whether the error is the caller's fault (bad input or a state conflict), as opposed to a
    /// failure of storage.
    pub fn is_client_error(&self) -> bool {
        !matches!(self.code(), "unavailable" | "internal")
    }

    /// Classifies a rusqlite error: faults that clear by themselves (read-only, disk full, busy,
    /// locked) become [`Error::Unavailable`], the rest [`Error::Db`].
    pub(crate) fn from_db(error: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode::*;
        match error.sqlite_error_code() {
            Some(ReadOnly | DiskFull | DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure) => {
                Error::Unavailable(error)
            }
            _ => Error::Db(error),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Error {
        Error::from_db(error)
    }
}
