//! Test harness: [`spawn_app`] builds the real server with [`Application`] (as `main.rs` does) on
//! `127.0.0.1:0`, with its own temporary database and a [`ManualClock`], and [`TestApp`] talks
//! HTTP to it with the testkit's client.
//!
//! With `GUIDSTORE_TEST_TLS=1` every app serves HTTPS with certificates made for it (see
//! [`TestTls`]: the files go into the app's `Config`, as `--tls-cert`/`--tls-key` would), and every
//! client of the harness ([`TestApp::request`], [`TestApp::connect`], ...) speaks TLS: the whole
//! suite runs once more over HTTPS.
//!
//! With `GUIDSTORE_TEST_BACKEND=postgres` (or `mysql`) every app keeps its records in a fresh
//! database of that server (created and dropped per app) instead of a temporary SQLite file: the
//! whole suite runs once more on each shared backend.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use guidstore::ManualClock;
use guidstore_server::config::{Config, DEFAULT_TLS_RELOAD_INTERVAL, Settings};
use guidstore_server::{AppState, Application, Auth, Stopped, TlsFiles};
use guidstore_testkit::client::{Client, Protocol, Stream};
use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::pki::{Issued, TestCa, client_config};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use guidstore_testkit::http::Response as TestResponse;

/// The time every test app starts at.
pub const NOW: u64 = 1_700_000_000;
/// A valid GUID.
pub const GUID: &str = "9094E4C980C74043A4B586B420E69DDF";
/// The bearer token of apps spawned with authentication.
pub const TOKEN: &str = "test-token-7f3a";

/// The backend every app uses: `GUIDSTORE_TEST_BACKEND` = `sqlite` (default), `postgres` or `mysql`.
pub fn backend() -> Kind {
    match std::env::var("GUIDSTORE_TEST_BACKEND").as_deref() {
        Ok("postgres") => Kind::Postgres,
        Ok("mysql" | "mariadb") => Kind::Mysql,
        Ok("sqlite") | Err(_) => Kind::Sqlite,
        Ok(other) => panic!("GUIDSTORE_TEST_BACKEND={other:?}: use sqlite, postgres or mysql"),
    }
}

/// Whether the suite runs over HTTPS (`GUIDSTORE_TEST_TLS=1`).
pub fn tls_mode() -> bool {
    std::env::var_os("GUIDSTORE_TEST_TLS").is_some_and(|value| value == "1")
}

/// How a test app is set up: the server's configuration (its `db` is replaced by a temporary
/// file, its TLS files by those made for the app), optionally the accepted bearer tokens, and TLS.
pub struct AppOptions {
    pub config: Config,
    pub tokens: Option<Vec<&'static str>>,
    /// HTTPS with certificates made for the app; `Some` by default under `GUIDSTORE_TEST_TLS=1`.
    pub tls: Option<TlsOptions>,
}

/// The TLS of a test app.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The server requires a client certificate from the app's CA (the harness's clients have one).
    pub client_ca: bool,
    /// How often the server checks its TLS files for changes.
    pub reload_interval: Duration,
}

impl Default for TlsOptions {
    fn default() -> TlsOptions {
        TlsOptions { client_ca: false, reload_interval: DEFAULT_TLS_RELOAD_INTERVAL }
    }
}

impl Default for AppOptions {
    fn default() -> AppOptions {
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cache_capacity: 1000,
            purge_interval: Duration::from_secs(3600),
            ..Config::default()
        };
        AppOptions { config, tokens: None, tls: tls_mode().then(TlsOptions::default) }
    }
}

impl AppOptions {
    /// The default options with `change` applied to the configuration.
    pub fn with(change: impl FnOnce(&mut Config)) -> AppOptions {
        let mut options = AppOptions::default();
        change(&mut options.config);
        options
    }
}

/// The certificates of an app serving HTTPS: a CA made for it, the server's certificate and key
/// files (and the client CA file, with [`TlsOptions::client_ca`]), and a client certificate, which
/// the harness's clients present.
pub struct TestTls {
    pub ca: TestCa,
    pub files: TlsFiles,
    pub server: Issued,
    pub client: Issued,
}

impl TestTls {
    /// A CA, a server certificate for `127.0.0.1` and a client certificate, written in `dir`.
    pub fn new(dir: &Path, options: &TlsOptions) -> TestTls {
        let ca = TestCa::new("guidstore test CA");
        let server = ca.server("guidstore test server");
        let (cert, key) = server.write(dir, "server");
        let client_ca = options.client_ca.then(|| ca.write(&dir.join("client-ca.pem")));
        TestTls { client: ca.client("guidstore test client"), ca, files: TlsFiles { cert, key, client_ca }, server }
    }

    /// `config` serving HTTPS with these files (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
    pub fn configure(&self, config: Config) -> Config {
        Config {
            tls_cert: Some(self.files.cert.clone()),
            tls_key: Some(self.files.key.clone()),
            tls_client_ca: self.files.client_ca.clone(),
            ..config
        }
    }

    /// A rustls client trusting the app's CA, offering `alpn`, presenting the client certificate.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca, alpn, Some(&self.client))
    }
}

/// The testkit's client for the server at `url`, speaking TLS with `tls`'s client certificate
/// when given.
pub fn client_for(url: &str, tls: Option<&TestTls>) -> Client {
    match tls {
        None => Client::new(url),
        Some(tls) => Client::with_tls(url, tls.client_config(&[])),
    }
}

/// A running server and a client for it.
pub struct TestApp {
    pub address: SocketAddr,
    pub clock: ManualClock,
    pub state: Arc<AppState>,
    /// The certificates, when the app serves HTTPS.
    pub tls: Option<TestTls>,
    client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Stopped>>,
    _dir: tempfile::TempDir,
    /// The app's database when it is not a file in `_dir` (dropped after the server stops).
    _db: Option<TestDb>,
}

/// A server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A server set up by `options`.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let shared_db = match backend() {
        Kind::Sqlite => None,
        kind => Some(
            TestDb::new(kind)
                .unwrap_or_else(|| panic!("GUIDSTORE_TEST_BACKEND asks for {kind:?}, which is not reachable")),
        ),
    };
    let db = shared_db
        .as_ref()
        .map_or_else(|| dir.path().join("guids.db").to_string_lossy().into_owned(), |db| db.url().to_owned());
    let mut config = Config { db, ..options.config };
    let tls = options.tls.as_ref().map(|tls_options| TestTls::new(dir.path(), tls_options));
    if let Some(tls) = &tls {
        config = tls.configure(config);
    }
    let store_clock = clock.clone();
    let mut builder = Application::builder(config).store_options(move |options| options.clock(store_clock));
    if let Some(tls_options) = options.tls {
        let interval = tls_options.reload_interval;
        builder = builder.settings(move |settings| Settings { tls_reload_interval: interval, ..settings });
    }
    if let Some(tokens) = options.tokens {
        builder = builder.auth(Auth::from_tokens(tokens).unwrap());
    }
    let app = builder.build().await.unwrap();
    let address = app.address();
    let state = Arc::clone(app.state());
    let client = client_for(app.url(), tls.as_ref());
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop.await;
    }));
    TestApp {
        address,
        clock,
        state,
        tls,
        client,
        shutdown: Some(shutdown),
        server: Some(server),
        _dir: dir,
        _db: shared_db,
    }
}

impl TestApp {
    /// `http://ADDRESS/PATH`, or `https://` when the app serves HTTPS.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.client.base())
    }

    /// The harness's client for this app (cheap to clone, e.g. into a task).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A new connection for HTTP/1.1 (over TLS when the app serves HTTPS, with ALPN http/1.1).
    pub async fn connect(&self) -> Box<dyn Stream> {
        self.client.connect(Protocol::Http1).await.unwrap()
    }

    /// A new connection for HTTP/2 (over TLS when the app serves HTTPS, with ALPN h2).
    pub async fn connect_h2(&self) -> Box<dyn Stream> {
        self.client.connect(Protocol::Http2).await.unwrap()
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> TestResponse {
        self.request_bytes(method, path, headers, body.as_bytes().to_vec()).await
    }

    /// Sends a request with a raw body.
    pub async fn request_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TestResponse {
        self.client.request(method, path, headers, body).await.unwrap()
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
        assert_eq!(response.status, 201, "{:?}", response.text());
        response
    }

    /// Writes `bytes` on a new connection (over TLS when the app serves HTTPS), half-closes it, and
    /// reads until the server closes.
    pub async fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = self.connect().await;
        stream.write_all(bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        guidstore_testkit::client::read_to_close(&mut stream).await.unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.request("GET", "/metrics", &[("authorization", &format!("Bearer {TOKEN}"))], "").await;
        assert_eq!(response.status, 200);
        response.text()
    }

    /// Signals shutdown and waits for the server to stop.
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

    /// Waits (at most 15 s) for the server to stop serving. The store stays open while the test
    /// holds `state`.
    pub async fn stopped(&mut self) {
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(15), server).await.expect("server did not stop").unwrap();
        }
    }
}
