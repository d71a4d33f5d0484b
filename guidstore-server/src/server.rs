//! Serving connections, split as mini-redis splits its server:
//! - [`run`] ties a `Listener` to the shutdown future and, once that completes, shuts down
//!   gracefully;
//! - `Listener::run` is the accept loop: a connection slot, then a connection, then a task;
//!   `Listener::accept` takes one connection, logging failures and backing off;
//! - `Handler::run` serves one connection: the TLS handshake or protocol sniffing, hyper's
//!   connection, the HTTP/2 idle check;
//! - `purge_periodically` is the background task that purges expired records.
//!
//! Nothing here binds a port, opens the store or reads configuration (`startup.rs` does), and
//! nothing here knows routes (`routes.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::config::MAX_HEAD_BYTES;
use crate::state::AppState;
use crate::tls::{self, Tls};
use crate::wire::{Abort, EofHold, WireStream};
use crate::{routes, store_io};

/// How long the accept loop pauses after a failed `accept` (typically EMFILE).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves HTTP (HTTPS with [`Settings::tls`](crate::config::Settings::tls), whose files it checks
/// for changes every `tls_reload_interval`) on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (at most
/// [`Settings::shutdown_timeout`](crate::config::Settings::shutdown_timeout)) and returns. The
/// store stays open: closing it is the caller's job, once every clone of `state` is dropped.
pub async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let mut server = Listener::new(listener, Arc::clone(&state));
    let tls_watcher = state.settings.tls.clone().map(|tls| tokio::spawn(tls.watch(state.settings.tls_reload_interval)));
    let purger = tokio::spawn(purge_periodically(state));
    // `Listener::run` keeps nothing across its awaits that is lost when it is dropped here: the
    // open connections live in the `Listener`.
    tokio::select! {
        () = server.run() => {}
        () = shutdown => {}
    }
    if let Some(tls_watcher) = &tls_watcher {
        tls_watcher.abort();
    }
    server.shut_down(purger).await;
}

/// The accept loop's state: the listening socket and everything its connections share.
struct Listener {
    listener: TcpListener,
    state: Arc<AppState>,
    /// hyper-util's connection builders, configured once: HTTP/1 only and HTTP/2 only (the
    /// protocol is known before hyper sees a connection, from its first bytes or ALPN).
    builders: Arc<[auto::Builder<TokioExecutor>; 2]>,
    /// One permit per open connection, `max_connections` in all.
    slots: Arc<Semaphore>,
    /// Tells in-flight connections to finish their requests and close, at shutdown.
    graceful: GracefulShutdown,
    /// Set at shutdown: connections still sniffing their protocol give up at once.
    stopping: watch::Sender<bool>,
    /// The connection tasks, so shutdown can end the ones still open after the timeout.
    connections: JoinSet<()>,
}

impl Listener {
    fn new(listener: TcpListener, state: Arc<AppState>) -> Listener {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Half-closed clients are answered by `WireStream` (wire.rs), not by hyper's `half_close`.
        // The header-read timeout is `Handler::run`'s idle check: hyper's arms a timer for every
        // request (an allocation, a clock read, a timer-wheel insertion and removal).
        builder.http1().header_read_timeout(None).keep_alive(true).max_buf_size(MAX_HEAD_BYTES);
        // HTTP/2 has no header-read timeout; pings find dead peers of idle connections.
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let slots = Arc::new(Semaphore::new(state.settings.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
        Listener {
            listener,
            state,
            builders: Arc::new([builder.clone().http1_only(), builder.http2_only()]),
            slots,
            graceful: GracefulShutdown::new(),
            stopping: watch::channel(false).0,
            connections: JoinSet::new(),
        }
    }

    /// Accepts connections, each once a slot is free, and serves each on its own task. Returns
    /// only if the slots' semaphore is closed (it never is); [`run`] drops it at shutdown.
    async fn run(&mut self) {
        loop {
            // Reap finished connection tasks so the set stays as small as the open connections.
            while self.connections.try_join_next().is_some() {}
            let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else { return };
            let (stream, peer) = self.accept().await;
            if let Err(error) = stream.set_nodelay(true) {
                log::debug!("set_nodelay for {peer}: {error}");
            }
            let handler = Handler {
                stream,
                peer,
                state: Arc::clone(&self.state),
                builders: Arc::clone(&self.builders),
                watcher: self.graceful.watcher(),
                stopping: self.stopping.subscribe(),
                _permit: permit,
            };
            self.connections.spawn(handler.run());
        }
    }

    /// The next connection. A failed `accept` (typically EMFILE) is logged and retried after a
    /// short pause, instead of spinning or ending the loop.
    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => {
                    log::error!("accept failed: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Stops accepting (the listening socket closes at once), stops the purge task, lets the
    /// open connections finish their requests for at most `shutdown_timeout`, then ends them.
    async fn shut_down(self, purger: JoinHandle<()>) {
        let Listener { listener, state, graceful, stopping, mut connections, .. } = self;
        drop(listener);
        stopping.send_replace(true);
        state.stopping.send_replace(true);
        purger.abort();
        log::info!("shutting down: waiting for {} open connections", graceful.count());
        let timeout = state.settings.shutdown_timeout;
        tokio::select! {
            () = graceful.shutdown() => log::info!("all connections closed"),
            () = tokio::time::sleep(timeout) => log::warn!("connections still open after {timeout:?}; dropping them"),
        }
        connections.shutdown().await;
        let _ = purger.await;
    }
}

/// One accepted connection and what serving it needs.
struct Handler {
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    builders: Arc<[auto::Builder<TokioExecutor>; 2]>,
    watcher: Watcher,
    stopping: watch::Receiver<bool>,
    /// The connection's slot, freed when the handler ends.
    _permit: OwnedSemaphorePermit,
}

impl Handler {
    /// Serves the connection until the client closes it, it idles out, or shutdown ends it.
    ///
    /// First (at most `header_timeout`) runs the TLS handshake and takes the protocol ALPN chose,
    /// or waits for a cleartext client's first bytes to tell HTTP/1 from HTTP/2; then hands the
    /// connection to hyper, watched by the graceful shutdown. An HTTP/1 connection idle for
    /// `header_timeout` (no request in flight, no answer being written, none ended within it) is
    /// closed by this loop's idle check, which stands in for hyper's header-read timeout; an HTTP/2
    /// connection without a request for `header_timeout` is closed here too, with a GOAWAY (with no
    /// request in flight, nothing is lost).
    async fn run(self) {
        let Handler { stream, peer, state, builders, watcher, mut stopping, _permit } = self;
        let _open = state.metrics.connection_opened();
        let header_timeout = state.settings.header_timeout;
        let opened = tokio::select! {
            opened = open_connection(stream, peer, state.settings.tls.as_ref(), header_timeout) => opened,
            _ = stopping.wait_for(|stopping| *stopping) => None,
        };
        let Some((stream, protocol)) = opened else { return };
        let builder = match protocol {
            Protocol::Http1 => &builders[0],
            Protocol::Http2 => &builders[1],
        };
        let activity = Arc::new(Activity::new());
        let service_activity = Arc::clone(&activity);
        let service_state = Arc::clone(&state);
        // HTTP/1 only: an HTTP/2 connection's bytes are frames, and its streams end on their own.
        let eof_hold = (protocol == Protocol::Http1).then(|| Arc::new(EofHold::default()));
        let service_hold = eof_hold.clone();
        let abort = Abort::default();
        let service_abort = abort.clone();
        let http2 = protocol == Protocol::Http2;
        let service_peer = Arc::new(routes::Peer::new(peer));
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            // Only HTTP/2's idle check reads the activity (a lock and a clock read per request).
            let request_guard = http2.then(|| service_activity.begin());
            let hold_guard = service_hold.as_ref().map(EofHold::hold);
            // A cached record is answered here, and the request dropped before hyper reads again.
            // Any other request is handled by a boxed future: hyper moves the service's future
            // into place, and a cached read's future stays a few words long.
            let answer = match routes::answer_cached(&service_state, &service_peer, service_hold.as_deref(), &request) {
                Some(response) => Ok(response),
                None => Err(Box::pin(routes::handle(
                    Arc::clone(&service_state),
                    Arc::clone(&service_peer),
                    service_hold.clone(),
                    Some(service_abort.clone()),
                    request,
                ))),
            };
            async move {
                let response = match answer {
                    Ok(response) => response,
                    Err(handled) => handled.await,
                };
                drop(request_guard);
                drop(hold_guard);
                Ok::<_, Infallible>(response)
            }
        });
        // Shutdown and the HTTP/2 idle check both close through hyper's `graceful_shutdown`: an
        // HTTP/2 GOAWAY (NO_ERROR), or no more keep-alive for HTTP/1. At shutdown the listener
        // bounds the wait (`shutdown_timeout`); an idle HTTP/2 connection gets `header_timeout`
        // to end after its GOAWAY. `_watcher` keeps the shutdown waiting until the handler ends.
        let _watcher = watcher;
        let connection = builder.serve_connection(TokioIo::new(WireStream::new(stream, eof_hold.clone())), service);
        let mut connection = std::pin::pin!(connection);
        let mut stopping_seen = false;
        let mut goaway_deadline: Option<Instant> = None;
        // HTTP/1: when the connection will have waited `header_timeout` for a request's head, if
        // nothing happens meanwhile.
        let mut http1_deadline = Instant::now() + header_timeout;
        // The connection is polled at every wake of this task (every request); the other events
        // only when one of them has woken it (see `Gated`).
        let gate = Arc::new(Gate::default());
        loop {
            let watch = Watch {
                stopping: (!stopping_seen).then_some(&mut stopping),
                http2_idle_check: (http2 && goaway_deadline.is_none()).then(|| activity.idle_deadline(header_timeout)),
                http1_deadline: eof_hold.is_some().then_some(http1_deadline),
                abort: &abort,
                goaway_deadline,
            };
            let event = {
                let side = std::pin::pin!(watch.next());
                let side = Gated::new(side, &gate);
                tokio::select! {
                    biased;
                    result = &mut connection => {
                        if let Err(error) = result {
                            log::debug!("connection from {peer} ended: {error}");
                        }
                        break;
                    }
                    event = side => event,
                }
            };
            match event {
                Event::Stopping => {
                    stopping_seen = true;
                    connection.as_mut().graceful_shutdown();
                }
                Event::Http2IdleCheck => {
                    if activity.is_idle(header_timeout) {
                        log::debug!("HTTP/2 connection from {peer} closing: idle for {header_timeout:?}");
                        connection.as_mut().graceful_shutdown();
                        goaway_deadline = Some(Instant::now() + header_timeout);
                    }
                }
                Event::Http1Check => {
                    // hyper's header-read timeout, checked once per `header_timeout` rather than
                    // armed for every request: no request in flight (one whose head is read is),
                    // no streamed answer being written, no write waiting for the client to read,
                    // and none ended within the timeout.
                    let idle_since = eof_hold.as_ref().and_then(|hold| hold.idle_since());
                    let now = Instant::now();
                    match idle_since.map(|since| Instant::from_std(since) + header_timeout) {
                        Some(deadline) if deadline <= now => {
                            log::debug!("connection from {peer} closed: no request head within {header_timeout:?}");
                            break;
                        }
                        Some(deadline) => http1_deadline = deadline,
                        None => http1_deadline = now + header_timeout,
                    }
                }
                Event::Aborted => {
                    log::info!("connection from {peer} dropped: its event stream's client stopped reading");
                    break;
                }
                Event::GoawayExpired => {
                    log::debug!("HTTP/2 connection from {peer} dropped: still open {header_timeout:?} after GOAWAY");
                    break;
                }
            }
        }
    }
}

/// What a connection's handler waits for beside the connection itself, each `None` when not
/// waited for.
struct Watch<'a> {
    /// Shutdown (until seen once).
    stopping: Option<&'a mut watch::Receiver<bool>>,
    /// HTTP/2: when the connection would have been idle for `header_timeout` (until its GOAWAY).
    http2_idle_check: Option<Instant>,
    /// HTTP/1: when to check for a request head awaited too long.
    http1_deadline: Option<Instant>,
    /// The connection's [`Abort`].
    abort: &'a Abort,
    /// HTTP/2: when a connection sent a GOAWAY is dropped.
    goaway_deadline: Option<Instant>,
}

/// One of [`Watch`]'s events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Stopping,
    Http2IdleCheck,
    Http1Check,
    Aborted,
    GoawayExpired,
}

impl Watch<'_> {
    /// The first of the events to happen.
    async fn next(self) -> Event {
        let Watch { stopping, http2_idle_check, http1_deadline, abort, goaway_deadline } = self;
        tokio::select! {
            () = wait_stopping(stopping) => Event::Stopping,
            () = sleep_until_some(http2_idle_check) => Event::Http2IdleCheck,
            () = sleep_until_some(http1_deadline) => Event::Http1Check,
            () = abort.aborted() => Event::Aborted,
            () = sleep_until_some(goaway_deadline) => Event::GoawayExpired,
        }
    }
}

/// Completes once `stopping` is `true` or its sender is gone; never without a receiver.
async fn wait_stopping(stopping: Option<&mut watch::Receiver<bool>>) {
    match stopping {
        // A sender gone (the listener dropped) counts as shutdown too.
        Some(stopping) => {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
        None => std::future::pending().await,
    }
}

/// Whether a [`Gated`] future has been woken since it was last polled, and the task to wake.
#[derive(Debug, Default)]
struct Gate {
    woken: AtomicBool,
    task: std::sync::Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Gate>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Gate>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(task) = &*self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            task.wake_by_ref();
        }
    }
}

/// A future polled only when something it waits for has woken it (and at its first poll), not
/// at every wake of its task. A connection's handler polls the connection and a handful of rare
/// events (shutdown, timers, an abort) together: polled at every request, the rare ones cost
/// more than a few hundred instructions a request (locks to re-register their wakers), for
/// nothing.
struct Gated<'a, F> {
    future: F,
    gate: &'a Arc<Gate>,
}

impl<'a, F> Gated<'a, F> {
    /// `future`, gated by `gate` (which may be reused: a new `Gated` is polled at once).
    fn new(future: F, gate: &'a Arc<Gate>) -> Gated<'a, F> {
        gate.woken.store(true, Ordering::SeqCst);
        Gated { future, gate }
    }
}

impl<F: Future + Unpin> Future for Gated<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        {
            let mut task = this.gate.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // Registered first: a wake from here on finds this task's waker.
        if !this.gate.woken.swap(false, Ordering::SeqCst) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(this.gate));
        Pin::new(&mut this.future).poll(&mut Context::from_waker(&waker))
    }
}

/// While the store opens (a database not reachable yet, retried for `--db-wait`): accepts
/// connections on `listener` and answers every request `503 unavailable` (`/healthz` included), so
/// that health checks and clients get an answer rather than a connection that hangs. Never
/// returns: the caller drops it once the store is open, and sets `ready`, which makes the
/// connections still open close (HTTP/1 after their answer, HTTP/2 with a GOAWAY).
pub async fn answer_while_opening(
    listener: &TcpListener,
    tls: Option<Tls>,
    header_timeout: Duration,
    ready: watch::Receiver<bool>,
) -> Infallible {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(false);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(16);
    let builders = Arc::new([builder.clone().http1_only(), builder.http2_only()]);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                log::error!("accept failed: {error}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (tls, builders, mut ready) = (tls.clone(), Arc::clone(&builders), ready.clone());
        tokio::spawn(async move {
            let Some((stream, protocol)) = open_connection(stream, peer, tls.as_ref(), header_timeout).await else {
                return;
            };
            let builder = match protocol {
                Protocol::Http1 => &builders[0],
                Protocol::Http2 => &builders[1],
            };
            let service = hyper::service::service_fn(move |request| async move {
                Ok::<_, Infallible>(routes::answer_while_opening(&request, peer))
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            // At most `header_timeout` in all: a client that keeps asking is told to come back.
            let deadline = Instant::now() + header_timeout;
            tokio::select! {
                _ = &mut connection => return,
                _ = ready.wait_for(|ready| *ready) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(header_timeout, connection).await;
        });
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
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
    peer: SocketAddr,
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

/// Requests in flight on one HTTP/2 connection and when the last one ended (HTTP/1's idle check
/// reads the connection's `EofHold` instead).
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last_end: std::sync::Mutex<Instant>,
}

/// One request in flight; ends when dropped (also when the client goes away mid-request).
struct RequestGuard(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity { in_flight: AtomicUsize::new(0), last_end: std::sync::Mutex::new(Instant::now()) }
    }

    fn begin(self: &Arc<Activity>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestGuard(Arc::clone(self))
    }

    fn last_end(&self) -> Instant {
        *self.last_end.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the connection would have been idle for `timeout`, if nothing happens meanwhile.
    fn idle_deadline(&self, timeout: Duration) -> Instant {
        if self.in_flight.load(Ordering::SeqCst) > 0 { Instant::now() + timeout } else { self.last_end() + timeout }
    }

    /// No request in flight and none ended within `timeout`.
    fn is_idle(&self, timeout: Duration) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && self.last_end().elapsed() >= timeout
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every `purge_interval`, removes expired records in batches of `purge_batch`, then trims the
/// change log to the retention window.
async fn purge_periodically(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(state.settings.purge_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let started = std::time::Instant::now();
        match store_io::purge_expired(&state.store, state.settings.purge_batch).await {
            Ok(0) => log::debug!("purge: no expired records"),
            Ok(removed) => log::info!("purge: removed {removed} expired records in {:?}", started.elapsed()),
            Err(error) => log::error!("purge failed: {error}"),
        }
        let settings = &state.settings;
        match store_io::trim_changes(&state.store, settings.events_retention, settings.events_retention_count).await {
            Ok(0) => {}
            Ok(removed) => log::info!("change log: trimmed {removed} changes past the retention window"),
            Err(error) => log::error!("trimming the change log failed: {error}"),
        }
    }
}
