//! [`Metrics`]: request counters and latency histograms kept in atomics (no lock on the request
//! path), rendered with the store's counters in the Prometheus text exposition format (v0.0.4).
//!
//! Labels are bounded: routes are the route templates (`/guid/{guid}`, not the GUID), methods the
//! known ones or `other`, statuses the ones the server sends or `other`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use guidstore::Stats;
use hyper::{Method, StatusCode};

use crate::response::StreamPosition;

/// The route template a request matched, the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// `/guid`
    Collection,
    /// `/guid/{guid}`
    Item,
    /// `/healthz`
    Healthz,
    /// `/metrics`
    Metrics,
    /// `/events`
    Events,
    /// Anything else (answered 404).
    Unknown,
}

const ROUTES: [RouteLabel; 6] = [
    RouteLabel::Collection,
    RouteLabel::Item,
    RouteLabel::Healthz,
    RouteLabel::Metrics,
    RouteLabel::Events,
    RouteLabel::Unknown,
];

impl RouteLabel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteLabel::Collection => "/guid",
            RouteLabel::Item => "/guid/{guid}",
            RouteLabel::Healthz => "/healthz",
            RouteLabel::Metrics => "/metrics",
            RouteLabel::Events => "/events",
            RouteLabel::Unknown => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "other"];

fn method_index(method: &Method) -> usize {
    // In the order of `METHODS`; a match, not a search: this runs for every request.
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::PUT => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

const STATUSES: [&str; 15] =
    ["200", "201", "204", "400", "401", "404", "405", "409", "410", "412", "413", "500", "503", "408", "other"];

fn status_index(status: StatusCode) -> usize {
    // In the order of `STATUSES`.
    match status.as_u16() {
        200 => 0,
        201 => 1,
        204 => 2,
        400 => 3,
        401 => 4,
        404 => 5,
        405 => 6,
        409 => 7,
        410 => 8,
        412 => 9,
        413 => 10,
        500 => 11,
        503 => 12,
        408 => 13,
        _ => 14,
    }
}

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket, plus one for `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS.len());
        if let Some(slot) = self.buckets.get(bucket) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The server's own counters.
#[derive(Debug)]
pub struct Metrics {
    /// Indexed by `(route, method, status)`.
    requests: Vec<AtomicU64>,
    /// One histogram per route.
    durations: Vec<Histogram>,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    /// Server-sent event streams open now, and events written to them.
    streams_open: AtomicI64,
    streamed_events: AtomicU64,
    /// Streams ended by an `overflow` event, and connections dropped because their stream's
    /// client took nothing for the stall timeout.
    streams_overflowed: AtomicU64,
    streams_stalled: AtomicU64,
    /// The position each open stream's client has read up to, by stream number.
    positions: std::sync::Mutex<Vec<(u64, StreamPosition)>>,
    next_stream: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: (0..ROUTES.len() * METHODS.len() * STATUSES.len()).map(|_| AtomicU64::new(0)).collect(),
            durations: ROUTES.iter().map(|_| Histogram::default()).collect(),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            streams_open: AtomicI64::new(0),
            streamed_events: AtomicU64::new(0),
            streams_overflowed: AtomicU64::new(0),
            streams_stalled: AtomicU64::new(0),
            positions: std::sync::Mutex::new(Vec::new()),
            next_stream: AtomicU64::new(0),
        }
    }
}

fn request_index(route: usize, method: usize, status: usize) -> usize {
    (route * METHODS.len() + method) * STATUSES.len() + status
}

impl Metrics {
    /// Counts one answered request and its latency.
    pub fn record(&self, route: RouteLabel, method: &Method, status: StatusCode, elapsed: Duration) {
        let index = request_index(route.index(), method_index(method), status_index(status));
        if let Some(counter) = self.requests.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(histogram) = self.durations.get(route.index()) {
            histogram.observe(elapsed);
        }
    }

    /// Counts a connection being opened; it counts as closed when the guard is dropped (also
    /// when its task is aborted).
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        OpenConnection { metrics: self }
    }

    /// An event stream opened; counted in `guidstore_feed_streams_open`, and its client's
    /// `position` in `guidstore_feed_subscriber_lag_revisions`, until the guard drops.
    pub fn stream_opened(&self, position: StreamPosition) -> OpenStream<'_> {
        self.streams_open.fetch_add(1, Ordering::Relaxed);
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.lock_positions().push((id, position));
        OpenStream { metrics: self, id }
    }

    fn lock_positions(&self) -> std::sync::MutexGuard<'_, Vec<(u64, StreamPosition)>> {
        self.positions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An event stream ended with an `overflow` event.
    pub fn stream_overflowed(&self) {
        self.streams_overflowed.fetch_add(1, Ordering::Relaxed);
    }

    /// An event stream's connection was dropped: its client took nothing for the stall timeout.
    pub fn stream_stalled(&self) {
        self.streams_stalled.fetch_add(1, Ordering::Relaxed);
    }

    /// How far the slowest open stream's client is behind `newest` (0 without streams).
    fn subscriber_lag(&self, newest: u64) -> u64 {
        self.lock_positions().iter().map(|(_, position)| newest.saturating_sub(position.get())).max().unwrap_or(0)
    }

    /// `count` events were written to an event stream or a long-poll answer.
    pub fn events_delivered(&self, count: u64) {
        self.streamed_events.fetch_add(count, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of these metrics and of the store's `stats`.
    pub fn render(&self, stats: &Stats, gauges: &StoreGauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP guidstore_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE guidstore_http_requests_total counter\n");
        for (route_index, route) in ROUTES.iter().enumerate() {
            for (method_index, method) in METHODS.iter().enumerate() {
                for (status_index, status) in STATUSES.iter().enumerate() {
                    let count = self
                        .requests
                        .get(request_index(route_index, method_index, status_index))
                        .map_or(0, |c| c.load(Ordering::Relaxed));
                    if count > 0 {
                        let _ = writeln!(
                            out,
                            "guidstore_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                            route.as_str()
                        );
                    }
                }
            }
        }
        out.push_str(
            "# HELP guidstore_http_request_duration_seconds Time from receiving a request's headers to its response.\n",
        );
        out.push_str("# TYPE guidstore_http_request_duration_seconds histogram\n");
        for (route, histogram) in ROUTES.iter().zip(&self.durations) {
            let count = histogram.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let route = route.as_str();
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&histogram.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "guidstore_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "guidstore_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "guidstore_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "guidstore_http_request_duration_seconds_count{{route=\"{route}\"}} {count}");
        }
        let open = self.connections_open.load(Ordering::Relaxed);
        let total = self.connections_total.load(Ordering::Relaxed);
        gauge(&mut out, "guidstore_http_connections_open", "Client connections open now.", open);
        counter(&mut out, "guidstore_http_connections_total", "Client connections accepted.", total);
        counter(&mut out, "guidstore_cache_hits_total", "Reads answered from the record cache.", stats.cache_hits);
        counter(&mut out, "guidstore_cache_misses_total", "Reads that went to the database.", stats.cache_misses);
        gauge(&mut out, "guidstore_cache_records", "Records in the cache now.", stats.cached);
        counter(
            &mut out,
            "guidstore_storage_reads_total",
            "Reads of a record from the database (misses of every cache level).",
            stats.storage_reads,
        );
        if let Some(shared) = &gauges.shared_cache {
            render_shared_cache(&mut out, shared);
        }
        counter(&mut out, "guidstore_records_purged_total", "Expired records removed by purges.", stats.purged);
        counter(&mut out, "guidstore_store_commits_total", "Write transactions committed.", stats.commits);
        counter(&mut out, "guidstore_store_writes_total", "Writes committed.", stats.writes);
        counter(&mut out, "guidstore_store_errors_total", "Storage operations that failed.", stats.storage_errors);
        gauge(
            &mut out,
            "guidstore_revision_applied",
            "The revision up to which this server's cache reflects the change log.",
            stats.applied_revision,
        );
        counter(
            &mut out,
            "guidstore_freshness_rounds_total",
            "Queries of the change log: freshness rounds (each reads the newest revision, shared by the reads waiting) and the tailer's reads of the log.",
            stats.sync_rounds,
        );
        if let Some(lag) = gauges.tail_lag {
            gauge(
                &mut out,
                "guidstore_tail_lag_seconds",
                "How far behind the database the cache may be: time since the last freshness round began.",
                lag.as_secs_f64(),
            );
        }
        if let Some(behind) = gauges.revisions_behind {
            gauge(
                &mut out,
                "guidstore_tail_lag_revisions",
                "Committed revisions the cache has not applied yet (a query at scrape time).",
                behind,
            );
        }
        gauge(&mut out, "guidstore_feed_subscribers", "Change-feed consumers waiting now.", gauges.subscribers);
        gauge(
            &mut out,
            "guidstore_feed_streams_open",
            "Server-sent event streams of /events open now.",
            self.streams_open.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "guidstore_feed_events_delivered_total",
            "Events sent to consumers (streams and long-poll answers).",
            self.streamed_events.load(Ordering::Relaxed),
        );
        counter(&mut out, "guidstore_feed_events_total", "Changes published to the change feed.", gauges.events);
        gauge(
            &mut out,
            "guidstore_feed_subscriber_lag_revisions",
            "Revisions the slowest open event stream's client has not read yet (published minus read).",
            self.subscriber_lag(gauges.newest),
        );
        counter(
            &mut out,
            "guidstore_feed_streams_overflowed_total",
            "Event streams ended with an overflow event (their client fell 1 MiB behind).",
            self.streams_overflowed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "guidstore_feed_streams_stalled_total",
            "Event-stream connections dropped because their client read nothing for --events-stall-timeout.",
            self.streams_stalled.load(Ordering::Relaxed),
        );
        out
    }
}

/// The shared cache's counters and breaker state (`--cache`).
fn render_shared_cache(out: &mut String, shared: &guidstore::SharedCacheStats) {
    let figures = [
        ("hits", "Reads the shared cache answered (a record, or its proven absence).", shared.hits),
        ("misses", "Reads the shared cache had no usable entry for (they read the database).", shared.misses),
        ("unproven", "Shared cache entries found but not proven current (not used).", shared.unproven),
        ("skipped", "Reads that skipped the shared cache while its breaker was open.", shared.skipped),
        ("errors", "Calls to the shared cache that failed.", shared.errors),
        ("timeouts", "Calls to the shared cache that did not answer within --cache-timeout.", shared.timeouts),
    ];
    for (name, help, value) in figures {
        counter(out, &format!("guidstore_shared_cache_{name}_total"), help, value);
    }
    gauge(
        out,
        "guidstore_shared_cache_up",
        "1 while the shared cache is in use, 0 while its breaker is open.",
        u64::from(shared.up),
    );
}

/// Store figures that are not counters of [`Stats`]: the coherence lag and the change feed.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreGauges {
    /// Time since the last freshness round began (shared databases).
    pub tail_lag: Option<Duration>,
    /// Revisions committed but not applied (shared databases, when the database answered).
    pub revisions_behind: Option<u64>,
    /// Change-feed consumers waiting.
    pub subscribers: usize,
    /// Changes published to the feed.
    pub events: u64,
    /// The newest revision published to the feed.
    pub newest: u64,
    /// The shared cache's counters (with `--cache`).
    pub shared_cache: Option<guidstore::SharedCacheStats>,
}

impl StoreGauges {
    /// The gauges of `store`; `revisions_behind` is measured by the caller (it needs a query).
    pub fn of(store: &guidstore::Store, revisions_behind: Option<u64>) -> StoreGauges {
        let (subscribers, events) = store.feed_counts();
        let tail_lag = if store.is_shared() { store.staleness() } else { None };
        StoreGauges {
            tail_lag,
            revisions_behind,
            subscribers,
            events,
            newest: store.feed_revision(),
            shared_cache: store.shared_cache_stats(),
        }
    }
}

/// An open event stream, counted in `guidstore_feed_streams_open` until dropped.
#[derive(Debug)]
pub struct OpenStream<'a> {
    metrics: &'a Metrics,
    id: u64,
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.metrics.lock_positions().retain(|(id, _)| *id != self.id);
        self.metrics.streams_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open connection, counted in `guidstore_http_connections_open` until dropped.
#[derive(Debug)]
pub struct OpenConnection<'a> {
    metrics: &'a Metrics,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_and_status_indices_follow_the_label_lists() {
        for (index, name) in METHODS.iter().enumerate().take(METHODS.len() - 1) {
            assert_eq!(method_index(&Method::from_bytes(name.as_bytes()).unwrap()), index, "{name}");
        }
        assert_eq!(method_index(&Method::CONNECT), METHODS.len() - 1);
        for (index, code) in STATUSES.iter().enumerate().take(STATUSES.len() - 1) {
            assert_eq!(status_index(StatusCode::from_bytes(code.as_bytes()).unwrap()), index, "{code}");
        }
        assert_eq!(status_index(StatusCode::IM_A_TEAPOT), STATUSES.len() - 1);
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let metrics = Metrics::default();
        metrics.record(RouteLabel::Item, &Method::GET, StatusCode::OK, Duration::from_micros(50));
        metrics.record(RouteLabel::Item, &Method::GET, StatusCode::OK, Duration::from_millis(2));
        metrics.record(
            RouteLabel::Collection,
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::IM_A_TEAPOT,
            Duration::ZERO,
        );
        let text = metrics.render(&Stats { cache_hits: 7, purged: 3, ..Stats::default() }, &StoreGauges::default());
        assert!(
            text.contains("guidstore_http_requests_total{route=\"/guid/{guid}\",method=\"GET\",status=\"200\"} 2\n")
        );
        assert!(text.contains("guidstore_http_requests_total{route=\"/guid\",method=\"other\",status=\"other\"} 1\n"));
        assert!(
            text.contains("guidstore_http_request_duration_seconds_bucket{route=\"/guid/{guid}\",le=\"0.0001\"} 1\n")
        );
        assert!(
            text.contains("guidstore_http_request_duration_seconds_bucket{route=\"/guid/{guid}\",le=\"0.0025\"} 2\n")
        );
        assert!(
            text.contains("guidstore_http_request_duration_seconds_bucket{route=\"/guid/{guid}\",le=\"+Inf\"} 2\n")
        );
        assert!(text.contains("guidstore_http_request_duration_seconds_count{route=\"/guid/{guid}\"} 2\n"));
        assert!(text.contains("guidstore_cache_hits_total 7\n"));
        assert!(text.contains("guidstore_records_purged_total 3\n"));
        assert!(!text.contains("route=\"/healthz\""));
        assert!(!text.contains("guidstore_shared_cache"), "no shared-cache lines without --cache");
        let shared = guidstore::SharedCacheStats { hits: 5, timeouts: 2, up: true, ..Default::default() };
        let gauges = StoreGauges { shared_cache: Some(shared), ..StoreGauges::default() };
        let text = metrics.render(&Stats { storage_reads: 4, ..Stats::default() }, &gauges);
        for line in [
            "guidstore_storage_reads_total 4\n",
            "guidstore_shared_cache_hits_total 5\n",
            "guidstore_shared_cache_misses_total 0\n",
            "guidstore_shared_cache_timeouts_total 2\n",
            "guidstore_shared_cache_up 1\n",
        ] {
            assert!(text.contains(line), "{line:?} missing");
        }
    }

    #[test]
    fn open_connections_are_counted_until_their_guard_drops() {
        let metrics = Metrics::default();
        let first = metrics.connection_opened();
        let second = metrics.connection_opened();
        drop(first);
        let text = metrics.render(&Stats::default(), &StoreGauges::default());
        assert!(text.contains("guidstore_http_connections_open 1\n"), "{text}");
        assert!(text.contains("guidstore_http_connections_total 2\n"), "{text}");
        drop(second);
        assert!(
            metrics.render(&Stats::default(), &StoreGauges::default()).contains("guidstore_http_connections_open 0\n")
        );
    }

    #[test]
    fn every_sample_line_is_a_name_then_a_number() {
        let metrics = Metrics::default();
        metrics.record(RouteLabel::Metrics, &Method::GET, StatusCode::OK, Duration::from_secs(9));
        for line in metrics.render(&Stats::default(), &StoreGauges::default()).lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("guidstore_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
