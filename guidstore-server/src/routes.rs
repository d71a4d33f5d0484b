//! Routing and handlers: a `match` on method and path, one arm per operation, each returning
//! `Result<Response, ApiError>`. [`handle`] is the whole hyper service: it never fails, times the
//! request, counts it, and writes the access-log line (for writes, even when the client has gone).
//!
//! Bodies are parsed by the library (`NewRecord::parse`, `Patch::parse`); writes await the store's
//! `Pending` futures, blocking reads go through `store_io` (never on a runtime worker thread);
//! responses are built by `response`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guidstore::{Guid, IfMatch, NewRecord, Patch, Store};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HOST, HeaderValue, IF_MATCH, LOCATION};
use hyper::http::request::Parts;
use hyper::http::uri::Authority;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use crate::error::ApiError;
use crate::metrics::{RouteLabel, StoreGauges};
use crate::response::{Body, json_response, record_response, strip_body};
use crate::state::AppState;
use crate::wire::{Abort, EofHold};
use crate::{events, logfile, store_io};

pub use crate::logfile::ACCESS_LOG;

const ALLOW_ITEM: &str = "GET, HEAD, POST, PATCH, DELETE";
const ALLOW_COLLECTION: &str = "POST";
const ALLOW_OPERATIONS: &str = "GET, HEAD";

/// What a request path names. The GUID segment is kept as raw (undecoded) text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Collection,
    Item(&'a str),
    Healthz,
    Metrics,
    Events,
    Unknown,
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Route<'a> {
        // A trailing slash is tolerated: `/guid/` is `/guid`.
        let path = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
        match path {
            "/guid" => Route::Collection,
            "/healthz" => Route::Healthz,
            "/metrics" => Route::Metrics,
            "/events" => Route::Events,
            _ => match path.strip_prefix("/guid/") {
                // Every byte looked at, without an early exit: the compiler vectorises it, and a
                // GUID segment is short (a `memchr` call costs more than the search).
                Some(segment) if !segment.bytes().fold(false, |slash, byte| slash | (byte == b'/')) => {
                    Route::Item(segment)
                }
                _ => Route::Unknown,
            },
        }
    }

    fn label(self) -> RouteLabel {
        match self {
            Route::Collection => RouteLabel::Collection,
            Route::Item(_) => RouteLabel::Item,
            Route::Healthz => RouteLabel::Healthz,
            Route::Metrics => RouteLabel::Metrics,
            Route::Events => RouteLabel::Events,
            Route::Unknown => RouteLabel::Unknown,
        }
    }
}

/// Answers one request. Never fails: errors become JSON error responses.
///
/// A request that may write (`POST`, `PATCH`, `DELETE`) runs on its own task: hyper drops the
/// request's future when the client goes away (a reset, a closed socket), but a write handed to
/// the store commits all the same, and its access-log line and metrics must follow it. Reads stay
/// on the connection's task, so a read whose client left is simply dropped.
///
/// `client_eof` is the HTTP/1 connection's [`EofHold`]: a body cut short by the client's EOF is
/// known from it (hyper does not see that EOF while the request runs). `abort` drops the
/// connection (an event stream whose client stopped reading); passed here rather than in the
/// request's extensions, whose map would be allocated for every request.
pub async fn handle(
    state: Arc<AppState>,
    peer: Arc<Peer>,
    client_eof: Option<Arc<EofHold>>,
    abort: Option<Abort>,
    request: Request<Incoming>,
) -> Response<Body> {
    if !matches!(*request.method(), Method::POST | Method::PATCH | Method::DELETE) {
        return answer(state, peer, client_eof, abort, request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match tokio::spawn(answer(state, Arc::clone(&peer), client_eof, abort, request)).await {
        Ok(response) => response,
        Err(error) => {
            log::error!("{method} {path} from {peer}: the request's task failed: {error}");
            ApiError::Task(error).into_response()
        }
    }
}

/// [`handle`]'s work: routes, answers, counts and logs one request.
async fn answer(
    state: Arc<AppState>,
    peer: Arc<Peer>,
    client_eof: Option<Arc<EofHold>>,
    abort: Option<Abort>,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    // The head stays here, borrowed by the handler: the access line needs its method and path.
    let (head, body) = request.into_parts();
    let (method, uri, version) = (&head.method, &head.uri, head.version);
    let route = Route::of(uri.path());
    let mut response = match dispatch(&state, route, &head, body, client_eof.as_deref(), abort, started).await {
        Ok(response) => response,
        Err(error) => {
            let status = error.status();
            if status.is_server_error() {
                log::error!("{method} {} from {peer}: {status}: {error}; cause: {error:?}", uri.path());
            } else {
                log::debug!("{method} {} from {peer}: {status} {}: {error}", uri.path(), error.code());
            }
            let payload_too_large = matches!(error, ApiError::PayloadTooLarge { .. });
            let mut response = error.into_response();
            if payload_too_large && version < Version::HTTP_2 {
                // The rest of the body is not read, so the connection cannot be reused.
                response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if let (Some(hold), Body::Stream(stream)) = (&client_eof, response.body_mut()) {
        stream.keep(hold.stream_open());
    }
    if method == Method::HEAD && version >= Version::HTTP_2 {
        // HTTP/1: hyper answers HEAD with the body's length and without the body.
        strip_body(&mut response);
    }
    let done = Answered { started, route, method, path: uri.path(), status: response.status() };
    done.count_and_log(&state, &peer, client_eof.as_deref());
    response
}

/// The answer to a `GET` or `HEAD` of a record the cache holds, given at once: `None` for every
/// other request (and for a read the cache cannot answer, or whose request is refused), which
/// then takes [`handle`]. The server's service calls it before it hands a request to [`handle`].
///
/// The answer, its metrics and its access-log line are those [`handle`] would give; but it is
/// given before hyper reads from the connection again (hyper looks for the next request while
/// the first one's future waits to be polled), with the request already dropped: its head
/// shares hyper's read buffer, which can then be reused instead of reallocated, and no future
/// holds the request across polls.
pub fn answer_cached(
    state: &AppState,
    peer: &Peer,
    client_eof: Option<&EofHold>,
    request: &Request<Incoming>,
) -> Option<Response<Body>> {
    let started = Instant::now();
    let method = request.method();
    // A shared database's reads first bring the cache up to date (or read `max-stale`): `handle`.
    if !matches!(*method, Method::GET | Method::HEAD) || state.store.is_shared() {
        return None;
    }
    let path = request.uri().path();
    let route = Route::of(path);
    let Route::Item(segment) = route else { return None };
    let version = request.version();
    check_host(version, request.headers(), request.uri()).ok()?;
    if let Some(auth) = &state.auth
        && !auth.allows(request.headers())
    {
        return None;
    }
    let guid = Guid::parse_bytes(segment.as_bytes()).ok()?;
    let record = state.store.get_cached(&guid)?;
    let mut response = record_response(StatusCode::OK, &record);
    if method == Method::HEAD && version >= Version::HTTP_2 {
        strip_body(&mut response);
    }
    let done = Answered { started, route, method, path, status: response.status() };
    done.count_and_log(state, peer, client_eof);
    Some(response)
}

/// A request answered: what its metrics and access-log line need.
struct Answered<'a> {
    started: Instant,
    route: Route<'a>,
    method: &'a Method,
    path: &'a str,
    status: StatusCode,
}

impl Answered<'_> {
    /// Counts the request, writes its access-log line and notes its end on its connection.
    fn count_and_log(&self, state: &AppState, peer: &Peer, client_eof: Option<&EofHold>) {
        // One clock read for the latency (metrics, access log) and the access line's timestamp.
        let ended = Instant::now();
        let elapsed = ended.saturating_duration_since(self.started);
        if let Some(hold) = client_eof {
            hold.note_end(ended);
        }
        state.metrics.record(self.route.label(), self.method, self.status, elapsed);
        if log::max_level() >= log::LevelFilter::Info {
            let line = AccessLine { method: self.method, path: self.path, status: self.status, elapsed, peer };
            if !logfile::log_access(ended, |out| line.write_to(out)) {
                log::info!(target: ACCESS_LOG, "{line}");
            }
        }
    }
}

/// A client's address, with its text as the access log writes it: rendered once per connection
/// rather than for every request's line.
#[derive(Debug)]
pub struct Peer {
    text: String,
}

impl Peer {
    /// The peer at `address`.
    pub fn new(address: SocketAddr) -> Peer {
        Peer { text: address.to_string() }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// An access-log line: `METHOD PATH STATUS LATENCYms PEER`, e.g.
/// `GET /guid/9094E4C980C74043A4B586B420E69DDF 200 0.052ms 127.0.0.1:50312`.
struct AccessLine<'a> {
    method: &'a Method,
    path: &'a str,
    status: StatusCode,
    elapsed: Duration,
    peer: &'a Peer,
}

impl AccessLine<'_> {
    /// Appends the line (without a newline) to `out`, written by hand: `format_args!` with a
    /// `SocketAddr` and padded integers cost about as much as the rest of a cached GET's handling.
    /// The peer's text is the connection's ([`Peer`]); the status and the latency's fraction are
    /// fixed-width digits.
    fn write_to(&self, out: &mut Vec<u8>) {
        let status = self.status.as_u16();
        // Milliseconds with three decimals, from integers.
        let micros = u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX);
        let (whole, fraction) = (micros / 1000, micros % 1000);
        let mut digits = itoa::Buffer::new();
        let whole = digits.format(whole).as_bytes();
        let method = self.method.as_str().as_bytes();
        let peer = self.peer.text.as_bytes();
        out.extend_from_slice(method);
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(&[b' ', digit(status / 100), digit(status / 10), digit(status), b' ']);
        out.extend_from_slice(whole);
        let fraction = u16::try_from(fraction).unwrap_or_default();
        out.extend_from_slice(&[b'.', digit(fraction / 100), digit(fraction / 10), digit(fraction), b'm', b's', b' ']);
        out.extend_from_slice(peer);
    }
}

/// The last decimal digit of `value`, as ASCII.
fn digit(value: u16) -> u8 {
    b'0' + (value % 10) as u8
}

impl std::fmt::Display for AccessLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = Vec::with_capacity(96);
        self.write_to(&mut line);
        f.write_str(&String::from_utf8_lossy(&line))
    }
}

/// Routes one request; `started` is when it began (a read's time budget counts from it).
async fn dispatch(
    state: &Arc<AppState>,
    route: Route<'_>,
    head: &Parts,
    body: Incoming,
    client_eof: Option<&EofHold>,
    abort: Option<Abort>,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    check_host(head.version, &head.headers, &head.uri)?;
    if route != Route::Healthz
        && let Some(auth) = &state.auth
        && !auth.allows(&head.headers)
    {
        return Err(ApiError::Unauthorized);
    }
    if let (Route::Item(segment), &Method::GET | &Method::HEAD) = (route, &head.method) {
        return read(state, segment, &head.headers, started).await;
    }
    // The other operations' futures are far larger than a read's; boxed, they do not make every
    // read's future (moved several times by hyper) as large.
    Box::pin(operate(state, route, head, body, client_eof, abort, started)).await
}

/// `GET` or `HEAD` of a record, within the store's timeout from `started` (see [`store_io::get`]).
async fn read(
    state: &Arc<AppState>,
    segment: &str,
    headers: &HeaderMap,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    let guid = parse_guid(segment)?;
    // `max-stale` matters only on a shared database (elsewhere the cache is always current).
    let max_stale = if state.store.is_shared() { max_stale(headers) } else { None };
    let record = store_io::get(&state.store, guid, max_stale, started).await?;
    Ok(record_response(StatusCode::OK, &record))
}

/// Every operation but a read of a record, once the request is let in.
async fn operate(
    state: &Arc<AppState>,
    route: Route<'_>,
    head: &Parts,
    body: Incoming,
    client_eof: Option<&EofHold>,
    abort: Option<Abort>,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    let method = head.method.clone();
    match (route, method) {
        (Route::Collection, Method::POST) => {
            let body = read_body(body, state.settings.max_body, client_eof).await?;
            let new_record = NewRecord::parse(&body, None, state.store.now())?;
            create(&state.store, new_record).await
        }
        (Route::Collection, method) => Err(ApiError::MethodNotAllowed { method, allow: ALLOW_COLLECTION }),
        // `dispatch` answers reads before it calls this (keeping a read's future small); the arm
        // keeps the match whole, with the request's own start.
        (Route::Item(segment), Method::GET | Method::HEAD) => read(state, segment, &head.headers, started).await,
        (Route::Item(segment), Method::POST) => {
            let guid = parse_guid(segment)?;
            let body = read_body(body, state.settings.max_body, client_eof).await?;
            let new_record = NewRecord::parse(&body, Some(&guid), state.store.now())?;
            create(&state.store, new_record).await
        }
        (Route::Item(segment), Method::PATCH) => {
            let guid = parse_guid(segment)?;
            let if_match = if_match(&head.headers);
            let body = read_body(body, state.settings.max_body, client_eof).await?;
            let patch = Patch::parse(&body, &guid, state.store.now())?;
            let record = state.store.update_async(&guid, patch, if_match).await?;
            Ok(record_response(StatusCode::OK, &record))
        }
        (Route::Item(segment), Method::DELETE) => {
            let guid = parse_guid(segment)?;
            let if_match = if_match(&head.headers);
            state.store.delete_async(&guid, if_match).await?;
            let mut response = Response::new(Body::default());
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        (Route::Item(_), method) => Err(ApiError::MethodNotAllowed { method, allow: ALLOW_ITEM }),
        (Route::Healthz, Method::GET | Method::HEAD) => {
            store_io::check(&state.store).await?;
            Ok(json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#)))
        }
        (Route::Metrics, Method::GET | Method::HEAD) => {
            let behind = store_io::revisions_behind(&state.store).await;
            // Consumers wait on the fan-out (which alone waits on the store's feed).
            let gauges = StoreGauges { subscribers: state.fanout.waiting(), ..StoreGauges::of(&state.store, behind) };
            let text = state.metrics.render(&state.store.counters(), &gauges);
            let mut response = Response::new(Body::new(text.into()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            Ok(response)
        }
        (Route::Events, Method::GET | Method::HEAD) => {
            let mut query = events::parse_query(head.uri.query())?;
            if let Some(last) = events::last_event_id(&head.headers)? {
                query.after = last;
            }
            if events::wants_stream(&head.headers) && head.method == Method::GET {
                events::open_stream(state, query.after, query.limit, abort).await
            } else {
                events::long_poll(state, query).await
            }
        }
        (Route::Healthz | Route::Metrics | Route::Events, method) => {
            Err(ApiError::MethodNotAllowed { method, allow: ALLOW_OPERATIONS })
        }
        (Route::Unknown, _) => Err(ApiError::UnknownPath(head.uri.path().to_owned())),
    }
}

/// The answer to every request while the server waits for its database at startup
/// (`--db-wait`): `503 unavailable`, with `Retry-After: 1`. It reads nothing of the request.
pub fn answer_while_opening<B>(request: &Request<B>, peer: SocketAddr) -> Response<Body> {
    log::debug!("{} {} from {peer}: 503: the database is not open yet", request.method(), request.uri().path());
    let error =
        ApiError::Unhealthy(guidstore::Error::from(guidstore::StorageError::transient("the database is not open yet")));
    let mut response = error.into_response();
    response.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    if request.method() == Method::HEAD {
        strip_body(&mut response);
    }
    response
}

/// RFC 9112 §3.2 for HTTP/1.x: an HTTP/1.1 request carries exactly one `Host`, an HTTP/1.0 one
/// at most, and its value is a host with an optional port. An absolute-form target (§3.2.2) must
/// name the authority `Host` names, over `http` or `https`: this server is no proxy, so a target
/// naming another host is refused rather than served as if it named this one. HTTP/2 carries
/// the authority in `:authority`; nothing is checked there.
fn check_host(version: Version, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    if version >= Version::HTTP_2 {
        return Ok(());
    }
    let (host, more) = hosts(headers);
    if more {
        return Err(ApiError::BadRequest("more than one Host header"));
    }
    let host = match host {
        Some(host) => host.as_bytes(),
        None if version == Version::HTTP_11 => {
            return Err(ApiError::BadRequest("an HTTP/1.1 request needs a Host header"));
        }
        None => b"",
    };
    if !host.is_empty() && !is_plain_host(host) && (host.contains(&b'@') || Authority::try_from(host).is_err()) {
        return Err(ApiError::BadRequest("the Host header is not a host with an optional port"));
    }
    if let Some(authority) = uri.authority() {
        let known_scheme = matches!(uri.scheme_str(), Some("http" | "https"));
        if !known_scheme || !authority.as_str().as_bytes().eq_ignore_ascii_case(host) {
            return Err(ApiError::BadRequest("the request target names another host than the Host header"));
        }
    }
    Ok(())
}

/// The first `Host` value of `headers`, and whether there is another. A client usually sends
/// `Host` first, and hyper keeps the headers in their order (a header's values together): then
/// the first two entries tell, without a lookup by name (which hashes it).
fn hosts(headers: &HeaderMap) -> (Option<&HeaderValue>, bool) {
    let mut entries = headers.iter();
    if let Some((name, value)) = entries.next()
        && name == HOST
    {
        return (Some(value), entries.next().is_some_and(|(name, _)| name == HOST));
    }
    let mut values = headers.get_all(HOST).iter();
    let first = values.next();
    (first, values.next().is_some())
}

/// Whether `host` is a name or IPv4 address with an optional port: letters, digits, `.` and `-`,
/// then `:` and digits. Such a value is a valid `Host` without the full authority parse (which
/// copies the value); anything else takes that parse.
fn is_plain_host(host: &[u8]) -> bool {
    let colon = host.iter().position(|&byte| byte == b':').unwrap_or(host.len());
    let (name, port) = host.split_at(colon);
    let port = port.get(1..).unwrap_or_default();
    // Every byte looked at, without an early exit: one table lookup a byte for the name.
    !name.is_empty()
        && name.iter().fold(true, |plain, &byte| plain & NAME_BYTES[usize::from(byte)])
        && port.iter().fold(true, |digits, byte| digits & byte.is_ascii_digit())
}

/// Which bytes a plain host's name may have ([`is_plain_host`]): letters, digits, `.` and `-`.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
        byte += 1;
    }
    table
};

/// The staleness a request accepts: the `max-stale` directive of its `Cache-Control` header
/// lines (RFC 9111 §5.2.1.2). `max-stale` alone accepts any staleness; an invalid value is ignored
/// (the read is then linearizable, as without the directive).
fn max_stale(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|directive| {
            let directive = directive.trim();
            let (name, value) =
                directive.split_once('=').map_or((directive, None), |(n, v)| (n.trim(), Some(v.trim())));
            if !name.eq_ignore_ascii_case("max-stale") {
                return None;
            }
            match value {
                None => Some(Duration::MAX),
                Some(seconds) => {
                    let seconds = seconds.trim_matches('"');
                    if seconds.is_empty() || !seconds.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    Some(seconds.parse().map_or(Duration::MAX, Duration::from_secs))
                }
            }
        })
}

/// A GUID from the raw path segment: percent-encoding is not decoded, so `%41…` is invalid.
fn parse_guid(segment: &str) -> Result<Guid, ApiError> {
    Ok(Guid::parse_bytes(segment.as_bytes()).map_err(guidstore::Error::from)?)
}

/// The `If-Match` precondition, all header lines joined (RFC 9110 §5.3).
fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    let mut values = headers.get_all(IF_MATCH).iter().peekable();
    values.peek()?;
    let joined = values.map(|value| String::from_utf8_lossy(value.as_bytes())).collect::<Vec<_>>().join(", ");
    Some(IfMatch::parse(&joined))
}

/// Reads the whole body, refusing it with 413 as soon as it is known to exceed `limit`: from
/// `Content-Length` before reading anything, or while a chunked body streams in.
async fn read_body(mut body: Incoming, limit: usize, client_eof: Option<&EofHold>) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit };
    // An HTTP/1 client's EOF is held back while this request runs (wire.rs); a body it cuts
    // short is then known from `closed`, not from hyper.
    let declared = body.size_hint().lower();
    if declared > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(too_large());
    }
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            () = closed(client_eof) => return Err(ApiError::BodyCutShort),
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame.map_err(ApiError::BodyRead)?.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(previous) => {
                joined.reserve(usize::try_from(declared).unwrap_or(0).max(total));
                joined.extend_from_slice(&previous);
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.into()))
}

/// Completes when the client has sent its EOF; never without an [`EofHold`] (HTTP/2).
async fn closed(client_eof: Option<&EofHold>) {
    match client_eof {
        Some(hold) => hold.closed().await,
        None => std::future::pending().await,
    }
}

async fn create(store: &Store, new_record: NewRecord) -> Result<Response<Body>, ApiError> {
    let record = store.create_async(new_record).await?;
    let mut response = record_response(StatusCode::CREATED, &record);
    let location = format!("/guid/{}", record.guid());
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::ACCEPT;

    #[test]
    fn paths_route_to_templates_with_raw_guid_segments() {
        let guid = "9094E4C980C74043A4B586B420E69DDF";
        let cases = [
            ("/guid", Route::Collection),
            ("/guid/", Route::Collection),
            ("/guid/9094E4C980C74043A4B586B420E69DDF", Route::Item(guid)),
            ("/guid/9094E4C980C74043A4B586B420E69DDF/", Route::Item(guid)),
            ("/guid/%41", Route::Item("%41")),
            ("/guid//", Route::Item("")),
            ("/guid/a/b", Route::Unknown),
            ("/guids", Route::Unknown),
            ("/", Route::Unknown),
            ("", Route::Unknown),
            ("/healthz", Route::Healthz),
            ("/metrics/", Route::Metrics),
            ("/GUID", Route::Unknown),
            ("/guid/é", Route::Item("é")),
        ];
        for (path, expected) in cases {
            assert_eq!(Route::of(path), expected, "{path:?}");
        }
    }

    fn request(version: Version, target: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::get(target).version(version);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn host_follows_rfc_9112() {
        let cases: [(Version, &str, &[&str], bool); 16] = [
            (Version::HTTP_11, "/guid", &["x"], true),
            (Version::HTTP_11, "/guid", &["127.0.0.1:8080"], true),
            (Version::HTTP_11, "/guid", &["[::1]:80"], true),
            (Version::HTTP_11, "/guid", &[""], true),
            (Version::HTTP_11, "/guid", &[], false),
            (Version::HTTP_11, "/guid", &["a", "a"], false),
            (Version::HTTP_11, "/guid", &["user@x"], false),
            (Version::HTTP_11, "/guid", &["x/y"], false),
            (Version::HTTP_10, "/guid", &[], true),
            (Version::HTTP_10, "/guid", &["a", "b"], false),
            (Version::HTTP_11, "http://x:1/guid", &["X:1"], true),
            (Version::HTTP_11, "http://evil.example/guid", &["x:1"], false),
            (Version::HTTP_11, "http://x:1/guid", &[], false),
            (Version::HTTP_10, "http://x/guid", &[], false),
            (Version::HTTP_11, "ftp://x/guid", &["x"], false),
            (Version::HTTP_2, "http://x/guid", &[], true),
        ];
        for (version, target, hosts, ok) in cases {
            let request = request(version, target, hosts);
            let checked = check_host(request.version(), request.headers(), request.uri());
            assert_eq!(checked.is_ok(), ok, "{version:?} {target} {hosts:?}");
        }
    }

    #[test]
    fn plain_hosts_are_exactly_those_the_authority_parse_accepts_simply() {
        for host in ["x", "127.0.0.1", "127.0.0.1:8080", "a-b.example:1", "x:", "LOCALHOST:65535"] {
            assert!(is_plain_host(host.as_bytes()), "{host}");
            assert!(Authority::try_from(host).is_ok(), "{host}");
        }
        for host in ["", ":80", "[::1]:80", "user@x", "x/y", "x:8a", "x:1:2", "é"] {
            assert!(!is_plain_host(host.as_bytes()), "{host}");
        }
    }

    #[test]
    fn the_host_values_are_found_wherever_they_are() {
        let value = |text| HeaderValue::from_static(text);
        let mut headers = HeaderMap::new();
        assert_eq!(hosts(&headers), (None, false));
        headers.append(ACCEPT, value("*/*"));
        assert_eq!(hosts(&headers), (None, false));
        headers.append(HOST, value("a"));
        assert_eq!(hosts(&headers), (Some(&value("a")), false));
        headers.append(HOST, value("b"));
        assert_eq!(hosts(&headers), (Some(&value("a")), true));
        let mut headers = HeaderMap::new();
        headers.append(HOST, value("a"));
        assert_eq!(hosts(&headers), (Some(&value("a")), false));
        headers.append(ACCEPT, value("*/*"));
        assert_eq!(hosts(&headers), (Some(&value("a")), false));
        headers.append(HOST, value("b"));
        assert_eq!(hosts(&headers), (Some(&value("a")), true));
    }

    #[test]
    fn plain_hosts_are_exactly_names_with_an_optional_port() {
        // The rule as first written: the name before the first `:`, digits after it.
        let reference = |host: &[u8]| {
            let (name, port) = match host.iter().position(|&b| b == b':') {
                Some(colon) => (&host[..colon], &host[colon + 1..]),
                None => (host, &b""[..]),
            };
            !name.is_empty()
                && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                && port.iter().all(u8::is_ascii_digit)
        };
        let alphabet = [b'a', b'Z', b'7', b'.', b'-', b':', b'@', b'[', b'/', 0xC3];
        let mut hosts: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = hosts
                .iter()
                .filter(|host| host.len() == hosts.last().map_or(0, Vec::len))
                .flat_map(|host| alphabet.iter().map(move |&byte| [host.as_slice(), &[byte]].concat()))
                .collect();
            hosts.extend(longer);
        }
        assert_eq!(hosts.len(), 1 + 10 + 100 + 1_000 + 10_000);
        for host in &hosts {
            assert_eq!(is_plain_host(host), reference(host), "{:?}", String::from_utf8_lossy(host));
        }
        for byte in 0..=u8::MAX {
            assert_eq!(is_plain_host(&[byte]), reference(&[byte]), "{byte:#04x}");
            assert_eq!(is_plain_host(&[b'x', b':', byte]), reference(&[b'x', b':', byte]), "{byte:#04x}");
        }
    }

    #[test]
    fn access_lines_read_method_path_status_latency_peer() {
        let line = |elapsed, peer: &str| {
            let line = AccessLine {
                method: &Method::GET,
                path: "/guid/x",
                status: StatusCode::NOT_FOUND,
                elapsed,
                peer: &Peer::new(peer.parse().unwrap()),
            };
            line.to_string()
        };
        assert_eq!(line(Duration::from_micros(52), "127.0.0.1:50312"), "GET /guid/x 404 0.052ms 127.0.0.1:50312");
        assert_eq!(line(Duration::from_micros(1_234_567), "10.0.0.255:1"), "GET /guid/x 404 1234.567ms 10.0.0.255:1");
        assert_eq!(line(Duration::ZERO, "0.0.0.0:0"), "GET /guid/x 404 0.000ms 0.0.0.0:0");
        assert_eq!(line(Duration::from_millis(7), "[::1]:8080"), "GET /guid/x 404 7.000ms [::1]:8080");
        let slowest = line(Duration::MAX, "255.255.255.255:65535");
        assert!(slowest.ends_with("ms 255.255.255.255:65535"), "{slowest}");
    }

    #[test]
    fn max_stale_is_read_from_any_cache_control_line() {
        let parse = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(CACHE_CONTROL, HeaderValue::from_str(line).unwrap());
            }
            max_stale(&headers)
        };
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["max-stale=5"]), Some(Duration::from_secs(5)));
        assert_eq!(parse(&["no-cache", "Max-Stale = \"30\""]), Some(Duration::from_secs(30)));
        assert_eq!(parse(&["max-age=0, max-stale"]), Some(Duration::MAX));
        assert_eq!(parse(&["max-stale=99999999999999999999999"]), Some(Duration::MAX));
        for invalid in ["max-stale=", "max-stale=-1", "max-stale=1.5", "max-stale=x", "max-staleness=4"] {
            assert_eq!(parse(&[invalid]), None, "{invalid}");
        }
    }

    #[test]
    fn if_match_joins_every_header_line() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers), None);
        headers.append(IF_MATCH, HeaderValue::from_static("\"a\""));
        headers.append(IF_MATCH, HeaderValue::from_static("\"b\""));
        assert_eq!(if_match(&headers), Some(IfMatch::Tags(vec!["\"a\"".into(), "\"b\"".into()])));
        let mut headers = HeaderMap::new();
        headers.insert(IF_MATCH, HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert!(matches!(if_match(&headers), Some(IfMatch::Tags(_))));
    }
}
