//! HTTP's own rules at the edges a hostile-client probe found: `Host` and the request target
//! (RFC 9112 §3.2), JSON bodies on the errors raised before routing, half-closed clients, and
//! HTTP/2's GOAWAY on an idle close.

use std::time::Duration;

use guidstore_testkit::client::read_response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{AppOptions, GUID, TestApp, spawn_app, spawn_app_with};

/// Sends `bytes` on a new connection (not half-closed) and reads one response.
async fn exchange(app: &TestApp, bytes: &[u8]) -> guidstore_testkit::http::Response {
    let mut stream = app.connect().await;
    stream.write_all(bytes).await.unwrap();
    read_response(&mut stream).await.unwrap()
}

#[tokio::test]
async fn http11_requests_without_host_or_with_two_are_400_bad_request() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    let cases = [
        format!("GET /guid/{GUID} HTTP/1.1\r\n\r\n"),
        format!("GET /guid/{GUID} HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        format!("GET /guid/{GUID} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        format!("GET /guid/{GUID} HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
        format!("GET /guid/{GUID} HTTP/1.1\r\nHost: user@a\r\n\r\n"),
        format!("DELETE /guid/{GUID} HTTP/1.1\r\n\r\n"),
    ];
    for request in &cases {
        exchange(&app, request.as_bytes()).await.assert_error(400, "bad_request");
    }
    assert_eq!(app.get_guid(GUID).await.status, 200, "the DELETE without Host changed nothing");
    // HTTP/1.0 may omit Host.
    let response = exchange(&app, format!("GET /guid/{GUID} HTTP/1.0\r\n\r\n").as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
}

#[tokio::test]
async fn an_absolute_form_target_naming_another_host_is_400_bad_request() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    let own = app.address.to_string();
    let cases = [
        format!("GET http://evil.example/guid/{GUID} HTTP/1.1\r\nHost: {own}\r\n\r\n"),
        format!("GET http://evil.example/guid/{GUID} HTTP/1.1\r\n\r\n"),
        format!("DELETE http://evil.example/guid/{GUID} HTTP/1.1\r\nHost: {own}\r\n\r\n"),
    ];
    for request in &cases {
        exchange(&app, request.as_bytes()).await.assert_error(400, "bad_request");
    }
    // The absolute form naming the Host's authority is served (RFC 9112 §3.2.2: servers accept it).
    let response =
        exchange(&app, format!("GET http://{own}/guid/{GUID} HTTP/1.1\r\nHost: {own}\r\n\r\n").as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
}

#[tokio::test]
async fn a_half_closed_client_gets_its_answer_and_its_write_happens() {
    let app = spawn_app().await;
    for _ in 0..10 {
        let health = app.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 "), "{health:?}");
    }
    let body = r#"{"user":"half-closed"}"#;
    let create = format!("POST /guid/{GUID} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let answer = app.raw(create.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 201 "), "{answer:?}");
    assert!(answer.ends_with(r#""user":"half-closed"}"#), "{answer:?}");
    assert_eq!(app.get_guid(GUID).await.json()["user"], "half-closed");
    let health = app.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 "), "{health:?}");
    let http10 = app.raw(b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(http10.starts_with("HTTP/1.0 200 "), "{http10:?}");
}

#[tokio::test]
async fn every_pipelined_request_before_a_half_close_is_answered() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    // /healthz waits for the store (a blocking task): hyper's EOF check runs while it does.
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = app.raw(format!("GET /guid/{GUID} HTTP/1.1\r\nHost: x\r\n\r\n{health}{health}").as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 200 ").count(), 3, "{answer:?}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer:?}");
    for _ in 0..20 {
        let answer = app.raw(format!("{health}{health}").as_bytes()).await;
        assert_eq!(answer.matches("HTTP/1.1 200 ").count(), 2, "{answer:?}");
    }
}

#[tokio::test]
async fn an_idle_http2_connection_gets_a_goaway_before_it_is_closed() {
    let app = spawn_app_with(AppOptions::with(|config| config.header_timeout = Duration::from_millis(300))).await;
    let mut stream = app.connect_h2().await;
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut received = Vec::new();
    let mut goaway = None;
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            received.extend_from_slice(&chunk[..n]);
            // Frames: 9-byte header (length, type, flags, stream), then the payload.
            while received.len() >= 9 {
                let length = usize::from(received[0]) << 16 | usize::from(received[1]) << 8 | usize::from(received[2]);
                if received.len() < 9 + length {
                    break;
                }
                let (kind, flags) = (received[3], received[4]);
                let payload = received[9..9 + length].to_vec();
                received.drain(..9 + length);
                let reply = match (kind, flags & 1) {
                    (4, 0) => Some(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00".to_vec()),
                    (6, 0) => Some([&b"\x00\x00\x08\x06\x01\x00\x00\x00\x00"[..], &payload].concat()),
                    (7, _) => {
                        // GOAWAY: last stream id (4 bytes), then the error code (4 bytes).
                        goaway = payload.get(4..8).map(|code| u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
                        None
                    }
                    _ => None,
                };
                if let Some(reply) = reply {
                    let _ = stream.write_all(&reply).await;
                }
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the idle HTTP/2 connection was not closed");
    assert_eq!(goaway, Some(0), "no GOAWAY (NO_ERROR) before the close");
}

#[tokio::test]
async fn requests_refused_before_routing_get_the_json_error_body() {
    let app = spawn_app().await;
    // hyper refuses a head still incomplete when its 64 KiB buffer is full. (These heads never
    // end, so the server has read every byte sent when it answers and closes: no reset.)
    let big_header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n", "b".repeat(70_000));
    let long_target = format!("GET /{}", "a".repeat(70_000));
    let cases: [(&[u8], u16, &str); 8] = [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /guid/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "bad_request"),
        (b"POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}", 400, "bad_request"),
        (b"POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (big_header.as_bytes(), 431, "header_too_large"),
        (long_target.as_bytes(), 431, "header_too_large"),
    ];
    for (request, status, code) in cases {
        let response = exchange(&app, request).await;
        response.assert_error(status, code);
        assert!(response.closes_connection(), "{response:?}");
    }
    // A head just under the limit is served.
    let fits = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(60_000));
    assert_eq!(exchange(&app, fits.as_bytes()).await.status, 200);
}

#[tokio::test]
async fn a_fragment_in_the_request_target_is_400_bad_request() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    for request in [
        format!("GET /guid/{GUID}#x HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("DELETE /guid/{GUID}#x HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET http://x/guid/{GUID}?a=b#x HTTP/1.1\r\nHost: x\r\n\r\n"),
    ] {
        exchange(&app, request.as_bytes()).await.assert_error(400, "bad_request");
    }
    assert_eq!(app.get_guid(GUID).await.status, 200, "the DELETE with a fragment changed nothing");
    // A `#` elsewhere (a header, the body) is ordinary.
    let body = r##"{"tag":"#1"}"##;
    let request =
        format!("PATCH /guid/{GUID} HTTP/1.1\r\nHost: x\r\nX-Note: #2\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let response = exchange(&app, request.as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
}
