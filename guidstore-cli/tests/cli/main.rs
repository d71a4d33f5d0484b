//! Integration tests of the `guidstore-cli` binary: `db` on a database file, `server` through a
//! running guidstore-server (and through a server that holds the file), `usage` for the command
//! line itself, `tls` for `https://` servers. Every test runs the real binary in its own temporary
//! directory.

mod db;
mod helpers;
mod server;
mod tls;
mod transfer;
mod usage;
mod watch;
