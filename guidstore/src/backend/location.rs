//! [`Location`]: where a registry's records live, from the one storage URL every front-end takes
//! (`--db`, `GUIDSTORE_DB`, [`Store::open_url`](crate::Store::open_url)).
//!
//! - a plain path, or `sqlite:PATH` → SQLite;
//! - `postgres://…` or `postgresql://…` → PostgreSQL (cargo feature `postgres`);
//! - `mysql://…` or `mariadb://…` → MariaDB/MySQL (cargo feature `mysql`).
//!
//! A network URL's TLS parameters (`sslmode`, `sslrootcert`, `ssl-mode`, `ssl-ca`) are read by its
//! backend (`backend/tls.rs`). A password may be in the URL or, when it is not, in `PGPASSWORD` /
//! `MYSQL_PWD`. It never
//! appears in a [`Location`]'s `Display`, in an error, or in a log line: see [`redact_url`].

use std::fmt;
use std::path::PathBuf;

use crate::{Error, Result};

/// Where a store keeps its records.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, as a `postgres://` URL (password included, if given).
    Postgres(String),
    /// A MariaDB or MySQL database, as a `mysql://` URL (password included, if given).
    Mysql(String),
}

impl Location {
    /// Parses a storage URL or path. Only the scheme is checked here; the rest of a network URL is
    /// checked by its driver when the store opens.
    pub fn parse(text: &str) -> Result<Location> {
        let invalid = |reason: &str| Error::InvalidUrl { url: redact_url(text), reason: reason.to_owned() };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if let Some(path) = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")) {
            return if path.is_empty() {
                Err(invalid("sqlite: needs a file path"))
            } else {
                Ok(Location::Sqlite(path.into()))
            };
        }
        let Some((scheme, rest)) = text.split_once("://") else { return Ok(Location::Sqlite(text.into())) };
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') {
            // Not a scheme (e.g. a path with "://" in a directory name).
            return Ok(Location::Sqlite(text.into()));
        }
        if rest.is_empty() {
            return Err(invalid("it names no host"));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Location::Postgres(format!("postgres://{rest}"))),
            "mysql" | "mariadb" => Ok(Location::Mysql(format!("mysql://{rest}"))),
            _ => Err(invalid(&format!(
                "unknown scheme {scheme:?} (use a file path, sqlite:PATH, postgres://, mysql:// or mariadb://)"
            ))),
        }
    }

    /// Whether several processes may use this storage at once (a network database), as opposed
    /// to a file one process owns.
    pub fn is_shared(&self) -> bool {
        !matches!(self, Location::Sqlite(_))
    }
}

impl fmt::Display for Location {
    /// The location without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) | Location::Mysql(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// `url` with the password of its user-info, if any, replaced by `***`:
/// `postgres://app:secret@db/reg` → `postgres://app:***@db/reg`. Text that is not a URL is
/// returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    // The authority ends at the first '/', '?' or '#'; its user-info at the last '@' within it.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let redacted_query = redact_query(tail);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return format!("{scheme}://{authority}{redacted_query}");
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{redacted_query}"),
        None => format!("{scheme}://{user_info}@{host}{redacted_query}"),
    }
}

/// A `password=` or `sslpassword=` query parameter (which some drivers accept; the second is
/// libpq's pass phrase of a client key) replaced by `***`. The TLS parameters (`sslmode`,
/// `sslrootcert`, `ssl-mode`, `ssl-ca`) are not secret and are kept.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else { return tail.to_owned() };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if ["password", "sslpassword"].iter().any(|secret| name.eq_ignore_ascii_case(secret)) => {
                format!("{name}=***")
            }
            _ => parameter.to_owned(),
        })
        .collect();
    format!("{path}?{}", parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_and_schemes_select_the_backend() {
        let cases = [
            ("./guidstore.db", Some(Location::Sqlite("./guidstore.db".into()))),
            ("/var/lib/g.db", Some(Location::Sqlite("/var/lib/g.db".into()))),
            ("sqlite:/tmp/x.db", Some(Location::Sqlite("/tmp/x.db".into()))),
            ("sqlite:///tmp/x.db", Some(Location::Sqlite("/tmp/x.db".into()))),
            ("postgres://u@h/db", Some(Location::Postgres("postgres://u@h/db".into()))),
            (
                "postgresql://u:p@h:5432/db?sslmode=disable",
                Some(Location::Postgres("postgres://u:p@h:5432/db?sslmode=disable".into())),
            ),
            ("mysql://root@127.0.0.1:3306/db", Some(Location::Mysql("mysql://root@127.0.0.1:3306/db".into()))),
            ("mariadb://root@h/db", Some(Location::Mysql("mysql://root@h/db".into()))),
            ("MySQL://root@h/db", Some(Location::Mysql("mysql://root@h/db".into()))),
            ("dir/a://b", Some(Location::Sqlite("dir/a://b".into()))),
            ("redis://h", None),
            ("http://h/db", None),
            ("postgres://", None),
            ("sqlite:", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(Location::parse(text).ok(), expected, "{text:?}");
        }
    }

    #[test]
    fn errors_and_display_never_show_the_password() {
        let error = Location::parse("redis://user:hunter2@h").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.to_string().contains("unknown scheme"), "{error}");
        let location = Location::parse("postgres://app:hunter2@db:5432/reg?password=hunter2&sslmode=require").unwrap();
        assert_eq!(location.to_string(), "postgres://app:***@db:5432/reg?password=***&sslmode=require");
        assert!(!format!("{location:?}").contains("hunter2"));
    }

    #[test]
    fn redaction_keeps_everything_but_the_password() {
        let cases = [
            ("postgres://u:p@h/d", "postgres://u:***@h/d"),
            ("postgres://u@h/d", "postgres://u@h/d"),
            ("postgres://h/d", "postgres://h/d"),
            ("postgres://h/d?password=p&sslmode=require", "postgres://h/d?password=***&sslmode=require"),
            ("mysql://u:p:q@h", "mysql://u:***@h"),
            ("mysql://u:p@x@h/d", "mysql://u:***@h/d"),
            ("plain/path.db", "plain/path.db"),
            (
                "postgres://u:p@h/d?sslmode=verify-full&sslrootcert=/ca.pem&sslpassword=k",
                "postgres://u:***@h/d?sslmode=verify-full&sslrootcert=/ca.pem&sslpassword=***",
            ),
            (
                "mysql://u:p@h/d?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem",
                "mysql://u:***@h/d?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    proptest! {
        #[test]
        fn a_password_never_survives_redaction(user in "[a-z]{1,8}", password in "[A-Za-z0-9]{6,12}", host in "[a-z]{1,8}") {
            let url = format!("postgres://{user}:{password}@{host}/db");
            prop_assert!(!redact_url(&url).contains(&password) || user.contains(&password) || host.contains(&password));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = Location::parse(&text);
        }
    }
}
