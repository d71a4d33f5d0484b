//! `GET /events`: the change feed over HTTP, as a long poll (`?after=REV&wait=SECONDS&limit=N`,
//! answered `{"events": [...], "next": REV}`) or, with `Accept: text/event-stream`, as Server-Sent
//! Events (`id:` = revision, resumable with `Last-Event-ID`, a comment every 15 s).
//!
//! Waiting costs no query: consumers wait on the store's feed, which one tail per server wakes.
//! A stream's unread output is bounded: a consumer that stops reading gets a last `overflow`
//! event and the stream ends, and it resumes from the last `id:` it received. Long polls answer
//! and streams end when the server starts shutting down.

use std::sync::Arc;
use std::time::Duration;

use guidstore::Change;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::error::ApiError;
use crate::fanout::{Chunk, Frames, Read};
use crate::response::{Body, StreamWriter, Written, json_response, stream};
use crate::state::AppState;
use crate::store_io;
use crate::wire::Abort;

/// `wait` when the request names none.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The largest `wait` a request may ask for.
pub const MAX_WAIT_SECS: u64 = 60;
/// `limit` when the request names none.
pub const DEFAULT_LIMIT: usize = 1_000;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 10_000;
/// How often an idle stream gets a comment line (proxies close silent connections).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The most bytes a stream holds unread before it gives up on its consumer.
pub const STREAM_BUFFER: usize = 1024 * 1024;

/// The parameters of `GET /events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsQuery {
    /// Events after this revision.
    pub after: u64,
    /// How long a long poll waits for one.
    pub wait: Duration,
    /// The most events in one answer.
    pub limit: usize,
}

/// Parses the query string: `after` (default 0), `wait` (seconds, 0-60, default 30), `limit`
/// (1-10,000, default 1,000); other parameters are ignored. A value that is not a number in range
/// is `400 invalid_query`.
pub fn parse_query(query: Option<&str>) -> Result<EventsQuery, ApiError> {
    let mut parsed = EventsQuery { after: 0, wait: DEFAULT_WAIT, limit: DEFAULT_LIMIT };
    for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || number(name, value);
        match name {
            "after" => parsed.after = number()?,
            "wait" => match number()? {
                seconds @ 0..=MAX_WAIT_SECS => parsed.wait = Duration::from_secs(seconds),
                _ => return Err(ApiError::InvalidQuery(format!("wait must be 0 to {MAX_WAIT_SECS} seconds"))),
            },
            "limit" => match usize::try_from(number()?) {
                Ok(limit @ 1..=MAX_LIMIT) => parsed.limit = limit,
                _ => return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}"))),
            },
            _ => {}
        }
    }
    Ok(parsed)
}

fn number(name: &str, value: &str) -> Result<u64, ApiError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidQuery(format!("{name} must be a non-negative integer, not {value:?}")));
    }
    value.parse().map_err(|_| ApiError::InvalidQuery(format!("{name} is too large")))
}

/// Whether the client asks for Server-Sent Events.
pub fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| media.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream")))
}

/// The revision a reconnecting event-stream client last received (`Last-Event-ID`).
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
    match headers.get(LAST_EVENT_ID) {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|_| ApiError::InvalidQuery("Last-Event-ID must be a revision".into()))?;
            number("Last-Event-ID", text.trim()).map(Some)
        }
    }
}

/// Answers a long poll: at once if there are events after `after`, else when one arrives, or
/// with none when `wait` (at most `--events-max-wait`) passes. It waits on the fan-out (one
/// notification per batch of changes, whoever waits), and its answer reuses the fan-out's
/// rendering of each event it holds.
pub async fn long_poll(state: &Arc<AppState>, query: EventsQuery) -> Result<Response<Body>, ApiError> {
    let wait = query.wait.min(state.settings.events_max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let mut stopping = state.stopping.subscribe();
    let mut feed = None;
    loop {
        let events = store_io::events_after(&state.store, query.after, query.limit).await?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline || *stopping.borrow() {
            state.metrics.events_delivered(events.len() as u64);
            let body = events_body(&events, &state.fanout.json_of(&events), query.after);
            return Ok(json_response(StatusCode::OK, body));
        }
        let feed = feed.get_or_insert_with(|| state.fanout.attach());
        tokio::select! {
            waited = feed.wait_beyond(query.after) => waited?,
            () = tokio::time::sleep_until(deadline) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
    }
}

/// `{"events":[EVENT,…],"next":REV}`: `next` is the last event's revision, or `after` when none.
/// `rendered`: each event's JSON when already rendered (by the fan-out).
fn events_body(events: &[Change], rendered: &[Option<Bytes>], after: u64) -> Bytes {
    let next = events.last().map_or(after, Change::revision);
    let mut body = Vec::with_capacity(64 + events.len() * 320);
    body.extend_from_slice(br#"{"events":["#);
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        match rendered.get(index) {
            Some(Some(json)) => body.extend_from_slice(json),
            _ => body.extend_from_slice(event.to_json().as_bytes()),
        }
    }
    body.extend_from_slice(format!(r#"],"next":{next}}}"#).as_bytes());
    body.into()
}

/// Opens a stream of events after `after`. A position already trimmed from the log is refused
/// here, as `410`, before the stream starts. `abort` drops the connection of a client that
/// stops reading (see [`produce`]).
pub async fn open_stream(
    state: &Arc<AppState>,
    after: u64,
    limit: usize,
    abort: Option<Abort>,
) -> Result<Response<Body>, ApiError> {
    let first = store_io::events_after(&state.store, after, limit).await?;
    let (writer, body) = stream(STREAM_BUFFER, after);
    tokio::spawn(produce(Arc::clone(state), after, limit, first, writer, abort));
    let mut response = Response::new(Body::Stream(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Writes events to a stream as they come, until the client goes away, stops reading, or the
/// server shuts down. Each stream has its own task at its client's pace: it never makes a writer
/// or another stream wait. It takes the events from the fan-out, already rendered, everything
/// after its position in one chunk per wake-up (up to [`CHUNK`] bytes); behind what the fan-out
/// keeps (at the start, or after falling far behind) it reads the store and renders what it
/// reads. At most [`STREAM_BUFFER`] bytes wait unread; while the queue is full the task waits for
/// the client to take some. A client that takes nothing for `--events-stall-timeout` gets,
/// instead of what waits, a last `overflow` event saying where to resume; if it does not read
/// that either within the timeout, its connection is dropped.
async fn produce(
    state: Arc<AppState>,
    mut after: u64,
    limit: usize,
    first: Vec<Change>,
    writer: StreamWriter,
    abort: Option<Abort>,
) {
    let _open = state.metrics.stream_opened(writer.position());
    let mut stopping = state.stopping.subscribe();
    let mut feed = state.fanout.attach();
    // Events read from the store, and whether the fan-out sent this stream there.
    let mut from_store = Some((first, false));
    loop {
        let (chunks, wait_on_store) = match from_store.take() {
            Some((events, behind)) => (Frames::render(&events).chunks(CHUNK), behind),
            None => match feed.read(after, CHUNK) {
                Read::Events(chunk) => (vec![chunk], false),
                Read::Current => (Vec::new(), false),
                Read::Behind => {
                    match store_io::events_after(&state.store, after, limit).await {
                        Ok(events) => from_store = Some((events, true)),
                        Err(error) => {
                            // The consumer learns why the stream ends (e.g. 410 events_truncated, 503).
                            writer.write(sse_error(&error), None);
                            return;
                        }
                    }
                    continue;
                }
            },
        };
        if !chunks.is_empty() {
            for Chunk { bytes, count, through } in chunks {
                if !write_paced(&state, &writer, bytes, through, abort.as_ref(), &mut stopping).await {
                    return;
                }
                state.metrics.events_delivered(count);
                after = through;
            }
            continue;
        }
        // Nothing new. The fan-out wakes this stream when it has more. Should the store have had
        // nothing for a position the fan-out is past (it cannot, short of a trimmed log), the
        // stream waits on the store itself rather than asking both in a loop.
        let waited = async {
            if wait_on_store { state.store.wait_for_changes_after(after).await } else { feed.wait_beyond(after).await }
        };
        let stall = tokio::select! {
            waited = waited => {
                if let Err(error) = waited {
                    writer.write(sse_error(&ApiError::from(error)), None);
                    return;
                }
                false
            }
            () = tokio::time::sleep(KEEP_ALIVE) => {
                // A full queue needs no keep-alive: it has bytes to send.
                if writer.write(Bytes::from_static(b": keep-alive\n\n"), None) == Written::Gone {
                    return;
                }
                false
            }
            () = stalled(&writer, state.settings.events_stall_timeout) => true,
            () = writer.closed() => return,
            _ = stopping.wait_for(|stopping| *stopping) => return,
        };
        if stall {
            give_up(&state, &writer, abort.as_ref(), &mut stopping).await;
            return;
        }
    }
}

/// Queues `chunk`, waiting for room while the client reads; `false` when the stream is over
/// (the client went away, stalled, or the server is stopping).
async fn write_paced(
    state: &AppState,
    writer: &StreamWriter,
    chunk: Bytes,
    through: u64,
    abort: Option<&Abort>,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let stall_timeout = state.settings.events_stall_timeout;
    loop {
        match writer.write(chunk.clone(), Some(through)) {
            Written::Queued => return true,
            Written::Gone => return false,
            Written::Full => {}
        }
        let stall = tokio::select! {
            () = writer.drained() => false,
            () = stalled(writer, stall_timeout) => true,
            () = writer.closed() => return false,
            _ = stopping.wait_for(|stopping| *stopping) => return false,
        };
        if stall {
            give_up(state, writer, abort, stopping).await;
            return false;
        }
    }
}

/// Ends the stream of a client that took nothing for the stall timeout: what waits for it is
/// replaced by a last `overflow` event; a client that does not read that either within the
/// timeout has its connection dropped.
async fn give_up(
    state: &AppState,
    writer: &StreamWriter,
    abort: Option<&Abort>,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) {
    state.metrics.stream_overflowed();
    writer.finish_with(overflow(writer.taken()));
    tokio::select! {
        () = stalled(writer, state.settings.events_stall_timeout) => drop_stalled(state, abort),
        () = writer.closed() => {}
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
}

/// Completes once output has waited `timeout` without the client taking any of it; never while
/// nothing waits at the start (the producer checks again after queueing more).
async fn stalled(writer: &StreamWriter, timeout: Duration) {
    loop {
        let Some(since) = writer.waiting_since() else {
            return std::future::pending().await;
        };
        let deadline = since + timeout;
        if std::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

fn drop_stalled(state: &AppState, abort: Option<&Abort>) {
    state.metrics.stream_stalled();
    log::info!(
        "event stream: the client took nothing for {:?}; dropping its connection",
        state.settings.events_stall_timeout
    );
    if let Some(abort) = abort {
        abort.abort();
    }
}

/// The most bytes of events in one chunk of a stream (a larger event goes alone in its chunk).
pub const CHUNK: usize = 256 * 1024;

/// The last event of a stream whose consumer took nothing for the stall timeout: it resumes
/// from the last `id:` it received (`last_event_id`: the last the server handed to the
/// connection).
fn overflow(after: u64) -> Bytes {
    format!(
        "event: overflow\ndata: {{\"error\":\"slow_consumer\",\"message\":\"the consumer stopped reading with \
         events waiting; reconnect with Last-Event-ID to resume\",\"last_event_id\":{after}}}\n\n"
    )
    .into()
}

/// The last event of a stream that ends on an error: the API's error body.
fn sse_error(error: &ApiError) -> Bytes {
    let body = serde_json::json!({ "error": error.code().as_str(), "message": error.message() });
    format!("event: error\ndata: {body}\n\n").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_has_defaults_and_bounds() {
        let parse = |query: &str| parse_query(Some(query)).map_err(|e| e.code().as_str());
        assert_eq!(parse(""), Ok(EventsQuery { after: 0, wait: DEFAULT_WAIT, limit: DEFAULT_LIMIT }));
        assert_eq!(parse_query(None).unwrap(), parse("").unwrap());
        assert_eq!(parse("after=17&wait=0&limit=5&x=y"), Ok(EventsQuery { after: 17, wait: Duration::ZERO, limit: 5 }));
        assert_eq!(parse("wait=60").map(|q| q.wait), Ok(Duration::from_secs(60)));
        for bad in [
            "after=-1",
            "after=x",
            "after=",
            "wait=61",
            "wait=1.5",
            "limit=0",
            "limit=10001",
            "after=99999999999999999999",
        ] {
            assert_eq!(parse(bad), Err("invalid_query"), "{bad}");
        }
    }

    #[test]
    fn accept_and_last_event_id_pick_the_stream_and_its_start() {
        let mut headers = HeaderMap::new();
        assert!(!wants_stream(&headers));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, Text/Event-Stream;q=0.9"));
        assert!(wants_stream(&headers));
        assert_eq!(last_event_id(&headers).unwrap(), None);
        headers.insert(HeaderName::from_static("last-event-id"), HeaderValue::from_static(" 42 "));
        assert_eq!(last_event_id(&headers).unwrap(), Some(42));
        headers.insert(HeaderName::from_static("last-event-id"), HeaderValue::from_static("x"));
        assert!(last_event_id(&headers).is_err());
    }

    #[test]
    fn an_empty_answer_names_the_position_it_was_asked_for() {
        assert_eq!(events_body(&[], &[], 9), Bytes::from_static(br#"{"events":[],"next":9}"#));
    }
}
