//! The responses the server builds: [`Body`], [`json_response`], [`record_response`] and
//! [`strip_body`] for `HEAD` over HTTP/2. Routing and error mapping use them; this module uses
//! neither.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

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
/// without end: past the bound the producer writes a last chunk and ends the stream.
#[derive(Debug)]
pub struct StreamBody {
    shared: Arc<StreamShared>,
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
}

#[derive(Debug, Default)]
struct StreamState {
    chunks: VecDeque<Bytes>,
    queued: usize,
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

/// A streamed body whose queue holds at most `limit` bytes unread.
pub fn stream(limit: usize) -> (StreamWriter, StreamBody) {
    let shared = Arc::new(StreamShared::default());
    (StreamWriter { shared: Arc::clone(&shared), limit }, StreamBody { shared })
}

/// What [`StreamWriter::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Queued.
    Queued,
    /// The queue was full: `last` was queued instead and the stream ended.
    Overflowed,
    /// The client went away: nothing more will be read.
    Gone,
}

impl StreamWriter {
    /// Queues `chunk`; if the unread queue would pass the limit, queues `last` instead and ends
    /// the stream.
    pub fn write(&self, chunk: Bytes, last: impl FnOnce() -> Bytes) -> Written {
        let mut state = self.shared.lock();
        if state.gone || state.finished {
            return Written::Gone;
        }
        let written = if state.queued + chunk.len() > self.limit {
            state.chunks.push_back(last());
            state.finished = true;
            Written::Overflowed
        } else {
            state.queued += chunk.len();
            state.chunks.push_back(chunk);
            Written::Queued
        };
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        written
    }

    /// Whether the client went away.
    pub fn is_gone(&self) -> bool {
        self.shared.lock().gone
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
    fn poll_frame(&mut self, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut state = self.shared.lock();
        if let Some(chunk) = state.chunks.pop_front() {
            state.queued = state.queued.saturating_sub(chunk.len());
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
    }
}

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response with this status and body.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// A record as the JSON body, with its `ETag`: both share the record's rendering (no copy, no
/// formatting).
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
