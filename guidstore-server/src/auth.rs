//! [`Auth`]: optional bearer-token authentication (`--auth-token-file`).
//!
//! Tokens are read once at startup, one per line (surrounding whitespace and blank lines ignored).
//! A request passes when its `Authorization: Bearer TOKEN` names one of them; the comparison
//! (`subtle`'s constant-time equality, against every token) takes the same time wherever the first
//! differing byte is. Tokens are never logged nor shown by `Debug`.

use std::path::{Path, PathBuf};

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use subtle::{Choice, ConstantTimeEq};

/// The accepted bearer tokens.
pub struct Auth {
    tokens: Vec<Box<[u8]>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("tokens", &format_args!("[{} redacted]", self.tokens.len())).finish()
    }
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("token file {0} holds no token")]
    Empty(PathBuf),
}

impl Auth {
    /// Reads the token file at `path`: one token per line.
    pub fn from_file(path: &Path) -> Result<Auth, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read { path: path.to_owned(), source })?;
        Auth::from_tokens(text.lines()).ok_or_else(|| AuthError::Empty(path.to_owned()))
    }

    /// Accepts these tokens (trimmed; empty ones skipped). `None` if none is left.
    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Option<Auth> {
        let tokens: Vec<Box<[u8]>> = tokens
            .into_iter()
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(|token| token.as_bytes().into())
            .collect();
        (!tokens.is_empty()).then_some(Auth { tokens })
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: an `Auth` holds at least one token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether the request's `Authorization` header carries an accepted bearer token.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else { return false };
        let Some(token) = bearer_token(value.as_bytes()) else { return false };
        // Compare against every token, without stopping at the first match.
        let found = self.tokens.iter().fold(Choice::from(0), |found, accepted| found | accepted.ct_eq(token));
        found.into()
    }
}

/// The token of a `Bearer` credential (scheme case-insensitive, RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..6)?;
    let rest = value.get(6..)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(authorization: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_bytes(authorization).unwrap());
        headers
    }

    #[test]
    fn token_file_lines_are_trimmed_and_blank_lines_skipped() {
        let auth = Auth::from_tokens("  alpha \n\n\tbeta\r\n".lines()).unwrap();
        assert_eq!(auth.len(), 2);
        assert!(auth.allows(&headers(b"Bearer alpha")));
        assert!(auth.allows(&headers(b"Bearer beta")));
        assert!(Auth::from_tokens(" \n\n".lines()).is_none());
    }

    #[test]
    fn only_bearer_credentials_with_an_accepted_token_pass() {
        let auth = Auth::from_tokens(["s3cret"]).unwrap();
        let cases: [(&[u8], bool); 11] = [
            (b"Bearer s3cret", true),
            (b"bearer s3cret", true),
            (b"BEARER   s3cret  ", true),
            (b"Bearer s3cre", false),
            (b"Bearer s3cret2", false),
            (b"Bearer S3CRET", false),
            (b"Bearers3cret", false),
            (b"Basic czNjcmV0", false),
            (b"Bearer", false),
            (b"", false),
            (b"Bearer \xe2\x82\xac", false),
        ];
        for (value, expected) in cases {
            assert_eq!(auth.allows(&headers(value)), expected, "{:?}", String::from_utf8_lossy(value));
        }
        assert!(!auth.allows(&HeaderMap::new()));
    }

    #[test]
    fn debug_output_redacts_tokens() {
        let auth = Auth::from_tokens(["s3cret"]).unwrap();
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn tokens_are_compared_whole() {
        let auth = Auth::from_tokens(["abc", "x"]).unwrap();
        for (value, expected) in
            [(&b"Bearer abc"[..], true), (b"Bearer abd", false), (b"Bearer ab", false), (b"Bearer abcd", false)]
        {
            assert_eq!(auth.allows(&headers(value)), expected, "{:?}", String::from_utf8_lossy(value));
        }
    }
}
