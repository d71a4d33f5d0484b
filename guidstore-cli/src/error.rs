//! [`CliError`]: every failure of a command, with the API's machine code and the one mapping from
//! codes to exit codes ([`exit_code`]). Printing happens once, in `main`.

use std::io;

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
        code: String,
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

impl CliError {
    /// The machine code printed after `error:`: the API's codes, plus `usage` and `io`.
    pub fn code(&self) -> &str {
        match self {
            CliError::Store(error) => error.code(),
            CliError::Api { code, .. } => code,
            CliError::Usage(_) => "usage",
            CliError::Unavailable(_) => "unavailable",
            CliError::Io { .. } => "io",
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        exit_code(self.code())
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> CliError {
        CliError::Io { context: context.into(), source }
    }
}

/// The exit code of a machine code: 2 for bad input, 3 for `not_found`, 4 for conflicts, 1 for
/// everything else (storage, server, I/O, and codes this build does not know).
pub fn exit_code(code: &str) -> u8 {
    match code {
        "not_found" => EXIT_NOT_FOUND,
        "already_exists" | "precondition_failed" => EXIT_CONFLICT,
        "usage" | "invalid_guid" | "invalid_expire" | "invalid_metadata" | "invalid_json" | "guid_mismatch"
        | "guid_immutable" | "payload_too_large" | "method_not_allowed" | "unauthorized" => EXIT_USAGE,
        _ => EXIT_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_code_has_its_documented_exit_code() {
        let cases = [
            ("invalid_guid", 2),
            ("invalid_expire", 2),
            ("invalid_metadata", 2),
            ("invalid_json", 2),
            ("guid_mismatch", 2),
            ("guid_immutable", 2),
            ("payload_too_large", 2),
            ("method_not_allowed", 2),
            ("unauthorized", 2),
            ("usage", 2),
            ("not_found", 3),
            ("already_exists", 4),
            ("precondition_failed", 4),
            ("internal", 1),
            ("unavailable", 1),
            ("io", 1),
            ("", 1),
            ("something_new", 1),
        ];
        for (code, expected) in cases {
            assert_eq!(exit_code(code), expected, "{code}");
        }
    }

    #[test]
    fn library_errors_keep_their_code() {
        let error = CliError::from(guidstore::Error::from(guidstore::GuidError::Length(3)));
        assert_eq!(error.code(), "invalid_guid");
        assert_eq!(error.exit_code(), EXIT_USAGE);
    }
}
