//! [`CliError`]: every failure of a command, with the API's machine code and the one mapping from
//! codes to exit codes ([`exit_code`]). Printing happens once, in `main`.

use std::io;

use guidstore::Code;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: store, server or I/O failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: usage or invalid input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: not found.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: already exists or precondition failed.
pub const EXIT_CONFLICT: u8 = 4;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The library refused or failed (database mode, or local validation before a request).
    #[error(transparent)]
    Store(#[from] guidstore::Error),
    /// The server answered with an error body (or an error status without one).
    #[error("{message}")]
    Api {
        /// The machine code from the body (`not_found`, ...).
        code: Code,
        /// The human message from the body.
        message: String,
    },
    /// The command line cannot be carried out as given.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or answered something that is not HTTP.
    #[error("{0}")]
    Unavailable(String),
    /// Reading input or writing output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: io::Error,
    },
}

impl From<guidstore::ImportError> for CliError {
    fn from(error: guidstore::ImportError) -> CliError {
        match error {
            guidstore::ImportError::Line { line, error } => {
                CliError::Api { code: error.code(), message: format!("line {line}: {error}") }
            }
            guidstore::ImportError::Conflict { .. } => {
                CliError::Api { code: guidstore::Code::AlreadyExists, message: error.to_string() }
            }
            guidstore::ImportError::Read(source) => CliError::io("reading the input", source),
            guidstore::ImportError::Store(error) => CliError::Store(error),
        }
    }
}

impl CliError {
    /// The machine code printed after `error:`: the API's codes, plus `usage` and `io`.
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Store(error) => error.code().as_str(),
            CliError::Api { code, .. } => code.as_str(),
            CliError::Usage(_) => "usage",
            CliError::Unavailable(_) => "unavailable",
            CliError::Io { .. } => "io",
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Store(error) => exit_code(error.code()),
            CliError::Api { code, .. } => exit_code(*code),
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Unavailable(_) | CliError::Io { .. } => EXIT_FAILURE,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> CliError {
        CliError::Io { context: context.into(), source }
    }
}

/// The exit code of an API code: 2 for bad input, 3 for `not_found`, 4 for conflicts, 1 for
/// failures of the store or server.
pub fn exit_code(code: Code) -> u8 {
    match code {
        Code::NotFound => EXIT_NOT_FOUND,
        Code::AlreadyExists | Code::PreconditionFailed => EXIT_CONFLICT,
        Code::InvalidGuid
        | Code::InvalidExpire
        | Code::InvalidMetadata
        | Code::InvalidJson
        | Code::InvalidQuery
        | Code::GuidMismatch
        | Code::GuidImmutable
        | Code::PayloadTooLarge
        | Code::MethodNotAllowed
        | Code::Unauthorized
        | Code::EventsTruncated => EXIT_USAGE,
        Code::Unavailable | Code::Internal => EXIT_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_code_has_its_documented_exit_code() {
        let cases = [
            ("events_truncated", 2),
            ("invalid_guid", 2),
            ("invalid_expire", 2),
            ("invalid_metadata", 2),
            ("invalid_json", 2),
            ("invalid_query", 2),
            ("guid_mismatch", 2),
            ("guid_immutable", 2),
            ("payload_too_large", 2),
            ("method_not_allowed", 2),
            ("unauthorized", 2),
            ("not_found", 3),
            ("already_exists", 4),
            ("precondition_failed", 4),
            ("internal", 1),
            ("unavailable", 1),
        ];
        for (code, expected) in cases {
            let parsed = Code::parse(code).unwrap();
            assert_eq!(exit_code(parsed), expected, "{code}");
            assert_eq!(CliError::Api { code: parsed, message: String::new() }.exit_code(), expected, "{code}");
        }
        assert_eq!(cases.len(), Code::ALL.len());
        assert_eq!(CliError::Usage(String::new()).exit_code(), 2);
        assert_eq!(CliError::io("x", io::Error::other("y")).exit_code(), 1);
    }

    #[test]
    fn library_errors_keep_their_code() {
        let error = CliError::from(guidstore::Error::from(guidstore::GuidError::Length(3)));
        assert_eq!(error.code(), "invalid_guid");
        assert_eq!(error.exit_code(), EXIT_USAGE);
    }
}
