//! Test harness: [`spawn_app`] starts the real server (`guidstore_server::run`) on `127.0.0.1:0`
//! with its own temporary database and a [`ManualClock`], and [`TestApp`] talks HTTP to it.
//!
//! With `GUIDSTORE_TEST_TLS=1` every app serves HTTPS with a certificate made for it (see
//! [`TestTls`]), and every client of the harness ([`TestApp::request`], [`TestApp::connect`], ...)
//! speaks TLS: the whole suite runs once more over HTTPS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use guidstore::{ManualClock, Options, Store};
use guidstore_server::{AppState, Auth, Settings, Tls, TlsFiles, run};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pki::{Issued, TestCa, client_config};

/// The time every test app starts at.
pub const NOW: u64 = 1_700_000_000;
/// A valid GUID.
pub const GUID: &str = "9094E4C980C74043A4B586B420E69DDF";
/// The bearer token of apps spawned with authentication.
pub const TOKEN: &str = "test-token-7f3a";

/// Whether the suite runs over HTTPS (`GUIDSTORE_TEST_TLS=1`).
pub fn tls_mode() -> bool {
    std::env::var_os("GUIDSTORE_TEST_TLS").is_some_and(|value| value == "1")
}

/// How a test app is set up.
pub struct AppOptions {
    pub settings: Settings,
    pub tokens: Option<Vec<&'static str>>,
    pub cache_capacity: usize,
    /// HTTPS with certificates made for the app; `Some` by default under `GUIDSTORE_TEST_TLS=1`.
    pub tls: Option<TlsOptions>,
}

/// The TLS of a test app.
#[derive(Default)]
pub struct TlsOptions {
    /// The server requires a client certificate from the app's CA (the harness's clients have one).
    pub client_ca: bool,
}

impl Default for AppOptions {
    fn default() -> AppOptions {
        AppOptions {
            settings: Settings { purge_interval: Duration::from_secs(3600), ..Settings::default() },
            tokens: None,
            cache_capacity: 1000,
            tls: tls_mode().then(TlsOptions::default),
        }
    }
}

/// The certificates of an app serving HTTPS: a CA made for it, the server's certificate and key
/// files, and a client certificate (used by the harness's clients).
pub struct TestTls {
    pub ca: TestCa,
    pub files: TlsFiles,
    pub server: Issued,
    pub client: Issued,
}

impl TestTls {
    /// A rustls client for this app offering `alpn`, with the harness's client certificate.
    pub fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(client_config(&self.ca, alpn, Some(&self.client)))
    }
}

/// Any stream a test talks through: TCP, or TLS over TCP.
pub trait TestIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TestIo for T {}

/// A running server and a client for it.
pub struct TestApp {
    pub address: SocketAddr,
    pub clock: ManualClock,
    pub state: Arc<AppState>,
    /// The certificates, when the app serves HTTPS.
    pub tls: Option<TestTls>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// A complete response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts a JSON error response with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {:?}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
        assert_eq!(body.as_object().unwrap().len(), 2, "body: {body}");
    }
}

/// A server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A server set up by `options`.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let store = Store::open_with(
        dir.path().join("guids.db"),
        Options::default().clock(clock.clone()).cache_capacity(options.cache_capacity),
    )
    .unwrap();
    let auth = options.tokens.map(|tokens| Auth::from_tokens(tokens).unwrap());
    let mut settings = options.settings;
    let tls = options.tls.map(|tls_options| {
        let ca = TestCa::new("guidstore test CA");
        let server = ca.server("guidstore test server");
        let (cert, key) = server.write(dir.path(), "server");
        let client_ca = tls_options.client_ca.then(|| ca.write(&dir.path().join("client-ca.pem")));
        let files = TlsFiles { cert, key, client_ca };
        settings.tls = Some(Tls::load(files.clone()).unwrap());
        TestTls { client: ca.client("guidstore test client"), ca, files, server }
    });
    let state = AppState::new(Arc::new(store), settings, auth);
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, Arc::clone(&state), async {
        let _ = stop.await;
    }));
    // HTTP/1.1 only, as a plain `build_http` client: ALPN offers just http/1.1.
    let client_tls = match &tls {
        Some(tls) => client_config(&tls.ca, &[], Some(&tls.client)),
        None => client_config(&TestCa::new("unused"), &[], None),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(client_tls))
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    TestApp { address, clock, state, tls, client, shutdown: Some(shutdown), server: Some(server), _dir: dir }
}

impl TestApp {
    /// `http://ADDRESS/PATH`, or `https://` when the app serves HTTPS.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.address)
    }

    /// A new connection for HTTP/1.1 (over TLS when the app serves HTTPS, with ALPN http/1.1).
    pub async fn connect(&self) -> Box<dyn TestIo> {
        self.connect_offering(&[b"http/1.1"]).await
    }

    /// A new connection for HTTP/2 (over TLS when the app serves HTTPS, with ALPN h2).
    pub async fn connect_h2(&self) -> Box<dyn TestIo> {
        self.connect_offering(&[b"h2"]).await
    }

    async fn connect_offering(&self, alpn: &[&[u8]]) -> Box<dyn TestIo> {
        let stream = TcpStream::connect(self.address).await.unwrap();
        match &self.tls {
            None => Box::new(stream),
            Some(tls) => {
                let name = ServerName::IpAddress(self.address.ip().into());
                Box::new(tls.connector(alpn).connect(name, stream).await.unwrap())
            }
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> TestResponse {
        self.request_bytes(method, path, headers, Bytes::copy_from_slice(body.as_bytes())).await
    }

    /// Sends a request with a raw body.
    pub async fn request_bytes(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Bytes) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body)).unwrap();
        let response = self.client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        TestResponse { status: parts.status.as_u16(), headers: parts.headers, body }
    }

    pub async fn get_guid(&self, guid: &str) -> TestResponse {
        self.request("GET", &format!("/guid/{guid}"), &[], "").await
    }

    pub async fn post_guid(&self, body: &str) -> TestResponse {
        self.request("POST", "/guid", &[], body).await
    }

    pub async fn post_guid_at(&self, guid: &str, body: &str) -> TestResponse {
        self.request("POST", &format!("/guid/{guid}"), &[], body).await
    }

    pub async fn patch_guid(&self, guid: &str, body: &str) -> TestResponse {
        self.request("PATCH", &format!("/guid/{guid}"), &[], body).await
    }

    pub async fn delete_guid(&self, guid: &str) -> TestResponse {
        self.request("DELETE", &format!("/guid/{guid}"), &[], "").await
    }

    /// Creates a record at `guid` and returns the 201 response.
    pub async fn create_at(&self, guid: &str, body: &str) -> TestResponse {
        let response = self.post_guid_at(guid, body).await;
        assert_eq!(response.status, 201, "{:?}", response.body);
        response
    }

    /// Writes `bytes` on a new connection, half-closes it, and reads until the server closes.
    pub async fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = self.connect().await;
        stream.write_all(bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        read_to_close(&mut stream).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.request("GET", "/metrics", &[("authorization", &format!("Bearer {TOKEN}"))], "").await;
        assert_eq!(response.status, 200);
        String::from_utf8(response.body.to_vec()).unwrap()
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) {
        self.begin_stop();
        self.stopped().await;
    }

    /// Signals shutdown without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits (at most 15 s) for `run` to return.
    pub async fn stopped(&mut self) {
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(15), server).await.expect("server did not stop").unwrap();
        }
    }
}

/// Reads until the peer closes (or resets) the connection; at most 10 s.
pub async fn read_to_close(stream: &mut (impl AsyncRead + Unpin + ?Sized)) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection; got {:?}", String::from_utf8_lossy(&received));
    String::from_utf8_lossy(&received).into_owned()
}

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) from `stream`.
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin + ?Sized)) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                return String::from_utf8_lossy(&received).into_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("timed out reading a response")
            .unwrap();
        assert!(n > 0, "connection closed mid-response: {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
    }
}
