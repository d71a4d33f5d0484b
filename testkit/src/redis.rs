//! [`RedisServer`]: a private `redis-server` per test, on a free loopback port, that the test can
//! kill, start again (empty) and pause, and talk to with [`RedisServer::command`].
//!
//! Without `redis-server` on the PATH a test is skipped (said on stderr), or fails when
//! `GUIDSTORE_REQUIRE_SERVICES=1`, as the database tests do.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own, killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port, or `None` (after saying so) when `redis-server` cannot run.
    pub fn start() -> Option<RedisServer> {
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()) {
            Ok(address) => address.port(),
            Err(error) => panic!("no free port: {error}"),
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = RedisServer { port, dir, child: None };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(why) => {
                crate::db::skip_service("redis-server", &why);
                None
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot run redis-server: {error}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_command(&["PING"]).is_ok_and(|reply| reply == "PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("redis-server on port {} did not answer within 10 s", self.port))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The directory the server runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `kill -9`, and waits for the process to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(why) = self.spawn() {
            panic!("{why}");
        }
    }

    /// Runs one command and returns its reply as text (arrays joined by newlines, nil as an empty
    /// string); panics when the server does not answer or answers an error.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).unwrap_or_else(|error| panic!("redis {args:?}: {error}"))
    }

    /// Runs one command; an error reply or a broken connection is `Err`.
    pub fn try_command(&self, args: &[&str]) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        read_reply(&mut BufReader::new(stream))
    }
}

fn read_reply(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or("connection closed")?;
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(rest.to_owned()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| format!("bad bulk length {rest:?}"))?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut bytes = vec![0; len as usize + 2];
            reader.read_exact(&mut bytes).map_err(|e| e.to_string())?;
            bytes.truncate(len as usize);
            String::from_utf8(bytes).map_err(|e| e.to_string())
        }
        "*" => {
            let count: i64 = rest.parse().map_err(|_| format!("bad array length {rest:?}"))?;
            let items: Result<Vec<String>, String> = (0..count.max(0)).map(|_| read_reply(reader)).collect();
            Ok(items?.join("\n"))
        }
        other => Err(format!("unknown reply type {other:?}")),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
