//! guidstore-testkit: what the tests of every guidstore crate share, so each helper exists once.
//!
//! It depends on no guidstore crate (the library's own tests use it; a dependency back would make
//! a dev-dependency cycle), and it only ever talks to loopback servers the tests start.
//!
//! Modules:
//! - `http`: the one HTTP/1.1 response parser ([`http::read_response`]), a blocking keep-alive
//!   client on `std::net::TcpStream` ([`http::Connection`], [`http::request_once`]) for raw-socket
//!   and out-of-process tests, and [`http::Response`], what every client here returns.
//! - `client` (feature `async`): hyper's client for well-formed requests (`client::Client`), raw
//!   connections to the same server (`client::Client::connect`) and raw reads on them
//!   (`client::read_response`, `client::read_to_close`), parsed by the same parser. With feature
//!   `tls`, all of it over HTTPS (`client::Client::with_tls`).
//! - `pki` (feature `pki`): certificates made at test time with rcgen (`pki::TestCa`) and rustls
//!   client configurations trusting them (`pki::client_config`).
//! - `fault`: storage faults: a small tmpfs that fills up ([`fault::Tmpfs`]) and `chattr +i`
//!   ([`fault::Frozen`]), both undone when dropped; they need root ([`fault::is_root`]).
//! - `redis`: a private `redis-server` per test ([`redis::RedisServer`]) that it can kill, restart
//!   and pause.
//! - `db`: a fresh database per test on SQLite, PostgreSQL or MariaDB ([`db::TestDb`]), the
//!   macros that run a test on every backend ([`on_every_backend!`], [`on_shared_backends!`]), and
//!   [`db::TestDb::kill_connections`] (`pg_terminate_backend`, MariaDB `KILL`).
//! - `postgres`: a private PostgreSQL server a fault test may stop, start, pause and resume
//!   ([`postgres::PostgresCluster`]), removed when dropped; with TLS on if asked
//!   ([`postgres::PostgresCluster::start_tls`]).
//! - `mariadb`: a private MariaDB server with TLS on ([`mariadb::MariadbServer`]), removed when
//!   dropped.

#[cfg(feature = "async")]
pub mod client;
pub mod db;
pub mod fault;
pub mod http;
pub mod mariadb;
#[cfg(feature = "pki")]
pub mod pki;
pub mod postgres;
pub mod redis;
