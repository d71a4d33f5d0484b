//! Runs `examples/walkthrough.sh` against a real guidstore-server on `127.0.0.1:0`, with and
//! without bearer-token authentication: the script must find every answer as expected.
//!
//! The server runs in this process from the `guidstore_server` library, wired as its `main.rs`
//! wires it (the binary cannot be located from another package's tests). The script needs bash and
//! curl (`.ci/run` installs curl where it is missing); without them the test fails.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use clap::Parser;
use guidstore::Store;
use guidstore_server::config::Config;
use guidstore_server::{AppState, Auth};
use tokio::sync::oneshot;

/// Serves `db` on a free port while `body` runs with the server's URL.
fn with_server(db: &Path, token: Option<&str>, body: impl FnOnce(&str)) {
    let config = Config::try_parse_from([OsStr::new("guidstore-server"), OsStr::new("--db"), db.as_os_str()])
        .expect("server configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let (url, server, store) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let store = Arc::new(Store::open_with(&config.db, config.store_options(&url)).expect("open store"));
        let auth = token.and_then(|token| Auth::from_tokens([token]));
        let state = AppState::new(Arc::clone(&store), config.settings(), auth);
        let server = tokio::spawn(guidstore_server::run(listener, state, async {
            let _ = stopped.await;
        }));
        (url, server, store)
    });
    body(&url);
    let _ = shutdown.send(());
    runtime.block_on(server).expect("the server stops");
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().expect("close the store");
    }
}

fn require_tools() {
    let found = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found("bash") && found("curl"), "walkthrough.sh needs bash and curl on the PATH");
}

fn run_walkthrough(url: &str, token: Option<&str>) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("walkthrough.sh");
    let mut command = Command::new("bash");
    command.arg(script).arg(url).env_remove("GUIDSTORE_URL").env_remove("GUIDSTORE_TOKEN");
    if let Some(token) = token {
        command.env("GUIDSTORE_TOKEN", token);
    }
    let output = command.output().expect("run walkthrough.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn walkthrough_gets_every_expected_answer_from_a_real_server() {
    require_tools();
    let dir = tempfile::tempdir().expect("temporary directory");
    with_server(&dir.path().join("guids.db"), None, |url| {
        let (ok, output) = run_walkthrough(url, None);
        assert!(ok, "walkthrough.sh failed:\n{output}");
        assert!(output.contains("answers as expected"), "{output}");
        for expected in ["# expect 409", "# expect 412", "# expect 413", "# expect 405", "--head"] {
            assert!(output.contains(expected), "{expected:?} missing:\n{output}");
        }
    });
}

#[test]
fn walkthrough_sends_the_token_and_shows_the_401_without_it() {
    require_tools();
    let dir = tempfile::tempdir().expect("temporary directory");
    with_server(&dir.path().join("guids.db"), Some("walkthrough-token"), |url| {
        let (ok, output) = run_walkthrough(url, Some("walkthrough-token"));
        assert!(ok, "walkthrough.sh failed:\n{output}");
        assert!(output.contains("# expect 401") && !output.contains("walkthrough-token"), "{output}");
        let (ok, output) = run_walkthrough(url, None);
        assert!(!ok, "without the token the answers are 401s:\n{output}");
    });
}
