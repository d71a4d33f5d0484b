//! The connection level: keep-alive, HTTP/2, body limits, hostile clients, the connection cap,
//! and graceful shutdown with a request in flight.

use std::time::Duration;

use guidstore_testkit::client::{Protocol, read_response, read_to_close};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{AppOptions, GUID, spawn_app, spawn_app_with};

#[tokio::test]
async fn one_keep_alive_connection_serves_many_requests() {
    let app = spawn_app().await;
    let stream = app.connect().await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut statuses = Vec::new();
    for (method, path) in [("POST", format!("/guid/{GUID}")), ("GET", format!("/guid/{GUID}")), ("GET", "/nope".into())]
    {
        let request =
            Request::builder().method(method).uri(path).header("host", "x").body(Full::new(Bytes::new())).unwrap();
        let response = sender.send_request(request).await.unwrap();
        statuses.push(response.status().as_u16());
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(statuses, [201, 200, 404]);
}

#[tokio::test]
async fn http2_is_served_by_prior_knowledge_or_alpn() {
    let app = spawn_app().await;
    let stream = app.connect_h2().await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let uri = app.url(&format!("/guid/{GUID}"));
    let request = Request::post(&uri).body(Full::new(Bytes::from_static(b"{\"user\":\"h2\"}"))).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let request = Request::head(&uri).body(Full::new(Bytes::new())).unwrap();
    let head = sender.send_request(request).await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("etag"));
    let request = Request::get(&uri).body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(format!("{{\"guid\":\"{GUID}\"").as_bytes()));
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_accepted() {
    let app = spawn_app().await;
    let prefix = r#"{"user": "Jay", "pad": ""#;
    let body = format!("{prefix}{}\"}}", "a".repeat(65_536 - prefix.len() - 2));
    assert_eq!(body.len(), 65_536);
    assert_eq!(app.post_guid(&body).await.status, 201);
    let body = format!("{prefix}{}\"}}", "a".repeat(65_537 - prefix.len() - 2));
    app.post_guid(&body).await.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn a_70_kib_body_is_refused_from_content_length_before_it_is_sent() {
    let app = spawn_app().await;
    let mut stream = app.connect().await;
    let head = format!("POST /guid/{GUID} HTTP/1.1\r\nHost: x\r\nContent-Length: 71680\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // No body byte is sent: the answer must come from the header alone.
    let response = read_response(&mut stream).await.unwrap();
    response.assert_error(413, "payload_too_large");
    assert!(response.closes_connection(), "{response:?}");
    assert_eq!(app.get_guid(GUID).await.status, 404);
}

#[tokio::test]
async fn a_huge_content_length_is_refused_at_once() {
    let app = spawn_app().await;
    let mut stream = app.connect().await;
    stream
        .write_all(
            b"PATCH /guid/9094E4C980C74043A4B586B420E69DDF HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 413, "{response:?}");
}

#[tokio::test]
async fn a_chunked_body_is_refused_once_it_streams_past_the_limit() {
    let app = spawn_app().await;
    let mut stream = app.connect().await;
    let head = "POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("1000\r\n{}\r\n", "a".repeat(0x1000));
    // 17 chunks of 4 KiB pass 64 KiB; the terminating chunk is never sent.
    for _ in 0..17 {
        stream.write_all(chunk.as_bytes()).await.unwrap();
    }
    let response = read_response(&mut stream).await.unwrap();
    response.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn a_chunked_body_under_the_limit_is_accepted() {
    let app = spawn_app().await;
    let mut stream = app.connect().await;
    let request = "POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\n{\"use\r\n9\r\nr\": \"ch\"}\r\n0\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 201, "{response:?}");
    assert!(response.text().ends_with("\"user\":\"ch\"}"), "{response:?}");
}

#[tokio::test]
async fn garbage_on_a_socket_does_not_disturb_the_next_client() {
    let app = spawn_app().await;
    let answers = [
        app.raw(b"GARBAGE\r\n\r\n").await,
        app.raw(&[0xff, 0x00, 0x13, 0x37, b'\r', b'\n', b'\r', b'\n']).await,
        app.raw(b"GET /guid/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n").await,
        app.raw(b"POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"a\"").await,
        app.raw(b"POST /guid HTTP/1.1\r\nContent-Length: nope\r\n\r\n").await,
        app.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00").await,
        app.raw(b"").await,
    ];
    for answer in &answers {
        assert!(!answer.starts_with("HTTP/1.1 5"), "{answer}");
    }
    assert_eq!(app.post_guid_at(GUID, "").await.status, 201);
}

#[tokio::test]
async fn a_slow_client_is_cut_off_after_the_header_timeout_while_others_are_served() {
    let app = spawn_app_with(AppOptions::with(|config| config.header_timeout = Duration::from_millis(300))).await;
    let mut silent = app.connect().await;
    let mut slow = app.connect().await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // `Connection: close`: the test client must not keep this connection in its pool, since the
    // server closes idle keep-alive connections after the (short) header timeout too.
    assert_eq!(app.request("GET", "/healthz", &[("connection", "close")], "").await.status, 200);
    let started = std::time::Instant::now();
    let (silent_answer, slow_answer) = tokio::join!(read_to_close(&mut silent), read_to_close(&mut slow));
    let (silent_answer, slow_answer) = (silent_answer.unwrap(), slow_answer.unwrap());
    assert!(silent_answer.is_empty(), "{silent_answer}");
    assert!(!slow_answer.starts_with("HTTP/1.1 200"), "{slow_answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.request("GET", "/healthz", &[], "").await.status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout_but_an_event_stream_is_not() {
    let app = spawn_app_with(AppOptions::with(|config| config.header_timeout = Duration::from_millis(300))).await;
    // A keep-alive connection answered once, then idle: closed after the timeout, counted from
    // the end of its request.
    let mut idle = app.connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap().status, 200);
    let answered = std::time::Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut idle)).await;
    let closed_after = answered.elapsed();
    assert_eq!(rest.expect("the idle connection was kept open").unwrap(), "");
    assert!(closed_after >= Duration::from_millis(250), "closed after {closed_after:?}");
    // An event stream outlives the timeout: its answer is still being written.
    let mut stream = app.connect().await;
    stream.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    app.create_at(GUID, "{}").await;
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while !text.contains("event: create") {
        let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut stream, &mut buffer))
            .await
            .expect("no event within 5 s")
            .unwrap();
        assert!(n > 0, "the event stream was closed: {text:?}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

#[tokio::test]
async fn the_connection_cap_holds_new_clients_until_a_slot_frees() {
    let app = spawn_app_with(AppOptions::with(|config| config.max_connections = 1)).await;
    let mut first = app.connect().await;
    first.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut first).await.unwrap().status, 200);
    // The first connection is idle but open: a second client waits in the backlog (over TLS, its
    // handshake waits too, so the whole exchange runs in a task).
    let client = app.client().clone();
    let second = tokio::spawn(async move {
        let mut second = client.connect(Protocol::Http1).await.unwrap();
        second.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        read_to_close(&mut second).await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "second connection served while the first held the only slot");
    drop(first);
    let answer = second.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_then_run_returns() {
    let mut app = spawn_app().await;
    let mut stream = app.connect().await;
    let body = br#"{"user": "in flight"}"#;
    let head = format!(
        "POST /guid/{GUID} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // "100 Continue" proves the handler is running and waiting for the body.
    let mut interim = [0u8; 25];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    app.begin_stop();
    // The listener is closed once the accept loop has stopped.
    tokio::time::timeout(Duration::from_secs(5), async {
        while TcpStream::connect(app.address).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener was not closed");
    stream.write_all(body).await.unwrap();
    let response = read_to_close(&mut stream).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201 "), "{response}");
    app.stopped().await;
    assert!(TcpStream::connect(app.address).await.is_err());
    let record = app.state.store.get(&guidstore::Guid::parse(GUID).unwrap()).unwrap();
    assert_eq!(record.metadata()["user"], "in flight");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(AppOptions::with(|config| config.header_timeout = Duration::from_millis(300))).await;
    // One connection that never sends a request (preface and SETTINGS only; the client answers
    // pings), one that goes idle after a request.
    let mut ended = Vec::new();
    for send_request in [false, true] {
        let stream = app.connect_h2().await;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        let connection = tokio::spawn(connection);
        if send_request {
            let uri = app.url("/healthz");
            let response = sender.send_request(Request::get(uri).body(Full::new(Bytes::new())).unwrap()).await.unwrap();
            assert_eq!(response.status(), 200);
        }
        ended.push((sender, connection));
    }
    for (_sender, connection) in ended {
        let result = tokio::time::timeout(Duration::from_secs(5), connection).await;
        assert!(result.is_ok(), "the idle HTTP/2 connection was not closed");
    }
    assert_eq!(app.request("GET", "/healthz", &[], "").await.status, 200);
}

#[tokio::test]
async fn an_http2_request_in_progress_is_not_cut_by_the_idle_timeout() {
    let app = spawn_app_with(AppOptions::with(|config| config.header_timeout = Duration::from_millis(200))).await;
    let stream = app.connect_h2().await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    // A streamed body whose second half arrives after more than the timeout.
    let (mut body_sender, body) = channel_body();
    let uri = app.url(&format!("/guid/{GUID}"));
    let request = Request::post(uri).body(body).unwrap();
    let response = tokio::spawn(async move { sender.send_request(request).await });
    body_sender.send(b"{\"user\":").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    body_sender.send(b"\"slow\"}").await;
    drop(body_sender);
    let response = tokio::time::timeout(Duration::from_secs(5), response).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status(), 201);
}

/// A request body fed from the test through a channel.
fn channel_body() -> (BodySender, ChannelBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    (BodySender(sender), ChannelBody(receiver))
}

struct BodySender(tokio::sync::mpsc::Sender<Bytes>);

impl BodySender {
    async fn send(&mut self, data: &'static [u8]) {
        self.0.send(Bytes::from_static(data)).await.unwrap();
    }
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|data| data.map(|data| Ok(hyper::body::Frame::data(data))))
    }
}
