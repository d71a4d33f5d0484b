//! Test harness: [`spawn_app`] builds the real server with [`Application`] (as `main.rs` does) on
//! `127.0.0.1:0`, with its own temporary database and a [`ManualClock`], and [`TestApp`] talks
//! HTTP to it with the testkit's client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use guidstore::ManualClock;
use guidstore_server::config::Config;
use guidstore_server::{AppState, Application, Auth, Stopped};
use guidstore_testkit::client::Client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use guidstore_testkit::http::Response as TestResponse;

/// The time every test app starts at.
pub const NOW: u64 = 1_700_000_000;
/// A valid GUID.
pub const GUID: &str = "9094E4C980C74043A4B586B420E69DDF";
/// The bearer token of apps spawned with authentication.
pub const TOKEN: &str = "test-token-7f3a";

/// How a test app is set up: the server's configuration (its `db` is replaced by a temporary
/// file) and, optionally, the accepted bearer tokens.
pub struct AppOptions {
    pub config: Config,
    pub tokens: Option<Vec<&'static str>>,
}

impl Default for AppOptions {
    fn default() -> AppOptions {
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cache_capacity: 1000,
            purge_interval: Duration::from_secs(3600),
            ..Config::default()
        };
        AppOptions { config, tokens: None }
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

/// A running server and a client for it.
pub struct TestApp {
    pub address: SocketAddr,
    pub clock: ManualClock,
    pub state: Arc<AppState>,
    client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Stopped>>,
    _dir: tempfile::TempDir,
}

/// A server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A server set up by `options`.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let config = Config { db: dir.path().join("guids.db").to_string_lossy().into_owned(), ..options.config };
    let store_clock = clock.clone();
    let mut builder = Application::builder(config).store_options(move |options| options.clock(store_clock));
    if let Some(tokens) = options.tokens {
        builder = builder.auth(Auth::from_tokens(tokens).unwrap());
    }
    let app = builder.build().await.unwrap();
    let address = app.address();
    let state = Arc::clone(app.state());
    let client = Client::new(app.url());
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop.await;
    }));
    TestApp { address, clock, state, client, shutdown: Some(shutdown), server: Some(server), _dir: dir }
}

impl TestApp {
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

    /// Writes `bytes` on a new connection, half-closes it, and reads until the server closes.
    pub async fn raw(&self, bytes: &[u8]) -> String {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(self.address).await.unwrap();
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
