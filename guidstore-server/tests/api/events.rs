//! `GET /events`: the change feed as a long poll and as Server-Sent Events — order, waking,
//! resuming, expiry events, trimming (410), bad parameters, authentication.

use std::time::{Duration, Instant};

use guidstore_testkit::client::Stream;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{AppOptions, GUID, NOW, TOKEN, TestApp, spawn_app, spawn_app_with};

/// The events of a long-poll answer as `(rev, op, guid)`, and its `next`.
fn events_of(body: &Value) -> (Vec<(u64, String, String)>, u64) {
    let events = body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {body}"))
        .iter()
        .map(|e| {
            (e["rev"].as_u64().unwrap(), e["op"].as_str().unwrap().to_owned(), e["guid"].as_str().unwrap().to_owned())
        })
        .collect();
    (events, body["next"].as_u64().unwrap())
}

#[tokio::test]
async fn a_long_poll_answers_at_once_with_every_change_in_order() {
    let app = spawn_app().await;
    let created = app.create_at(GUID, r#"{"user":"a"}"#).await;
    app.patch_guid(GUID, r#"{"team":"ops"}"#).await;
    app.patch_guid(GUID, "{}").await; // no change, no event
    assert_eq!(app.post_guid_at(GUID, "{}").await.status, 409); // refused, no event
    app.delete_guid(GUID).await;
    let response = app.request("GET", "/events?after=0&wait=0", &[], "").await;
    assert_eq!(response.status, 200);
    let body = response.json();
    let (events, next) = events_of(&body);
    let ops: Vec<_> = events.iter().map(|(rev, op, _)| (*rev, op.as_str())).collect();
    assert_eq!(ops, [(1, "create"), (2, "update"), (3, "delete")]);
    assert_eq!(next, 3);
    assert_eq!(body["events"][0]["record"], created.json());
    assert_eq!(body["events"][0]["at"], NOW.to_string());
    assert!(body["events"][2].get("record").is_none());
    let page = app.request("GET", "/events?after=1&limit=1", &[], "").await.json();
    assert_eq!(events_of(&page), (vec![(2, "update".to_owned(), GUID.to_owned())], 2));
}

#[tokio::test]
async fn a_long_poll_wakes_when_a_change_arrives_and_gives_up_after_wait() {
    let app = spawn_app().await;
    let started = Instant::now();
    let empty = app.request("GET", "/events?after=0&wait=1", &[], "").await.json();
    assert!(started.elapsed() >= Duration::from_secs(1), "answered before wait passed");
    assert_eq!(events_of(&empty), (vec![], 0));
    let poll = app.request("GET", "/events?after=0&wait=30", &[], "");
    let write = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.create_at(GUID, "{}").await
    };
    let started = Instant::now();
    let (polled, _) = tokio::join!(poll, write);
    assert!(started.elapsed() < Duration::from_secs(10), "the poll was not woken by the write");
    assert_eq!(events_of(&polled.json()).0.len(), 1);
}

#[tokio::test]
async fn expiry_shows_as_expire_events_from_the_purge_and_before_a_re_create() {
    let app = spawn_app().await;
    app.create_at(GUID, &format!(r#"{{"expire":{}}}"#, NOW + 10)).await;
    app.create_at("00000000000000000000000000000002", &format!(r#"{{"expire":{}}}"#, NOW + 10)).await;
    app.clock.advance(10);
    app.create_at(GUID, "{}").await;
    guidstore_server::purge_expired(&app.state.store, 100).await.unwrap();
    let body = app.request("GET", "/events?after=2&wait=0", &[], "").await.json();
    let ops: Vec<_> = events_of(&body).0.into_iter().map(|(_, op, guid)| (op, guid)).collect();
    assert_eq!(
        ops,
        [
            ("expire".to_owned(), GUID.to_owned()),
            ("create".to_owned(), GUID.to_owned()),
            ("expire".to_owned(), "00000000000000000000000000000002".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_position_older_than_the_retention_window_is_410_events_truncated() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.post_guid(&format!(r#"{{"n":{n}}}"#)).await;
    }
    app.state.store.trim_changes(None, Some(2)).unwrap();
    app.request("GET", "/events?after=0", &[], "").await.assert_error(410, "events_truncated");
    app.request("GET", "/events?after=2", &[("Accept", "text/event-stream")], "")
        .await
        .assert_error(410, "events_truncated");
    let kept = app.request("GET", "/events?after=3&wait=0", &[], "").await.json();
    assert_eq!(events_of(&kept).0.iter().map(|e| e.0).collect::<Vec<_>>(), [4, 5]);
}

#[tokio::test]
async fn bad_parameters_are_400_invalid_query() {
    let app = spawn_app().await;
    for query in ["after=-1", "after=x", "wait=61", "wait=1.5", "limit=0", "limit=10001"] {
        app.request("GET", &format!("/events?{query}"), &[], "").await.assert_error(400, "invalid_query");
    }
    app.request("GET", "/events", &[("Last-Event-ID", "x")], "").await.assert_error(400, "invalid_query");
    let response = app.request("POST", "/events", &[], "").await;
    response.assert_error(405, "method_not_allowed");
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn events_need_the_token_when_authentication_is_on() {
    let app = spawn_app_with(AppOptions { tokens: Some(vec![TOKEN]), ..AppOptions::default() }).await;
    app.request("GET", "/events?wait=0", &[], "").await.assert_error(401, "unauthorized");
    let authorized = app.request("GET", "/events?wait=0", &[("authorization", &format!("Bearer {TOKEN}"))], "").await;
    assert_eq!(authorized.status, 200);
}

/// An event stream: the raw connection (TLS under `GUIDSTORE_TEST_TLS=1`), the text read so far,
/// and the events parsed from it.
struct EventStream {
    stream: Box<dyn Stream>,
    text: String,
    parsed: Vec<(u64, String, Value)>,
    /// How much of `text` has been parsed (up to the end of a whole event).
    parsed_to: usize,
}

impl EventStream {
    async fn open(app: &TestApp, headers: &str) -> EventStream {
        let mut stream = app.connect().await;
        let request = format!("GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        EventStream { stream, text: String::new(), parsed: Vec::new(), parsed_to: 0 }
    }

    /// Reads until `count` events have arrived in all (at most 60 s); their `(id, event, data)`.
    async fn events(&mut self, count: usize) -> Vec<(u64, String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // Each event ends with a blank line: parse the whole events not parsed yet.
            if let Some(end) = self.text[self.parsed_to..].rfind("\n\n") {
                let end = self.parsed_to + end + 2;
                self.parsed.extend(parse_events(&self.text[self.parsed_to..end]));
                self.parsed_to = end;
            }
            if self.parsed.len() >= count {
                return self.parsed.clone();
            }
            let mut buffer = vec![0u8; 65536];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer)).await;
            let n = read.unwrap_or_else(|_| panic!("only {} events within 60 s", self.parsed.len())).unwrap();
            assert!(
                n > 0,
                "the stream ended after {} events: {:?}",
                self.parsed.len(),
                &self.text[self.text.len().saturating_sub(300)..]
            );
            self.text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    }
}

/// The events in a stream's text (chunk-size lines between them are skipped).
fn parse_events(text: &str) -> Vec<(u64, String, Value)> {
    let mut events = Vec::new();
    let mut current: (Option<u64>, Option<String>) = (None, None);
    // Whole lines only: the last one may still be arriving.
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    for line in complete.split('\n').map(|line| line.trim_end_matches('\r')) {
        if let Some(id) = line.strip_prefix("id: ") {
            current.0 = id.parse().ok();
        } else if let Some(event) = line.strip_prefix("event: ") {
            current.1 = Some(event.to_owned());
        } else if let Some(data) = line.strip_prefix("data: ")
            && let (Some(id), Some(event)) = current.clone()
        {
            events.push((id, event, serde_json::from_str(data).unwrap()));
            current = (None, None);
        }
    }
    events
}

#[tokio::test]
async fn an_event_stream_delivers_changes_as_they_commit_and_resumes_from_last_event_id() {
    let app = spawn_app().await;
    app.create_at(GUID, "{}").await;
    let mut stream = EventStream::open(&app, "").await;
    assert_eq!(stream.events(1).await[0].0, 1);
    assert!(stream.text.contains("content-type: text/event-stream"), "{}", stream.text);
    for n in 0..5 {
        app.patch_guid(GUID, &format!(r#"{{"n":{n}}}"#)).await;
    }
    let events = stream.events(6).await;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    assert_eq!(events[5].1, "update");
    assert_eq!(events[5].2["record"]["n"], 4);
    drop(stream);
    let mut resumed = EventStream::open(&app, "Last-Event-ID: 4\r\n").await;
    let ids: Vec<u64> = resumed.events(2).await.iter().map(|e| e.0).collect();
    assert_eq!(ids, [5, 6]);
    assert!(app.metrics().await.contains("guidstore_feed_streams_open 1\n"));
}

#[tokio::test]
async fn streams_end_and_long_polls_answer_when_the_server_shuts_down() {
    let mut app = spawn_app().await;
    let mut stream = EventStream::open(&app, "").await;
    let client = app.client().clone();
    let poll = tokio::spawn(async move { client.request("GET", "/events?after=0&wait=60", &[], Vec::new()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    app.begin_stop();
    let polled = poll.await.unwrap().unwrap();
    assert_eq!(events_of(&polled.json()), (vec![], 0));
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.stream.read_to_end(&mut rest)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited for the feed's consumers");
    app.stopped().await;
}

/// A record of about 60 KB: its events fill a stream's 1 MiB queue in about 18 writes.
fn large_body(n: usize) -> String {
    format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(60_000))
}

impl EventStream {
    /// Reads until the text contains `needle` followed by a blank line (at most 10 s).
    async fn read_until(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.text.find(needle).is_some_and(|at| self.text[at..].contains("\n\n")) {
            let mut buffer = vec![0u8; 65536];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer)).await;
            let n = read.unwrap_or_else(|_| panic!("no {needle:?} within 10 s")).unwrap();
            assert!(n > 0, "the stream ended before {needle:?}");
            self.text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    }
}

fn metric(metrics: &str, name: &str) -> u64 {
    let line =
        metrics.lines().find(|line| line.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
    line[name.len() + 1..].parse().unwrap_or_else(|_| panic!("{line}"))
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_slows_no_writer_or_subscriber_and_catches_up_later() {
    const WRITES: usize = 300; // about 18 MB of events: far more than a stream's queue and the sockets hold
    let app = spawn_app().await;
    let mut slow = EventStream::open(&app, "").await; // reads nothing until the writes are done
    let mut reader = EventStream::open(&app, "").await;
    // The other subscriber reads all along, and gets everything.
    let reading = tokio::spawn(async move { reader.events(WRITES).await.len() });
    for n in 0..WRITES {
        // Every write is acknowledged while the slow subscriber reads nothing.
        assert_eq!(app.post_guid(&large_body(n)).await.status, 201);
    }
    assert_eq!(reading.await.unwrap(), WRITES);
    let metrics = app.metrics().await;
    assert!(metric(&metrics, "guidstore_feed_subscriber_lag_revisions") > 100, "{metrics}");
    // Its stream waited for it (at most 1 MiB queued): it gets every event, in order.
    let received = slow.events(WRITES).await;
    assert_eq!(received.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=WRITES as u64).collect::<Vec<_>>());
    // So does a consumer that resumes far behind.
    let mut resumed = EventStream::open(&app, "Last-Event-ID: 10\r\n").await;
    let rest = resumed.events(WRITES - 10).await;
    assert_eq!(rest.iter().map(|e| e.0).collect::<Vec<_>>(), (11..=WRITES as u64).collect::<Vec<_>>());
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "guidstore_feed_streams_overflowed_total"), 0, "{metrics}");
}

#[tokio::test]
async fn a_subscriber_that_takes_nothing_for_the_stall_timeout_gets_overflow_then_is_dropped() {
    let mut options = AppOptions::default();
    options.config.events_stall_timeout = Duration::from_secs(1);
    let app = spawn_app_with(options).await;
    let mut gone = EventStream::open(&app, "").await; // never reads again
    let mut back = EventStream::open(&app, "").await; // reads once its stream has given up on it
    let mut reader = EventStream::open(&app, "").await;
    let reading = tokio::spawn(async move { reader.events(100).await.len() });
    // Enough to fill the sockets and the queues: then output waits in the server for the client.
    for n in 0..100 {
        assert_eq!(app.post_guid(&large_body(n)).await.status, 201);
    }
    assert_eq!(reading.await.unwrap(), 100, "a subscriber that reads is not dropped");
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&app.metrics().await, "guidstore_feed_streams_overflowed_total") < 2 {
        assert!(Instant::now() < deadline, "the stalled streams did not give up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The one that comes back gets what its connection held, then a last event: where to resume.
    back.read_until("event: overflow").await;
    let received = parse_events(&back.text);
    let last = received.last().map_or(0, |e| e.0);
    assert_eq!(received.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>());
    let at = back.text.find("event: overflow\ndata: ").unwrap() + "event: overflow\ndata: ".len();
    let data: Value = serde_json::from_str(back.text[at..].lines().next().unwrap()).unwrap();
    assert_eq!(data["error"], "slow_consumer");
    assert!(data["last_event_id"].as_u64().unwrap() >= last, "{data}");
    let mut resumed = EventStream::open(&app, &format!("Last-Event-ID: {last}\r\n")).await;
    let rest = resumed.events(100 - last as usize).await;
    assert_eq!(rest.iter().map(|e| e.0).collect::<Vec<_>>(), (last + 1..=100).collect::<Vec<_>>());
    // The one that never reads has its connection dropped: what the sockets held, then the end.
    while metric(&app.metrics().await, "guidstore_feed_streams_stalled_total") < 1 {
        assert!(Instant::now() < deadline, "the stalled connection was not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), gone.stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the stalled connection is still open");
    let text = gone.text.clone() + &String::from_utf8_lossy(&rest);
    assert!(!text.contains("event: overflow"), "it read nothing, so it cannot have got the last event");
}
