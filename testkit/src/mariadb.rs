//! A private MariaDB server ([`MariadbServer`]) for tests that need what the shared one may lack or
//! have — TLS on, or TLS surely off: `mariadb-install-db` into a temporary directory, then
//! `mariadbd` on a free loopback port, with a certificate and key the test made
//! ([`MariadbServer::start_tls`]) or without TLS ([`MariadbServer::start`]). `root@127.0.0.1` has no password. Dropped, the server
//! is killed (`SIGTERM`, then `SIGKILL` if it lingers) and its directory removed.
//!
//! The programs are found in `PATH` (and `/usr/sbin`, where Debian puts `mariadbd`). MariaDB
//! refuses to run as root: a root test runs it as the `mysql` user (the directory is given to it).
//! When they cannot be found, [`MariadbServer::start_tls`] says why.

use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt as _, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A MariaDB server of this test's own.
#[derive(Debug)]
pub struct MariadbServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

/// The uid and gid of the `mysql` user.
fn mysql_user() -> io::Result<(u32, u32)> {
    let name = c"mysql";
    // SAFETY: getpwnam with a valid C string; the fields are read before any other call to it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(io::Error::other("running as root and there is no mysql user to run MariaDB as"));
    }
    // SAFETY: `entry` is non-null and points to libc's static passwd record.
    Ok(unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
}

/// `program` in `PATH` or `/usr/sbin`.
fn find(program: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no {program} in PATH or /usr/sbin")))
}

impl MariadbServer {
    /// Creates and starts a server on a free port of 127.0.0.1, without TLS. Returns once it
    /// accepts connections.
    pub fn start() -> io::Result<MariadbServer> {
        MariadbServer::create(None)
    }

    /// Creates and starts a server on a free port of 127.0.0.1, with TLS on: it presents
    /// `cert_pem` (PEM chain) with the key `key_pem`. Returns once it accepts connections.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> io::Result<MariadbServer> {
        MariadbServer::create(Some((cert_pem, key_pem)))
    }

    fn create(tls: Option<(&str, &str)>) -> io::Result<MariadbServer> {
        let install = find("mariadb-install-db")?;
        let server = find("mariadbd")?;
        // SAFETY: geteuid has no preconditions.
        let owner = if unsafe { libc::geteuid() } == 0 { Some(mysql_user()?) } else { None };
        let dir = tempfile::Builder::new().prefix("guidstore-mariadb-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        // Its own temporary directory: with the default (/tmp) mariadb-install-db once failed in CI
        // ("Could not remove temporary table '/tmp/#sql-temptable-…', error: 2") beside other tests.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp)?;
        let mut common = vec![format!("--tmpdir={}", tmp.display())];
        if let Some((uid, gid)) = owner {
            chown(dir.path(), Some(uid), Some(gid))?;
            chown(&data, Some(uid), Some(gid))?;
            chown(&tmp, Some(uid), Some(gid))?;
            common.push("--user=mysql".to_owned());
        }
        let files = tls.map(|(cert_pem, key_pem)| [("server.crt", cert_pem), ("server.key", key_pem)]);
        for (name, contents) in files.into_iter().flatten() {
            let path = dir.path().join(name);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            io::Write::write_all(&mut file, contents.as_bytes())?;
            if let Some((uid, gid)) = owner {
                chown(&path, Some(uid), Some(gid))?;
            }
        }
        let output = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(&common)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "mariadb-install-db failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let path = dir.path();
        let mut tls_options = Vec::new();
        if tls.is_some() {
            tls_options.push(format!("--ssl-cert={}", path.join("server.crt").display()));
            tls_options.push(format!("--ssl-key={}", path.join("server.key").display()));
        }
        let child = Command::new(server)
            .arg("--no-defaults")
            .args(&common)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", path.join("mariadb.sock").display()))
            .arg(format!("--pid-file={}", path.join("mariadb.pid").display()))
            .arg(format!("--log-error={}", path.join("mariadb.log").display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve", "--innodb-buffer-pool-size=16M"])
            .args(&tls_options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = MariadbServer { dir, port, child };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until the server answers `SELECT 1`, or says why not (its log's tail).
    fn wait_ready(&mut self) -> io::Result<()> {
        let start = Instant::now();
        loop {
            if self.mariadb("SELECT 1").is_ok() {
                return Ok(());
            }
            let exited = self.child.try_wait()?;
            if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(io::Error::other(format!(
                    "mariadbd did not start ({}): {}",
                    exited.map_or_else(|| "still not answering after 60 s".to_owned(), |s| s.to_string()),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on it, as `root`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL as `root` over TCP (`mariadb -e`, without TLS); its output (tab-separated, no
    /// column names).
    pub fn mariadb(&self, sql: &str) -> io::Result<String> {
        let output = Command::new("mariadb")
            .args(["--no-defaults", "--protocol=tcp", "--host=127.0.0.1", "--user=root", "--skip-ssl", "-N", "-B"])
            .arg(format!("--port={}", self.port))
            .args(["-e", sql])
            .output()?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(io::Error::other(format!("mariadb -e: {}", String::from_utf8_lossy(&output.stderr).trim())))
        }
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) -> io::Result<()> {
        self.mariadb(&format!("CREATE DATABASE {name}")).map(drop)
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.log")
    }

    /// The server's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MariadbServer {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
