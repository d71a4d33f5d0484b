//! The responses the server builds: [`Body`], [`json_response`], [`record_response`] and
//! [`strip_body`] for `HEAD` over HTTP/2. Routing and error mapping use them; this module uses
//! neither.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use guidstore::Record;
use http_body_util::Full;
use hyper::body::{Body as _, Bytes, Frame, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue};
use hyper::{Response, StatusCode};

/// The response body: a complete answer (every route but one), or a stream of server-sent events.
#[derive(Debug)]
pub enum Body {
    /// The whole body at once.
    Full(Full<Bytes>),
    /// Chunks written by a producer task as they come (`GET /events` as Server-Sent Events).
    Stream(StreamBody),
}

impl Body {
    /// A complete body.
    pub fn new(bytes: Bytes) -> Body {
        Body::Full(Full::new(bytes))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::Full(Full::default())
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(context),
            Body::Stream(stream) => stream.poll_frame(context),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// The reading end of a streamed body. Its producer ([`StreamWriter`]) queues chunks; the
/// queue is bounded in bytes, so a client that stops reading cannot make the server buffer
/// without end: past the bound the producer waits for the client (or gives up on it).
#[derive(Debug)]
pub struct StreamBody {
    shared: Arc<StreamShared>,
    /// Kept while the body is: dropped with it (see [`StreamBody::keep`]).
    kept: Option<Box<dyn std::fmt::Debug + Send + Sync>>,
}

/// The writing end of a streamed body.
#[derive(Debug)]
pub struct StreamWriter {
    shared: Arc<StreamShared>,
    limit: usize,
}

#[derive(Debug, Default)]
struct StreamShared {
    state: Mutex<StreamState>,
    /// Notified when the client goes away.
    closed: tokio::sync::Notify,
    /// Notified when the client takes a chunk or goes away.
    drained: tokio::sync::Notify,
    /// The position the client has taken: the last `through` of the chunks it has read.
    taken: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct StreamState {
    /// Each chunk, with the position it brings the client to (if it moves it).
    chunks: VecDeque<(Bytes, Option<u64>)>,
    queued: usize,
    /// Since when the oldest unread chunk has been waiting (since it was queued into an empty
    /// queue, or since the client last took a chunk); `None` while the queue is empty.
    waiting_since: Option<Instant>,
    finished: bool,
    /// The client went away (the body was dropped).
    gone: bool,
    waker: Option<Waker>,
}

impl StreamShared {
    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A streamed body whose queue holds at most `limit` bytes unread; the client starts at
/// position `start` (see [`StreamWriter::write`]).
pub fn stream(limit: usize, start: u64) -> (StreamWriter, StreamBody) {
    let shared = Arc::new(StreamShared { taken: Arc::new(AtomicU64::new(start)), ..StreamShared::default() });
    (StreamWriter { shared: Arc::clone(&shared), limit }, StreamBody { shared, kept: None })
}

/// The position a stream's client has read up to, for metrics: shared with the stream, readable
/// after it ends.
#[derive(Debug, Clone)]
pub struct StreamPosition(Arc<AtomicU64>);

impl StreamPosition {
    /// The last position the client has taken.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What [`StreamWriter::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Queued.
    Queued,
    /// Not queued: the unread queue would pass its limit (wait for [`StreamWriter::drained`]).
    Full,
    /// The client went away, or the stream has ended: nothing more will be read.
    Gone,
}

impl StreamWriter {
    /// Queues `chunk`, which brings the client to position `through` once read (if it moves
    /// it) — unless the unread queue would pass the limit (then nothing is queued). A chunk is
    /// always queued into an empty queue, however large.
    pub fn write(&self, chunk: Bytes, through: Option<u64>) -> Written {
        let mut state = self.shared.lock();
        if state.gone || state.finished {
            return Written::Gone;
        }
        if !state.chunks.is_empty() && state.queued + chunk.len() > self.limit {
            return Written::Full;
        }
        if state.chunks.is_empty() {
            state.waiting_since = Some(Instant::now());
        }
        state.queued += chunk.len();
        state.chunks.push_back((chunk, through));
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Written::Queued
    }

    /// Ends the stream with `last`, dropping whatever the client has not taken yet.
    pub fn finish_with(&self, last: Bytes) {
        let mut state = self.shared.lock();
        if state.gone || state.finished {
            return;
        }
        state.chunks.clear();
        state.queued = last.len();
        state.waiting_since = Some(Instant::now());
        state.chunks.push_back((last, None));
        state.finished = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Completes after the client has taken a chunk (at once if it took one since the last
    /// call), or went away.
    pub async fn drained(&self) {
        self.shared.drained.notified().await;
    }

    /// The position the client has taken so far.
    pub fn taken(&self) -> u64 {
        self.shared.taken.load(Ordering::Relaxed)
    }

    /// Whether the client went away.
    pub fn is_gone(&self) -> bool {
        self.shared.lock().gone
    }

    /// Since when unread output has been waiting for the client to take any of it (`None`:
    /// nothing is waiting).
    pub fn waiting_since(&self) -> Option<Instant> {
        self.shared.lock().waiting_since
    }

    /// The position the client has read up to, for metrics.
    pub fn position(&self) -> StreamPosition {
        StreamPosition(Arc::clone(&self.shared.taken))
    }

    /// Completes when the client goes away (at once if it has).
    pub async fn closed(&self) {
        let notified = self.shared.closed.notified();
        if self.is_gone() {
            return;
        }
        notified.await;
    }
}

impl Drop for StreamWriter {
    /// Ends the stream once the queue is read.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.finished = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl StreamBody {
    /// Keeps `guard` until the body is dropped (hyper drops it once written, or when the client
    /// goes away): the connection's idle check counts a stream being written as activity.
    pub fn keep(&mut self, guard: impl std::fmt::Debug + Send + Sync + 'static) {
        self.kept = Some(Box::new(guard));
    }

    fn poll_frame(&mut self, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut state = self.shared.lock();
        if let Some((chunk, through)) = state.chunks.pop_front() {
            state.queued = state.queued.saturating_sub(chunk.len());
            state.waiting_since = if state.chunks.is_empty() { None } else { Some(Instant::now()) };
            if let Some(through) = through {
                self.shared.taken.store(through, Ordering::Relaxed);
            }
            drop(state);
            self.shared.drained.notify_one();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if state.finished {
            return Poll::Ready(None);
        }
        state.waker = Some(context.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.shared.lock().gone = true;
        self.shared.closed.notify_one();
        self.shared.drained.notify_one();
    }
}

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response with this status and body.
#[inline]
pub fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// A record as the JSON body, with its `ETag`: both share the record's rendering (no copy, no
/// formatting).
#[inline]
pub fn record_response(status: StatusCode, record: &Record) -> Response<Body> {
    let mut response = json_response(status, record.json_bytes());
    if let Ok(etag) = HeaderValue::from_maybe_shared(record.etag_bytes()) {
        response.headers_mut().insert(ETAG, etag);
    }
    response
}

/// For `HEAD` over HTTP/2: keeps the headers GET would send, with GET's `Content-Length`, and
/// drops the body. (Over HTTP/1 hyper does this itself: it sends the `Content-Length` of the
/// body's exact size and never polls the body.)
pub fn strip_body(response: &mut Response<Body>) {
    if let Some(length) = response.body().size_hint().exact() {
        response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    *response.body_mut() = Body::default();
}
