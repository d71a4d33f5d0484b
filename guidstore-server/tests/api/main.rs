//! Integration tests of guidstore-server: the real server on `127.0.0.1:0`, a temporary database
//! per test, time injected with a `ManualClock`, HTTP over real sockets. One test binary.
//! `GUIDSTORE_TEST_TLS=1` runs every test over HTTPS (see `helpers.rs`).

mod auth;
mod binary;
mod connections;
mod events;
mod helpers;
mod operations;
mod protocol;
mod records;
mod tls;
mod validation;
