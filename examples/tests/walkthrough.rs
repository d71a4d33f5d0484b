//! Runs `examples/walkthrough.sh` against a real guidstore-server on `127.0.0.1:0`, with and
//! without bearer-token authentication: the script must find every answer as expected.
//!
//! The server runs in this process, built by `guidstore_server::Application` as its `main.rs`
//! builds it (the binary cannot be located from another package's tests). The script needs bash
//! and curl (`.ci/run` installs curl where it is missing); without them the test fails.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use guidstore_server::config::Config;
use guidstore_server::{Application, Auth};
use tokio::sync::oneshot;

/// Serves `db` on a free port while `body` runs with the server's URL.
fn with_server(db: &Path, token: Option<&str>, body: impl FnOnce(&str)) {
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        db: db.to_string_lossy().into_owned(),
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let (url, server) = runtime.block_on(async {
        let mut builder = Application::builder(config);
        if let Some(auth) = token.and_then(|token| Auth::from_tokens([token])) {
            builder = builder.auth(auth);
        }
        let app = builder.build().await.expect("the server starts");
        let url = app.url().to_owned();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        (url, server)
    });
    body(&url);
    let _ = shutdown.send(());
    let stopped = runtime.block_on(server).expect("the server stops");
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    stopped.close().expect("close the store");
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
