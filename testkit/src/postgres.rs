//! A private PostgreSQL server for fault tests ([`PostgresCluster`]): `initdb` into a temporary
//! directory, `pg_ctl start` on a free loopback port with trust authentication, and then stopped,
//! started again, paused (`SIGSTOP`: its processes stop answering but keep their sockets) or
//! resumed at will. Dropped, it is stopped (`pg_ctl stop -m immediate`) and its directory removed.
//!
//! [`PostgresCluster::start_tls`] starts one with TLS on (`ssl=on`), serving a certificate and key
//! the test made (see the `pki` module); plain and TLS connections are both accepted.
//!
//! The binaries are found in `GUIDSTORE_TEST_PG_BIN`, else `/usr/lib/postgresql/15/bin`. PostgreSQL
//! refuses to run as root: a root test runs them as the `postgres` user (the directory is given to
//! it). When they cannot be found, [`PostgresCluster::start`] says why.

use std::io;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A PostgreSQL server of this test's own.
#[derive(Debug)]
pub struct PostgresCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The user and group the server runs as, when this process is root.
    owner: Option<(u32, u32)>,
    paused: bool,
    /// Whether it serves TLS (its certificate and key are `server.crt`, `server.key` in the data
    /// directory).
    tls: bool,
}

/// How [`PostgresCluster::stop`] stops the server (`pg_ctl stop -m MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Ends every session (a `FATAL` message to each client), checkpoints, exits.
    Fast,
    /// Kills every process at once, as a crash would (the next start recovers from the WAL).
    Immediate,
}

fn bin_dir() -> PathBuf {
    std::env::var_os("GUIDSTORE_TEST_PG_BIN").map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from)
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> io::Result<(u32, u32)> {
    let name = c"postgres";
    // SAFETY: getpwnam with a valid C string; the fields are read before any other call to it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(io::Error::other("running as root and there is no postgres user to run PostgreSQL as"));
    }
    // SAFETY: `entry` is non-null and points to libc's static passwd record.
    Ok(unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn checked(what: &str, output: io::Result<Output>) -> io::Result<Output> {
    let output = output.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

impl PostgresCluster {
    /// Creates and starts a cluster on a free port of 127.0.0.1.
    pub fn start() -> io::Result<PostgresCluster> {
        PostgresCluster::create(None)
    }

    /// As [`PostgresCluster::start`], with TLS on: the server presents `cert_pem` (a chain, PEM)
    /// with the key `key_pem` (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> io::Result<PostgresCluster> {
        PostgresCluster::create(Some((cert_pem, key_pem)))
    }

    fn create(tls: Option<(&str, &str)>) -> io::Result<PostgresCluster> {
        let bin = bin_dir();
        if !bin.join("initdb").exists() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no initdb in {}", bin.display())));
        }
        // SAFETY: geteuid has no preconditions.
        let owner = if unsafe { libc::geteuid() } == 0 { Some(postgres_user()?) } else { None };
        let dir = tempfile::Builder::new().prefix("guidstore-pg-").tempdir()?;
        if let Some((uid, gid)) = owner {
            chown(dir.path(), Some(uid), Some(gid))?;
        }
        let mut cluster = PostgresCluster { bin, dir, port: free_port()?, owner, paused: false, tls: tls.is_some() };
        let data = cluster.data();
        let data = data.to_string_lossy();
        checked(
            "initdb",
            cluster
                .command("initdb")
                .args(["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync", "--no-instructions"])
                .output(),
        )?;
        if let Some((cert_pem, key_pem)) = tls {
            cluster.write_owned("server.crt", cert_pem)?;
            // PostgreSQL refuses a key that others may read.
            cluster.write_owned("server.key", key_pem)?;
        }
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Writes `contents` to `name` in the data directory, mode 0600, owned by the server's user.
    fn write_owned(&self, name: &str, contents: &str) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.data().join(name);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut file, contents.as_bytes())?;
        if let Some((uid, gid)) = self.owner {
            chown(&path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Whether it serves TLS ([`PostgresCluster::start_tls`]).
    pub fn has_tls(&self) -> bool {
        self.tls
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on it, as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the (stopped) server again, on the same port; returns once it accepts connections.
    pub fn start_again(&mut self) -> io::Result<()> {
        let data = self.data();
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='{}' -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            // Relative to the data directory.
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.dir.path().join("postgres.log");
        checked(
            "pg_ctl start",
            self.command("pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &options])
                .output(),
        )?;
        Ok(())
    }

    /// Stops the server (see [`StopMode`]); returns once it has exited.
    pub fn stop(&mut self, mode: StopMode) -> io::Result<()> {
        if self.paused {
            self.resume()?;
        }
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        checked(
            "pg_ctl stop",
            self.command("pg_ctl").args(["stop", "-w", "-m", mode, "-D"]).arg(self.data()).output(),
        )?;
        Ok(())
    }

    /// Runs SQL as the superuser in database `db` (`psql -c`); its output.
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        let output = checked(
            "psql",
            Command::new("psql").arg(self.url(db)).args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql]).output(),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) -> io::Result<()> {
        self.psql("postgres", &format!("CREATE DATABASE {name}")).map(drop)
    }

    /// Ends every session connected to database `db` (`pg_terminate_backend`); how many.
    pub fn kill_connections(&self, db: &str) -> io::Result<usize> {
        let killed = self.psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        )?;
        killed.parse().map_err(|_| io::Error::other(format!("pg_terminate_backend answered {killed:?}")))
    }

    /// The server's processes: the postmaster (from `postmaster.pid`) and its children.
    fn processes(&self) -> io::Result<Vec<i32>> {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid"))?;
        let postmaster: i32 = pid_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| io::Error::other("postmaster.pid holds no pid"))?;
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<i32>() else { continue };
            if parent_of(pid) == Some(postmaster) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// Freezes every process of the server (`SIGSTOP`): connections stay open and new ones are
    /// accepted by the kernel, but nothing answers — a database that hangs rather than refuses.
    pub fn pause(&mut self) -> io::Result<()> {
        for pid in self.processes()? {
            signal(pid, libc::SIGSTOP)?;
        }
        self.paused = true;
        Ok(())
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&mut self) -> io::Result<()> {
        for pid in self.processes()? {
            signal(pid, libc::SIGCONT)?;
        }
        self.paused = false;
        Ok(())
    }

    /// The server's log (`pg_ctl -l`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The cluster's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        let error = io::Error::last_os_error();
        // A child that exited meanwhile is no longer there to stop.
        if error.raw_os_error() == Some(libc::ESRCH) { Ok(()) } else { Err(error) }
    }
}

/// The parent pid of `pid`, from `/proc/PID/stat` (`None` if it is gone).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: read after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if self.paused {
            let _ = self.resume();
        }
        if self.data().join("postmaster.pid").exists()
            && let Err(error) = self.stop(StopMode::Immediate)
        {
            eprintln!("could not stop the test PostgreSQL in {}: {error}", self.dir.path().display());
        }
    }
}
