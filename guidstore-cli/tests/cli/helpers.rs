//! Test helpers: run the real `guidstore-cli` binary in a temporary directory ([`TestDir`]), and a
//! real guidstore-server on `127.0.0.1:0` over a database file ([`TestServer`]).
//!
//! The server runs in this test process, built by `guidstore_server::Application` exactly as its
//! `main.rs` builds it (default `Config`, the URL recorded in the lock file). The binary itself
//! cannot be located reliably from another package's tests (no `CARGO_BIN_EXE_` across packages,
//! and a nested `cargo build` would block on the lock of the `cargo test` running us).

use std::ffi::OsStr;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use guidstore_server::config::Config;
use guidstore_server::{Application, Auth, TlsFiles};
use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::http::request_once;
use serde_json::Value;
use tokio::sync::oneshot;

pub const GUID: &str = "9094E4C980C74043A4B586B420E69DDF";
pub const OTHER_GUID: &str = "00000000000000000000000000000001";

/// What a run of the CLI produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The record printed on stdout, which must be exactly one line of JSON.
    pub fn record(&self) -> Value {
        assert_eq!(self.code, 0, "failed: {self:?}");
        assert!(self.stdout.ends_with('\n') && self.stdout.lines().count() == 1, "not one line: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts a failure with this exit code and `error: CODE: ...` on stderr, and nothing on stdout.
    pub fn assert_error(&self, code: i32, error_code: &str) {
        assert_eq!(self.code, code, "exit code: {self:?}");
        assert!(self.stderr.starts_with(&format!("error: {error_code}: ")), "stderr: {self:?}");
        assert_eq!(self.stdout, "", "stdout: {self:?}");
    }
}

/// A temporary directory to run the CLI in, with a database file path inside it.
pub struct TestDir {
    pub dir: tempfile::TempDir,
    /// An SQLite file path in the directory (for what only files have: locks, a missing file).
    pub db: PathBuf,
    /// What [`TestDir::db`] passes as `--db`: the file, or with `GUIDSTORE_TEST_BACKEND=postgres`
    /// (or `mysql`) a fresh database of that server, so the suite runs once more on each.
    pub url: String,
    _shared: Option<TestDb>,
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = dir.path().join("guids.db");
        let kind = match std::env::var("GUIDSTORE_TEST_BACKEND").as_deref() {
            Ok("postgres") => Some(Kind::Postgres),
            Ok("mysql" | "mariadb") => Some(Kind::Mysql),
            _ => None,
        };
        let shared = kind.map(|kind| {
            TestDb::new(kind)
                .unwrap_or_else(|| panic!("GUIDSTORE_TEST_BACKEND asks for {kind:?}, which is not reachable"))
        });
        let url = shared.as_ref().map_or_else(|| db.to_string_lossy().into_owned(), |shared| shared.url().to_owned());
        TestDir { dir, db, url, _shared: shared }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the CLI with `--db` on this directory's database (see [`TestDir::url`]).
    pub fn db<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let mut full: Vec<&OsStr> = vec![OsStr::new("--db"), OsStr::new(&self.url)];
        full.extend(args.iter().map(AsRef::as_ref));
        self.run(&full, &[], b"")
    }

    /// Runs the CLI with `--db` on this directory's SQLite file, whatever the backend under test
    /// (for what only files have: locks, a server holding the file, bad files).
    pub fn file<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let mut full: Vec<&OsStr> = vec![OsStr::new("--db"), self.db.as_os_str()];
        full.extend(args.iter().map(AsRef::as_ref));
        self.run(&full, &[], b"")
    }

    /// Runs the CLI with exactly these arguments, extra environment variables and stdin, in this
    /// directory and with no `GUIDSTORE_*` variable inherited.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S], env: &[(&str, &str)], stdin: &[u8]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_guidstore-cli"));
        command.args(args).current_dir(self.path()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for name in [
            "GUIDSTORE_DB",
            "GUIDSTORE_SERVER",
            "GUIDSTORE_TOKEN",
            "GUIDSTORE_CACERT",
            "GUIDSTORE_CLIENT_CERT",
            "GUIDSTORE_CLIENT_KEY",
            "GUIDSTORE_MAX_BODY",
        ] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("spawn guidstore-cli");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).expect("write stdin");
        drop(input);
        let output = child.wait_with_output().expect("wait for guidstore-cli");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A guidstore-server serving `db` on `127.0.0.1:0` until dropped.
pub struct TestServer {
    pub url: String,
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server over `db`; with `token`, it requires `Authorization: Bearer TOKEN`.
    pub fn start(db: &Path, token: Option<&str>) -> TestServer {
        TestServer::start_with(db, token, None)
    }

    /// Starts a server over `db` serving HTTPS with these files, as `--tls-cert`, `--tls-key` and
    /// `--tls-client-ca` would (its URL is `https://...`).
    pub fn start_https(db: &Path, tls: TlsFiles) -> TestServer {
        TestServer::start_with(db, None, Some(tls))
    }

    fn start_with(db: &Path, token: Option<&str>, tls: Option<TlsFiles>) -> TestServer {
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: db.to_string_lossy().into_owned(),
            ..Config::default()
        };
        if let Some(TlsFiles { cert, key, client_ca }) = tls {
            config = Config { tls_cert: Some(cert), tls_key: Some(key), tls_client_ca: client_ca, ..config };
        }
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let (shutdown, shutdown_receiver) = oneshot::channel::<()>();
        let token = token.map(str::to_owned);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let stopped = runtime.block_on(async {
                let mut builder = Application::builder(config);
                if let Some(auth) = token.as_deref().and_then(|token| Auth::from_tokens([token])) {
                    builder = builder.auth(auth);
                }
                let app = builder.build().await.expect("the server starts");
                ready_sender.send((app.url().to_owned(), app.address())).expect("report the URL");
                app.run_until_stopped(async {
                    let _ = shutdown_receiver.await;
                })
                .await
            });
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            stopped.close().expect("close the store");
        });
        let (url, address) = ready.recv().expect("the server starts");
        TestServer { url, address, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `GET path` with the testkit's blocking client (not through the CLI's): status and body.
    /// Plain HTTP only: that client speaks no TLS (the HTTPS tests go through the CLI).
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization.iter().map(|value| ("Authorization", value.as_str())).collect();
        let response = request_once(self.address, "GET", path, &headers, None).expect("an answer");
        (response.status, response.text())
    }

    /// Stops the server and waits until it has closed the database.
    pub fn stop(mut self) {
        self.shutdown_and_join();
    }

    fn shutdown_and_join(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the server thread");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown_and_join();
    }
}
