//! A `guidstore-server` child process: find the binary, start it on `127.0.0.1:0`, learn its address
//! from the one `listening on http://ADDR` line, then stop it with `SIGKILL` or `SIGTERM`, and read its
//! resident memory from `/proc`.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The `guidstore-server` executable.
    pub binary: PathBuf,
    /// `--db`.
    pub db: PathBuf,
    /// `--log-file`.
    pub log_file: PathBuf,
    /// Further flags, e.g. `["--header-timeout", "2"]`.
    pub extra_args: Vec<String>,
    /// A file-size limit (`RLIMIT_FSIZE`, bytes) for the child; `SIGXFSZ` is ignored so writes past
    /// it fail with `EFBIG` instead of killing the process.
    pub file_size_limit: Option<u64>,
    /// Where the child's stderr goes (its terminal log); `None` discards it.
    pub stderr_file: Option<PathBuf>,
}

impl ServerConfig {
    /// A config for `binary` with its database and log in `dir`.
    pub fn in_dir(binary: impl Into<PathBuf>, dir: &Path) -> ServerConfig {
        ServerConfig {
            binary: binary.into(),
            db: dir.join("guidstore.db"),
            log_file: dir.join("server.log"),
            extra_args: Vec::new(),
            file_size_limit: None,
            stderr_file: Some(dir.join("server.stderr")),
        }
    }

    /// Adds flags.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> ServerConfig {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// A running server process. Dropping it kills the process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    config: ServerConfig,
}

impl Server {
    /// Starts the server and waits (at most 30 s) for its `listening on http://ADDR` line.
    pub fn start(config: &ServerConfig) -> io::Result<Server> {
        let mut command = Command::new(&config.binary);
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(&config.db)
            .arg("--log-file")
            .arg(&config.log_file)
            .args(&config.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        match &config.stderr_file {
            Some(path) => command.stderr(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            None => command.stderr(Stdio::null()),
        };
        if let Some(limit) = config.file_size_limit {
            // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
            unsafe {
                command.pre_exec(move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: libc::RLIM_INFINITY };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", config.binary.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line.clone());
            let _ = sender.send(first);
            // Keep draining so the server never blocks on a full pipe.
            let mut sink = [0u8; 8192];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        });
        let line = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(io::ErrorKind::TimedOut, "server printed no listening line in 30 s"));
            }
        };
        let addr = line.trim().strip_prefix("listening on http://").and_then(|addr| addr.parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => Ok(Server { child, addr, config: config.clone() }),
            None => {
                let _ = child.kill();
                let status = child.wait()?;
                let stderr =
                    config.stderr_file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
                Err(io::Error::other(format!(
                    "server did not start ({status}); stdout {line:?}; stderr tail: {}",
                    tail(&stderr, 2000)
                )))
            }
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Whether the process has exited (and how).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) -> io::Result<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait()
    }

    /// Sends `SIGTERM` and waits up to `timeout` for the exit; on timeout, kills it and errs.
    pub fn terminate(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.kill9();
                return Err(io::Error::new(io::ErrorKind::TimedOut, "server did not exit after SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// Raises (or lowers) the running process's `RLIMIT_FSIZE` (`prlimit(2)`).
    pub fn set_file_size_limit(&self, limit: Option<u64>) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        let value = limit.unwrap_or(libc::RLIM_INFINITY);
        let rlimit = libc::rlimit { rlim_cur: value, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: prlimit(2) with valid pointers on our child's pid.
        if unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &rlimit, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.config.log_file).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `/proc/PID/status` field in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    &text[start..]
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The server binary to test: `$GUIDSTORE_SERVER_BIN` if set, else `target/release/guidstore-server`
/// or `target/debug/guidstore-server` under the workspace (or `$CARGO_TARGET_DIR`), whichever is newer.
pub fn find_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GUIDSTORE_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("guidstore-server"))
        .filter_map(|path| {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
            Some((modified, path))
        })
        .max()
        .map(|(_, path)| path)
}

/// For tests: `cargo build -p guidstore-server` (a no-op when up to date), then the debug binary,
/// unless `$GUIDSTORE_SERVER_BIN` names one. Panics with the reason when there is none.
pub fn server_binary_for_tests() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("GUIDSTORE_SERVER_BIN") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "guidstore-server", "--bin", "guidstore-server"])
                .current_dir(workspace_root())
                .status()
                .expect("run cargo build -p guidstore-server");
            assert!(status.success(), "cargo build -p guidstore-server failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("debug").join("guidstore-server")
        })
        .clone()
}
