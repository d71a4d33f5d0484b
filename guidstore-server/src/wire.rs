//! [`WireStream`]: a client connection's byte stream as hyper sees it, with three changes for
//! HTTP/1 clients that hyper offers no option for:
//!
//! - **A half-close waits for the answers.** A client that shuts down its sending side after a
//!   request (`nc -N`, some HTTP/1.0 clients and proxies) sends an EOF; hyper would close at once
//!   and drop the request in flight. While a request is in flight ([`EofHold`]), the EOF is held
//!   back from hyper and given to it when the last answer has been handed over, so every request
//!   read in full is answered. (hyper's own `half_close` option never reads during an answer, so
//!   it would also keep streaming an event stream to a client long gone; holding the EOF only
//!   while a handler runs does not.)
//! - **A `#fragment` in a request target is refused.** hyper's URI type drops a fragment while
//!   parsing; [`spoil_fragments`] turns the `#` of a request line into a space first, so hyper
//!   finds a request line with a bad version and answers `400`.
//! - **hyper's own error answers get the JSON error body** every other 4xx of the server has.
//!
//! hyper answers a request it cannot parse (a garbage request line, a bad header, conflicting
//! `Content-Length`s, a head larger than its buffer, a target longer than 65,534 bytes) itself,
//! before any service runs, with an empty `400`, `431` or `414` and `connection: close`; no hyper
//! or hyper-util option changes that answer. This wrapper recognises exactly that head — one of
//! those three status lines followed by `connection: close` and `content-length: 0`, which the
//! service's responses never are (they always carry `content-type`) — when a write starts with
//! it, and writes the same head with a JSON body instead (`bad_request`, `uri_too_long`,
//! `header_too_large`). Every other written byte passes through untouched.
//!
//! Nothing here knows routes or the store; `server.rs` wraps every connection in it (HTTP/2
//! connections unchanged: their bytes are frames, not lines).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::error::ApiError;

/// hyper's automatic answer: status line, then these headers (then `date`, then the blank line).
const AUTOMATIC_HEADERS: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// Requests in flight on one HTTP/1 connection, during which the client's EOF is held back.
///
/// A request still reading its body when the EOF comes can never get the rest: its handler
/// learns it from [`EofHold::closed`] (the request is then answered as a broken body), so the
/// hold never waits for a body that cannot come.
///
/// It also keeps what the connection's idle check (`server.rs`) reads: when the last request
/// ended ([`EofHold::note_end`]) and the streamed bodies being written ([`EofHold::stream_open`]).
#[derive(Debug)]
pub struct EofHold {
    in_flight: AtomicUsize,
    /// When the connection was opened: `last_end` counts from it.
    opened: Instant,
    /// When the last request ended, in nanoseconds since `opened` (0: none has).
    last_end: AtomicU64,
    /// Streamed response bodies not yet finished.
    streams: AtomicUsize,
    /// The last write to the client could not complete (its receive window is full): an answer is
    /// still being written, however long ago its request ended.
    writing: AtomicBool,
    /// The reader waiting for the last request to end, to give hyper the EOF.
    reader: Mutex<Option<Waker>>,
    /// Whether `reader` holds a waker (so most requests end without taking the lock).
    reader_waiting: AtomicBool,
    /// The client has sent its EOF.
    eof: AtomicBool,
    /// Wakes [`EofHold::closed`].
    eof_notify: Notify,
}

/// One request in flight; dropping it may release a held EOF.
#[derive(Debug)]
pub struct HoldGuard(Arc<EofHold>);

impl Default for EofHold {
    fn default() -> EofHold {
        EofHold {
            in_flight: AtomicUsize::new(0),
            opened: Instant::now(),
            last_end: AtomicU64::new(0),
            streams: AtomicUsize::new(0),
            writing: AtomicBool::new(false),
            reader: Mutex::new(None),
            reader_waiting: AtomicBool::new(false),
            eof: AtomicBool::new(false),
            eof_notify: Notify::new(),
        }
    }
}

/// A streamed body being written; ends when dropped (with the body).
#[derive(Debug)]
pub struct StreamGuard(Arc<EofHold>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
        self.0.note_end(Instant::now());
    }
}

impl EofHold {
    /// Records that a request ended (its answer handed to hyper) at `at`.
    pub fn note_end(&self, at: Instant) {
        let nanos = u64::try_from(at.saturating_duration_since(self.opened).as_nanos()).unwrap_or(u64::MAX);
        self.last_end.fetch_max(nanos, Ordering::SeqCst);
    }

    /// Notes whether a write to the client is waiting for it to read: while one is, the
    /// connection is not idle, and when it completes the idle time counts from then (a slow
    /// reader is never cut in the middle of an answer). Two loads on the common path.
    fn note_write<T>(&self, result: &Poll<T>) {
        let waiting = result.is_pending();
        if self.writing.load(Ordering::Relaxed) != waiting {
            self.writing.store(waiting, Ordering::SeqCst);
            if !waiting {
                self.note_end(Instant::now());
            }
        }
    }

    /// Marks a streamed body being written until the guard is dropped.
    pub fn stream_open(self: &Arc<EofHold>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard(Arc::clone(self))
    }

    /// `None` while a request is in flight, a streamed body is being written or a write waits for
    /// the client to read; else since when the connection has been idle (the end of its last
    /// request or write, or its opening).
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0
            || self.streams.load(Ordering::SeqCst) > 0
            || self.writing.load(Ordering::SeqCst)
        {
            return None;
        }
        Some(self.opened + Duration::from_nanos(self.last_end.load(Ordering::SeqCst)))
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn hold(self: &Arc<EofHold>) -> HoldGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        HoldGuard(Arc::clone(self))
    }

    /// Completes once the client has sent its EOF: nothing more will arrive on the connection.
    pub async fn closed(&self) {
        let notified = self.eof_notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if !self.eof.load(Ordering::SeqCst) {
            notified.await;
        }
    }

    /// Records the client's EOF and wakes [`EofHold::closed`].
    fn set_eof(&self) {
        self.eof.store(true, Ordering::SeqCst);
        self.eof_notify.notify_waiters();
    }

    /// Whether no request is in flight; if one is, `cx` is woken when the last one ends.
    fn is_released(&self, cx: &Context<'_>) -> bool {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            return true;
        }
        *self.reader.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        self.reader_waiting.store(true, Ordering::SeqCst);
        // A request that ended between the load and the store found no waker: look again.
        self.in_flight.load(Ordering::SeqCst) == 0
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.reader_waiting.swap(false, Ordering::SeqCst)
            && let Some(reader) = self.0.reader.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            reader.wake();
        }
    }
}

/// A connection's stream as hyper sees it (see the module's documentation).
#[derive(Debug)]
pub struct WireStream<S> {
    inner: S,
    /// A rewritten answer and how much of it is written; drained before anything else is written.
    pending: Option<(Vec<u8>, usize)>,
    /// For HTTP/1: the requests in flight, and where the bytes read stand within a line.
    http1: Option<(Arc<EofHold>, Line)>,
    /// The client's EOF arrived while a request was in flight.
    eof_held: bool,
}

impl<S> WireStream<S> {
    /// Wraps `inner`. `http1` is `Some` for an HTTP/1 connection: the requests whose answers a
    /// client's EOF waits for. For HTTP/2 (`None`) reads pass through untouched.
    pub fn new(inner: S, http1: Option<Arc<EofHold>>) -> WireStream<S> {
        WireStream { inner, pending: None, http1: http1.map(|hold| (hold, Line::Start)), eof_held: false }
    }
}

impl<S: AsyncWrite + Unpin> WireStream<S> {
    /// Writes what is left of a rewritten answer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let rest = bytes.get(*written..).unwrap_or_default();
            if rest.is_empty() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written when it is hyper's automatic error answer, queueing the JSON version.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let rewritten = rewrite(buf)?;
        self.pending = Some((rewritten, 0));
        // hyper flushes next; what this write cannot send now, the flush sends.
        Some(match self.poll_drain(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(buf.len())),
        })
    }
}

/// The JSON version of hyper's automatic error answer `head`, or `None` if `head` is not one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let after_version = head.strip_prefix(b"HTTP/1.1 ")?;
    let error = match after_version.get(..4)? {
        b"400 " => ApiError::BadRequest("the request is not valid HTTP/1.1 (request line, header or framing)"),
        b"414 " => ApiError::UriTooLong,
        b"431 " => ApiError::HeaderTooLarge,
        _ => return None,
    };
    let status_line_end = head.windows(2).position(|pair| pair == b"\r\n")?;
    let (status_line, headers) = head.split_at(status_line_end);
    let rest = headers.strip_prefix(AUTOMATIC_HEADERS)?;
    let body = error.body();
    let mut rewritten = Vec::with_capacity(head.len() + body.len() + 64);
    rewritten.extend_from_slice(status_line);
    rewritten.extend_from_slice(b"\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ");
    rewritten.extend_from_slice(body.len().to_string().as_bytes());
    rewritten.extend_from_slice(b"\r\n");
    rewritten.extend_from_slice(rest);
    rewritten.extend_from_slice(body.as_bytes());
    Some(rewritten)
}

impl<S: AsyncRead + Unpin> AsyncRead for WireStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some((hold, line)) = &mut this.http1 else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if this.eof_held {
            // Nothing more will come; the EOF goes to hyper once the answers are handed over.
            return if hold.is_released(cx) { Poll::Ready(Ok(())) } else { Poll::Pending };
        }
        let before = buf.filled().len();
        let had_room = buf.remaining() > 0;
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(fresh) = buf.filled_mut().get_mut(before..) else { return Poll::Ready(Ok(())) };
        if fresh.is_empty() && had_room {
            hold.set_eof();
            if !hold.is_released(cx) {
                this.eof_held = true;
                return Poll::Pending;
            }
        }
        // Every byte compared, without an early exit (the compiler vectorises it): cheaper than a
        // `memchr` call for a request's few dozen bytes.
        *line = if fresh.iter().fold(false, |hash, &byte| hash | (byte == b'#')) {
            spoil_fragments(*line, fresh)
        } else if fresh.last() == Some(&b'\n') {
            // No `#` (nearly always), and the read ends a line (usually a request's blank line):
            // the next read starts a line.
            Line::Start
        } else {
            // Only the last, unfinished line decides where the next read starts.
            match memchr::memrchr(b'\n', fresh) {
                Some(newline) => spoil_fragments(Line::Start, fresh.get_mut(newline + 1..).unwrap_or_default()),
                None => spoil_fragments(*line, fresh),
            }
        };
        Poll::Ready(Ok(()))
    }
}

/// Where the bytes read from an HTTP/1 client stand within a line, for [`spoil_fragments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// In a first word of capitals: perhaps a request line's method.
    Method,
    /// After `METHOD SP`: in what would be a request target.
    Target,
    /// Anywhere else, up to the end of the line.
    Rest,
}

/// Turns a `#` in the target of a request line into a space, so that hyper's parser finds a
/// request line with a bad version and refuses it (`400`, given its JSON body above): hyper's
/// URI type drops a fragment silently, and RFC 9110 §7.1 keeps fragments out of requests.
///
/// A request line is a line that starts with capitals and a space (`GET /guid/…#x HTTP/1.1`).
/// Header lines never look like one (a name is followed by `:`), and neither does a line of a
/// JSON body (none starts with a capital). `bytes` is what one read gave; `line` carries over.
fn spoil_fragments(mut line: Line, bytes: &mut [u8]) -> Line {
    let mut at = 0;
    while let Some(rest) = bytes.get_mut(at..) {
        if rest.is_empty() {
            break;
        }
        match line {
            Line::Rest => match memchr::memchr(b'\n', rest) {
                Some(newline) => {
                    at += newline + 1;
                    line = Line::Start;
                }
                None => break,
            },
            Line::Target => match memchr::memchr3(b'#', b' ', b'\n', rest) {
                Some(found) => {
                    if let Some(byte) = rest.get_mut(found) {
                        if *byte == b'#' {
                            *byte = b' ';
                        }
                        line = if *byte == b'\n' { Line::Start } else { Line::Rest };
                    }
                    at += found + 1;
                }
                None => break,
            },
            Line::Start | Line::Method => {
                let Some(&byte) = rest.first() else { break };
                line = match (line, byte) {
                    (_, b'A'..=b'Z') => Line::Method,
                    (Line::Method, b' ') => Line::Target,
                    (_, b'\n') => Line::Start,
                    _ => Line::Rest,
                };
                at += 1;
            }
        }
    }
    line
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WireStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if let Some(done) = this.poll_rewrite(cx, buf) {
            return done;
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Some((hold, _)) = &this.http1 {
            hold.note_write(&result);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        // hyper's automatic answer is a head alone: it comes as the first slice.
        if let Some(first) = bufs.iter().find(|slice| !slice.is_empty())
            && let Some(done) = this.poll_rewrite(cx, first)
        {
            return done;
        }
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Some((hold, _)) = &this.http1 {
            hold.note_write(&result);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Ends a connection at once from inside one of its responses: `server.rs` hands one to every
/// request's handler and drops the connection when it is used. For an event stream whose
/// client stopped reading: hyper no longer polls that body, so nothing in it could end it.
#[derive(Debug, Clone, Default)]
pub struct Abort(Arc<tokio::sync::Notify>);

impl Abort {
    /// Asks for the connection to be dropped.
    pub fn abort(&self) {
        self.0.notify_one();
    }

    /// Completes once [`Abort::abort`] has been called (also if it was before the wait began).
    pub async fn aborted(&self) {
        self.0.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const DATE: &str = "date: Sun, 29 Nov 2026 20:16:56 GMT\r\n\r\n";

    #[test]
    fn a_write_waiting_for_the_client_keeps_the_connection_from_idling() {
        let hold = EofHold::default();
        let opened = hold.idle_since().expect("idle since it opened");
        hold.note_write(&Poll::<()>::Pending);
        assert_eq!(hold.idle_since(), None, "an answer is still being written");
        std::thread::sleep(Duration::from_millis(5));
        hold.note_write(&Poll::Ready(()));
        let since = hold.idle_since().expect("idle once the write completed");
        assert!(since >= opened + Duration::from_millis(5), "idle counts from the write's end");
        hold.note_write(&Poll::Ready(()));
        assert_eq!(hold.idle_since(), Some(since), "a write that never waited changes nothing");
    }

    fn automatic(status_line: &str) -> String {
        format!("{status_line}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}")
    }

    #[test]
    fn hypers_automatic_answers_get_json_bodies() {
        let cases = [
            ("HTTP/1.1 400 Bad Request", "bad_request"),
            ("HTTP/1.1 414 URI Too Long", "uri_too_long"),
            ("HTTP/1.1 431 Request Header Fields Too Large", "header_too_large"),
        ];
        for (status_line, code) in cases {
            let rewritten = String::from_utf8(rewrite(automatic(status_line).as_bytes()).unwrap()).unwrap();
            let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("{status_line}\r\ncontent-type: application/json\r\n")), "{head}");
            assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
            assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
            assert!(head.ends_with(DATE.trim_end()), "{head}");
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(value["error"], code);
            assert!(value["message"].as_str().is_some_and(|message| !message.is_empty()));
        }
    }

    #[test]
    fn other_bytes_pass_untouched() {
        let others = [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}".to_owned(),
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_owned(),
            automatic("HTTP/1.0 400 Bad Request"),
            "HTTP/1.1 400".to_owned(),
            String::new(),
            "{\"a\":1}".to_owned(),
        ];
        for other in others {
            assert_eq!(rewrite(other.as_bytes()), None, "{other:?}");
        }
    }

    /// `text` through `spoil_fragments`, fed in pieces of `piece` bytes.
    fn spoiled(text: &str, piece: usize) -> String {
        let mut bytes = text.as_bytes().to_vec();
        let mut line = Line::Start;
        for chunk in bytes.chunks_mut(piece) {
            line = spoil_fragments(line, chunk);
        }
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_hash_in_a_request_target_becomes_a_space_and_nothing_else_changes() {
        let cases = [
            ("GET /guid/A#frag HTTP/1.1\r\nHost: x\r\n\r\n", "GET /guid/A frag HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("GET http://x/a?b#c HTTP/1.1\r\n", "GET http://x/a?b c HTTP/1.1\r\n"),
            (
                "GET /a HTTP/1.1\r\nX-Tag: #1\r\nIf-Match: \"#\"\r\n\r\n",
                "GET /a HTTP/1.1\r\nX-Tag: #1\r\nIf-Match: \"#\"\r\n\r\n",
            ),
            (
                "POST /a HTTP/1.1\r\n\r\n{\"a\":\"GET /b#c HTTP/1.1\"}",
                "POST /a HTTP/1.1\r\n\r\n{\"a\":\"GET /b#c HTTP/1.1\"}",
            ),
            ("{\n  \"x\": \"#\"\n}\nPATCH /g#h HTTP/1.1\r\n", "{\n  \"x\": \"#\"\n}\nPATCH /g h HTTP/1.1\r\n"),
            ("GET /a HTTP/1.1#\r\n", "GET /a HTTP/1.1#\r\n"),
            ("get /a#b HTTP/1.1\r\n", "get /a#b HTTP/1.1\r\n"),
            ("", ""),
        ];
        for (input, expected) in cases {
            for piece in [1, 2, 3, 7, 1024] {
                assert_eq!(spoiled(input, piece), expected, "{input:?} in pieces of {piece}");
            }
        }
    }

    #[tokio::test]
    async fn a_target_split_across_reads_is_still_checked() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(1024);
        let mut wrapped = WireStream::new(server, Some(Arc::new(EofHold::default())));
        let mut received = Vec::new();
        for piece in [
            "GET /a HTTP/1.1\r\nHost: #\r\n\r\nGET /b",
            "/c",
            "#d HTTP/1.1\r\n",
            "X: #\r\n\r\nGE",
            "T /e#f HTTP/1.1\r\n",
        ] {
            client.write_all(piece.as_bytes()).await.unwrap();
            let mut buffer = [0u8; 1024];
            let n = wrapped.read(&mut buffer).await.unwrap();
            received.extend_from_slice(&buffer[..n]);
        }
        assert_eq!(
            String::from_utf8(received).unwrap(),
            "GET /a HTTP/1.1\r\nHost: #\r\n\r\nGET /b/c d HTTP/1.1\r\nX: #\r\n\r\nGET /e f HTTP/1.1\r\n"
        );
    }

    #[tokio::test]
    async fn an_eof_waits_while_a_request_is_in_flight() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(64);
        let hold = Arc::new(EofHold::default());
        let mut wrapped = WireStream::new(server, Some(Arc::clone(&hold)));
        client.write_all(b"GET /a#b HTTP/1.1\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut received = vec![0u8; 64];
        let n = wrapped.read(&mut received).await.unwrap();
        assert_eq!(&received[..n], b"GET /a b HTTP/1.1\r\n");
        let guard = hold.hold();
        let read = tokio::spawn(async move { wrapped.read(&mut [0u8; 8]).await.unwrap() });
        tokio::task::yield_now().await;
        assert!(!read.is_finished(), "the EOF reached the reader while a request was in flight");
        tokio::time::timeout(std::time::Duration::from_secs(5), hold.closed()).await.expect("closed() after the EOF");
        drop(guard);
        assert_eq!(tokio::time::timeout(std::time::Duration::from_secs(5), read).await.unwrap().unwrap(), 0);
    }

    #[tokio::test]
    async fn a_rewritten_answer_is_written_whole_through_a_slow_stream() {
        let (client, mut server) = tokio::io::duplex(7);
        let mut wrapped = WireStream::new(client, None);
        let head = automatic("HTTP/1.1 400 Bad Request");
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut received).await.unwrap();
            received
        });
        wrapped.write_all(head.as_bytes()).await.unwrap();
        wrapped.write_all(b"").await.unwrap();
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        let received = String::from_utf8(reader.await.unwrap()).unwrap();
        assert_eq!(received.as_bytes(), rewrite(head.as_bytes()).unwrap());
        assert!(received.ends_with("}"), "{received}");
    }
}
