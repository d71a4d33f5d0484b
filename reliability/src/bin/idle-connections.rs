//! `idle-connections`: holds thousands of idle connections open against a real guidstore-server and
//! checks it keeps serving with bounded memory (`VmRSS` from `/proc/PID/status`).
//!
//! ```text
//! cargo build --release -p guidstore-server -p guidstore-reliability
//! target/release/idle-connections --connections 10000
//! target/release/idle-connections --connections 10000 --partial   # each sent half a request line
//! ```
//! It raises its own `RLIMIT_NOFILE` soft limit to the hard limit (the server inherits it), so no
//! `ulimit -n` is needed unless the hard limit is below about 2 × connections + 100.
//! Exit status 0 when every connection was held and the server kept serving.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use guidstore_reliability::server::{Server, ServerConfig, find_server_binary};
use guidstore_testkit::http::request_once;

/// Hold many idle connections to guidstore-server; report RSS and whether it still serves.
#[derive(Debug, Parser)]
struct Args {
    /// The guidstore-server binary [default: the newer of target/release and target/debug].
    #[arg(long, env = "GUIDSTORE_SERVER_BIN")]
    server: Option<PathBuf>,
    /// How many connections to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Send half a request line on each connection (the server is then waiting for headers).
    #[arg(long)]
    partial: bool,
    /// The server's --header-timeout, long enough to hold the connections while measuring.
    #[arg(long, default_value = "120s")]
    header_timeout: String,
    /// Seconds to hold them after they are all open.
    #[arg(long, default_value_t = 3)]
    hold_secs: u64,
}

fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    stream.set_nonblocking(true).ok();
    let open = matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).ok();
    open
}

/// The slowest of `n` create+read round trips on fresh connections, or an error.
fn probe(server: &Server, n: usize) -> Result<Duration, String> {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        let created = request_once(server.addr(), "POST", "/guid", &[], Some(b"{\"user\":\"idle\"}"))
            .map_err(|e| format!("create: {e}"))?;
        if created.status != 201 {
            return Err(format!("create answered {}", created.status));
        }
        let location = created.header("location").unwrap_or("/guid/x").to_owned();
        let read = request_once(server.addr(), "GET", &location, &[], None).map_err(|e| format!("read: {e}"))?;
        if read.status != 200 {
            return Err(format!("read answered {}", read.status));
        }
        worst = worst.max(started.elapsed());
    }
    Ok(worst)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(binary) = args.server.or_else(find_server_binary) else {
        eprintln!(
            "idle-connections: no guidstore-server binary (cargo build --release -p guidstore-server, or --server)"
        );
        return ExitCode::from(2);
    };
    let nofile = raise_nofile();
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("idle-connections: {e}");
            return ExitCode::from(2);
        }
    };
    let config = ServerConfig::in_dir(&binary, dir.path()).args([
        "--header-timeout".to_owned(),
        args.header_timeout.clone(),
        "--max-connections".to_owned(),
        (args.connections + 1000).to_string(),
    ]);
    let mut server = match Server::start(&config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("idle-connections: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = probe(&server, 20);
    let baseline = server.rss_kib().unwrap_or(0);
    println!(
        "idle-connections: server {} pid {}, RLIMIT_NOFILE {nofile}, baseline RSS {baseline} KiB",
        binary.display(),
        server.pid()
    );
    let started = Instant::now();
    let mut streams = Vec::with_capacity(args.connections);
    let mut connect_errors = 0usize;
    for _ in 0..args.connections {
        match TcpStream::connect_timeout(&server.addr(), Duration::from_secs(5)) {
            Ok(mut stream) => {
                if args.partial {
                    let _ = stream.write_all(b"GET /guid/9094E4C9");
                }
                streams.push(stream);
            }
            Err(_) => connect_errors += 1,
        }
    }
    let opened_in = started.elapsed();
    std::thread::sleep(Duration::from_secs(args.hold_secs));
    let held = streams.iter().filter(|s| still_open(s)).count();
    let with_connections = server.rss_kib().unwrap_or(0);
    let probe_while_held = probe(&server, 20);
    let per_connection = (with_connections.saturating_sub(baseline) * 1024) / (held.max(1) as u64);
    println!(
        "idle-connections: {held}/{} held ({connect_errors} connect errors, opened in {:.1} s, {}), RSS {with_connections} KiB (+{} KiB, about {per_connection} bytes per connection)",
        args.connections,
        opened_in.as_secs_f64(),
        if args.partial { "each with half a request line" } else { "silent" },
        with_connections.saturating_sub(baseline)
    );
    match &probe_while_held {
        Ok(worst) => println!(
            "idle-connections: still serving while held: 20 create+read, slowest {:.1} ms",
            worst.as_secs_f64() * 1e3
        ),
        Err(e) => println!("idle-connections: NOT serving while held: {e}"),
    }
    drop(streams);
    std::thread::sleep(Duration::from_secs(2));
    let after = server.rss_kib().unwrap_or(0);
    let probe_after = probe(&server, 20);
    println!("idle-connections: after closing them RSS {after} KiB, serving: {}", probe_after.is_ok());
    let exit = server.terminate(Duration::from_secs(20));
    let clean_exit = matches!(&exit, Ok(status) if status.success());
    println!("idle-connections: SIGTERM -> {exit:?}");
    if held == args.connections && probe_while_held.is_ok() && probe_after.is_ok() && clean_exit {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
