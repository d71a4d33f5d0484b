//! Integration tests of guidstore-server: the real server on `127.0.0.1:0`, a temporary database
//! per test, time injected with a `ManualClock`, HTTP over real sockets. One test binary.

mod auth;
mod binary;
mod connections;
mod events;
mod helpers;
mod operations;
mod protocol;
mod records;
mod validation;
