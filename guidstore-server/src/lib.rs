//! guidstore-server: an asynchronous REST server (hyper 1 + tokio) over the `guidstore` library,
//! implementing the HTTP contract of `docs/API.md`.
//!
//! [`Application::build`] turns a [`Config`](config::Config) into a bound, ready server: `main.rs`
//! and every test harness start the server through it. [`run`] serves a bound listener until a
//! shutdown future completes; it never binds a port, opens the database or installs a logger
//! itself. The store is shared as `Arc<Store>` in [`AppState`].
//!
//! Modules:
//! - `config`: [`Config`](config::Config), the clap flags and environment variables, and their defaults.
//! - `startup`: [`Application`], the one builder of a server (listener, store, state).
//! - `server`: [`run`], the accept loop (`Listener`), one connection (`Handler`), the purge task.
//! - `routes`: routing and handlers; the hyper service.
//! - `response`: the response body type and the JSON, record and `HEAD` responses.
//! - `store_io`: the async bridge to the store's blocking calls (reads that miss the cache, the
//!   health check) and the purge.
//! - `error`: [`ApiError`](error::ApiError) and the one mapping from error codes to statuses.
//! - `auth`: optional bearer-token authentication.
//! - `metrics`: request counters and histograms, Prometheus rendering.
//!
//! Connections: HTTP/1.1 with keep-alive and HTTP/2 over cleartext (hyper-util's auto builder),
//! a header-read timeout (also for the first bytes of a connection and idle keep-alive
//! connections), a cap on open connections, and graceful shutdown bounded by
//! [`Settings::shutdown_timeout`]. A background task purges expired records.

pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod response;
pub mod routes;
pub mod server;
pub mod startup;
pub mod store_io;

use std::sync::Arc;
use std::time::Duration;

use guidstore::Store;

pub use auth::Auth;
pub use metrics::Metrics;
pub use server::run;
pub use startup::{Application, ApplicationBuilder, StartupError, Stopped};
pub use store_io::purge_expired;

/// Limits and intervals of the server (see [`config::Config`] for their meaning and defaults).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    /// Most simultaneously open connections.
    pub max_connections: usize,
    /// Time allowed to send request headers; also the idle limit of a keep-alive connection.
    pub header_timeout: Duration,
    /// Time in-flight requests get at shutdown.
    pub shutdown_timeout: Duration,
    /// Time between purges of expired records.
    pub purge_interval: Duration,
    /// Most records removed per purge transaction.
    pub purge_batch: usize,
}

impl Default for Settings {
    /// The settings of the default [`Config`](config::Config): the defaults are written once.
    fn default() -> Settings {
        config::Config::default().settings()
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The registry.
    pub store: Arc<Store>,
    /// Limits and intervals.
    pub settings: Settings,
    /// Request counters.
    pub metrics: Metrics,
    /// The accepted bearer tokens, when authentication is on.
    pub auth: Option<Auth>,
}

impl AppState {
    /// The state of a server over `store`.
    pub fn new(store: Arc<Store>, settings: Settings, auth: Option<Auth>) -> Arc<AppState> {
        Arc::new(AppState { store, settings, metrics: Metrics::default(), auth })
    }
}
