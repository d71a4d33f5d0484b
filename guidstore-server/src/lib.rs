//! guidstore-server: an asynchronous REST server (hyper 1 + tokio) over the `guidstore` library,
//! implementing the HTTP contract of `docs/API.md`.
//!
//! [`Application::build`] turns a [`Config`] into a bound, ready server: `main.rs`
//! and every test harness start the server through it. [`run`] serves a bound listener until a
//! shutdown future completes; it never binds a port, opens the database or installs a logger
//! itself (`main` installs [`logfile`]'s). The store is shared as `Arc<Store>` in [`AppState`].
//!
//! Modules import one way, and none imports from this crate root: `startup` uses `config`,
//! `state`, `server`, `tls`; `server` uses `routes`, `store_io`, `tls` and `wire`; `config` uses
//! `tls`; `routes` uses `store_io`, `error`, `response`, `wire` and `logfile`; `wire` uses `error`; `error`
//! uses `response` and `config`.
//!
//! Modules:
//! - `config`: [`Config`], the clap flags and environment variables, their defaults, and the
//!   [`Settings`] of [`run`] derived from them.
//! - `state`: [`AppState`], what every request handler shares (store, settings, metrics, tokens).
//! - `startup`: [`Application`], the one builder of a server (listener, store, state).
//! - `server`: [`run`], the accept loop (`Listener`), one connection (`Handler`), the purge task.
//! - `routes`: routing and handlers; the hyper service.
//! - `response`: the response body type and the JSON, record and `HEAD` responses.
//! - `store_io`: the async bridge to the store's blocking calls (reads that miss the cache, the
//!   health check) and the purge.
//! - `events`: `GET /events`, the change feed as a long poll or Server-Sent Events.
//! - `fanout`: the change feed rendered once per change and shared by every `/events` consumer.
//! - `wire`: a connection's byte stream as hyper sees it: half-closed HTTP/1 clients are
//!   answered, `#fragment` targets refused, hyper's own error answers given JSON bodies.
//! - `error`: [`ApiError`](error::ApiError) and the one mapping from error codes to statuses.
//! - `auth`: optional bearer-token authentication.
//! - `metrics`: request counters and histograms, Prometheus rendering.
//! - `logfile`: the binary's logger: server.log written by a thread of its own (request lines
//!   are written by hand into a thread's buffer, then appended under a short lock), stderr for
//!   all but request lines.
//! - `tls`: optional TLS (rustls): certificate loading and reloading, handshakes, client certificates.
//!
//! Connections: HTTP/1.1 with keep-alive and HTTP/2, over cleartext (told apart by the first bytes)
//! or over TLS when [`Settings::tls`] is set (chosen by ALPN), a header-read timeout (also for the
//! TLS handshake, the first bytes of a connection and idle keep-alive connections), a cap on open
//! connections, and graceful shutdown bounded by
//! [`Settings::shutdown_timeout`]. A background task purges expired records.

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod fanout;
pub mod logfile;
pub mod metrics;
pub mod response;
pub mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod store_io;
pub mod tls;
pub mod wire;

pub use auth::Auth;
pub use config::{Config, Settings};
pub use metrics::Metrics;
pub use server::run;
pub use startup::{Application, ApplicationBuilder, StartupError, Stopped};
pub use state::AppState;
pub use store_io::purge_expired;
pub use tls::{Tls, TlsFiles};
