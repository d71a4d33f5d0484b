//! `crash-test`: proves that every write guidstore-server acknowledged survives `kill -9` (or a
//! `SIGTERM` under load), by killing and restarting a real server on one database, cycle after cycle.
//!
//! ```text
//! cargo build --release -p guidstore-server -p guidstore-reliability
//! target/release/crash-test --cycles 20
//! target/release/crash-test --cycles 5 --sigterm
//! ```
//! Exit status 0 when nothing acknowledged was lost, 1 otherwise, 2 when the run could not happen.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use guidstore_reliability::crash::{self, CrashConfig, StopMode};
use guidstore_reliability::rng::Rng;
use guidstore_reliability::server::find_server_binary;

/// Kill guidstore-server under concurrent writes, restart it, and check every acknowledged write.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The guidstore-server binary [default: the newer of target/release and target/debug].
    #[arg(long, env = "GUIDSTORE_SERVER_BIN")]
    server: Option<PathBuf>,
    /// Kill/restart cycles (full run: 20; CI: 3).
    #[arg(long, default_value_t = 20)]
    cycles: u32,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// GUIDs owned by each client.
    #[arg(long, default_value_t = 64)]
    guids_per_client: usize,
    /// Shortest load before the stop, in milliseconds.
    #[arg(long, default_value_t = 300)]
    min_ms: u64,
    /// Longest load before the stop, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    max_ms: u64,
    /// Stop with SIGTERM (graceful shutdown must exit 0) instead of kill -9.
    #[arg(long)]
    sigterm: bool,
    /// PRNG seed, to replay a run [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the database and server.log in this directory instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Extra flag for the server (repeatable), e.g. --server-arg=--sync --server-arg=full.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(binary) = args.server.or_else(find_server_binary) else {
        eprintln!(
            "crash-test: no guidstore-server binary: build it (cargo build --release -p guidstore-server) or pass --server"
        );
        return ExitCode::from(2);
    };
    let seed = args.seed.unwrap_or_else(Rng::seed_from_time);
    let config = CrashConfig {
        binary,
        cycles: args.cycles,
        clients: args.clients.max(1),
        guids_per_client: args.guids_per_client.max(1),
        run_ms: (args.min_ms, args.max_ms.max(args.min_ms)),
        mode: if args.sigterm { StopMode::Term } else { StopMode::Kill },
        seed,
        server_args: args.server_args,
        dir: args.dir,
    };
    println!(
        "crash-test: server {}, {} cycles of {}, {} clients x {} GUIDs, seed {seed}",
        config.binary.display(),
        config.cycles,
        if args.sigterm { "SIGTERM" } else { "kill -9" },
        config.clients,
        config.guids_per_client
    );
    match crash::run(&config, |line| println!("{line}")) {
        Ok(summary) => {
            for problem in summary.lost.iter().chain(&summary.wrong_answers).chain(&summary.bad_exits).take(50) {
                println!("  PROBLEM {problem}");
            }
            println!("{}", summary.line());
            if summary.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("crash-test: {error} (seed {seed})");
            ExitCode::from(2)
        }
    }
}
