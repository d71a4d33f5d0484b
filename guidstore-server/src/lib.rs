//! guidstore-server: an asynchronous REST server (hyper 1 + tokio) over the `guidstore` library,
//! implementing the HTTP contract of `docs/API.md`.
//!
//! [`run`] serves a bound listener until a shutdown future completes; it never binds a port, opens
//! the database or installs a logger itself (`main.rs` does). The store is shared as `Arc<Store>`
//! in [`AppState`].
//!
//! Modules:
//! - `config`: [`Config`](config::Config), the clap flags and environment variables.
//! - `routes`: routing and handlers; the hyper service.
//! - `error`: [`ApiError`](error::ApiError) and the one mapping from error codes to statuses.
//! - `auth`: optional bearer-token authentication.
//! - `metrics`: request counters and histograms, Prometheus rendering.
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
pub mod metrics;
pub mod routes;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use guidstore::{Store, Write, WriteOutcome};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use auth::Auth;
pub use metrics::Metrics;
pub use tls::{Tls, TlsFiles};

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
    /// TLS, when on: every connection starts with a handshake.
    pub tls: Option<Tls>,
    /// How often the TLS files are checked for changes (a changed file is reloaded).
    pub tls_reload_interval: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_body: 65_536,
            max_connections: 16_384,
            header_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            purge_interval: Duration::from_secs(60),
            purge_batch: 1000,
            tls: None,
            tls_reload_interval: Duration::from_secs(10),
        }
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

/// Serves HTTP (HTTPS with [`Settings::tls`]) on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (at most [`Settings::shutdown_timeout`]) and returns.
/// The store stays open: closing it is the caller's job, once every clone of `state` is dropped.
pub async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(state.settings.header_timeout).keep_alive(true);
    // HTTP/2 has no header-read timeout; pings find dead peers of idle connections.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    // The protocol is known before hyper sees a connection (from its first bytes, or ALPN).
    let builders = Arc::new([builder.clone().http1_only(), builder.http2_only()]);
    let slots = Arc::new(Semaphore::new(state.settings.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let graceful = GracefulShutdown::new();
    let (stopping_sender, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let purger = tokio::spawn(purge_periodically(Arc::clone(&state)));
    let tls_watcher = state.settings.tls.clone().map(|tls| tokio::spawn(tls.watch(state.settings.tls_reload_interval)));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // Reap finished connection tasks so the set stays as small as the open connections.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off briefly instead of spinning, keep serving.
                    log::error!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            log::debug!("set_nodelay for {peer}: {error}");
        }
        let watcher = graceful.watcher();
        let builders = Arc::clone(&builders);
        let state = Arc::clone(&state);
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _open = state.metrics.connection_opened();
            let header_timeout = state.settings.header_timeout;
            let opened = tokio::select! {
                opened = open_connection(stream, peer, state.settings.tls.as_ref(), header_timeout) => opened,
                _ = stopping.wait_for(|stopping| *stopping) => None,
            };
            let Some((stream, protocol)) = opened else {
                return;
            };
            let builder = match protocol {
                Protocol::Http1 => &builders[0],
                Protocol::Http2 => &builders[1],
            };
            let activity = Arc::new(Activity::new());
            let service_state = Arc::clone(&state);
            let service_activity = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&service_state);
                let request_guard = service_activity.begin();
                async move {
                    let response = routes::handle(state, peer, request).await;
                    drop(request_guard);
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
            let mut connection = std::pin::pin!(connection);
            loop {
                // HTTP/1 idle connections are closed by hyper's header-read timeout; HTTP/2 has
                // none, so an HTTP/2 connection without a request for `header_timeout` is dropped
                // here (with no request in flight, nothing is lost).
                let idle_check = activity.idle_deadline(header_timeout);
                tokio::select! {
                    result = &mut connection => {
                        if let Err(error) = result {
                            log::debug!("connection from {peer} ended: {error}");
                        }
                        break;
                    }
                    () = tokio::time::sleep_until(idle_check), if protocol == Protocol::Http2 => {
                        if activity.is_idle(header_timeout) {
                            log::debug!("HTTP/2 connection from {peer} closed: idle for {header_timeout:?}");
                            break;
                        }
                    }
                }
            }
        });
    }

    drop(listener);
    let _ = stopping_sender.send(true);
    purger.abort();
    if let Some(tls_watcher) = &tls_watcher {
        tls_watcher.abort();
    }
    log::info!("shutting down: waiting for {} open connections", graceful.count());
    let timeout = state.settings.shutdown_timeout;
    tokio::select! {
        () = graceful.shutdown() => log::info!("all connections closed"),
        () = tokio::time::sleep(timeout) => log::warn!("connections still open after {timeout:?}; dropping them"),
    }
    connections.shutdown().await;
    let _ = purger.await;
}

/// The protocol a client speaks, from its first bytes or from ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// The stream hyper serves and its protocol: after the TLS handshake (at most `timeout`) the one
/// ALPN chose (HTTP/1.1 without ALPN), or in cleartext the one its first bytes show. `None`: the
/// connection failed, was closed or timed out (and is logged at debug).
async fn open_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<&Tls>,
    timeout: Duration,
) -> Option<(tls::Stream, Protocol)> {
    let Some(tls) = tls else {
        let Some(protocol) = sniff_protocol(&stream, timeout).await else {
            log::debug!("connection from {peer} closed: no request within {timeout:?}");
            return None;
        };
        return Some((tls::Stream::Plain(stream), protocol));
    };
    let stream = tls.accept(stream, peer, timeout).await?;
    let protocol = if tls::negotiated_h2(&stream) { Protocol::Http2 } else { Protocol::Http1 };
    Some((tls::Stream::Tls(Box::new(stream)), protocol))
}

/// Waits until the client has sent enough for hyper to pick HTTP/1 or HTTP/2, at most `timeout`,
/// and says which. Without this, a connection that never sends a byte would wait forever in
/// hyper's version detection, before its header-read timeout applies. `None`: closed or timed out.
async fn sniff_protocol(stream: &TcpStream, timeout: Duration) -> Option<Protocol> {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; H2_PREFACE.len()];
    loop {
        let seen = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(seen)) => seen,
        };
        let bytes = buffer.get(..seen)?;
        if !H2_PREFACE.starts_with(bytes) {
            return Some(Protocol::Http1);
        }
        if seen == H2_PREFACE.len() {
            return Some(Protocol::Http2);
        }
        // A partial HTTP/2 preface: peek again once more may have arrived.
        tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(5))).await.ok()?;
    }
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    last_end: std::sync::Mutex<Instant>,
}

/// One request in flight; ends when dropped (also when the client goes away mid-request).
struct RequestGuard(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity { in_flight: std::sync::atomic::AtomicUsize::new(0), last_end: std::sync::Mutex::new(Instant::now()) }
    }

    fn begin(self: &Arc<Activity>) -> RequestGuard {
        self.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        RequestGuard(Arc::clone(self))
    }

    fn last_end(&self) -> Instant {
        *self.last_end.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the connection would have been idle for `timeout`, if nothing happens meanwhile.
    fn idle_deadline(&self, timeout: Duration) -> Instant {
        if self.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            Instant::now() + timeout
        } else {
            self.last_end() + timeout
        }
    }

    /// No request in flight and none ended within `timeout`.
    fn is_idle(&self, timeout: Duration) -> bool {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 && self.last_end().elapsed() >= timeout
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Every `purge_interval`, removes expired records in batches of `purge_batch`.
async fn purge_periodically(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(state.settings.purge_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let started = std::time::Instant::now();
        match purge_expired(&state.store, state.settings.purge_batch).await {
            Ok(0) => log::debug!("purge: no expired records"),
            Ok(removed) => log::info!("purge: removed {removed} expired records in {:?}", started.elapsed()),
            Err(error) => log::error!("purge failed: {error}"),
        }
    }
}

/// Removes every expired record, `batch` at a time (one transaction each, through the writer
/// thread); how many were removed.
pub async fn purge_expired(store: &Store, batch: usize) -> Result<u64, guidstore::Error> {
    let batch = batch.max(1);
    let mut total = 0;
    loop {
        let removed = match routes::write(store, Write::Purge { limit: batch }).await? {
            WriteOutcome::Purged(removed) => removed,
            _ => 0,
        };
        total += removed;
        if removed < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}
