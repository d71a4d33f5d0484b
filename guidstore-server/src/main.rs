//! The `guidstore-server` binary: glue only. It parses the configuration, opens server.log,
//! binds the listener, opens the store (recording the server's URL in the database's lock file so
//! the CLI can find it), prints `listening on http://ADDR` (`https://` with TLS) on stdout, and
//! calls [`guidstore_server::run`] until SIGINT or SIGTERM; then it closes the store and exits 0.
//! With TLS, the certificate and key are loaded before anything else starts (a bad file is one
//! error line and exit 1), and SIGHUP reloads them.

use std::fs::OpenOptions;
use std::io::{BufWriter, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use guidstore::Store;
use guidstore_server::config::Config;
use guidstore_server::routes::ACCESS_LOG;
use guidstore_server::{AppState, Auth, Tls, run};
use log::LevelFilter;
use simplelog::{ColorChoice, CombinedLogger, ConfigBuilder, TermLogger, TerminalMode, WriteLogger};
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues before `accept` (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// How often buffered log lines are written to server.log.
const LOG_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(error) = init_logging(&config) {
        eprintln!("guidstore-server: cannot open log file {}: {error}", config.log_file.display());
        return ExitCode::FAILURE;
    }
    let code = match serve(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    };
    log::logger().flush();
    code
}

/// Logs to stderr and, appended through a buffer flushed every second, to the log file.
/// Request lines (target [`ACCESS_LOG`]) go to the file only, so a busy server does not write a
/// line to the terminal per request.
fn init_logging(config: &Config) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(&config.log_file)?;
    let file_config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let terminal_config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_ignore_str(ACCESS_LOG)
        .build();
    let level = config.log_level;
    let colors = if std::io::stderr().is_terminal() { ColorChoice::Auto } else { ColorChoice::Never };
    CombinedLogger::init(vec![
        TermLogger::new(level, terminal_config, TerminalMode::Stderr, colors),
        WriteLogger::new(level, file_config, BufWriter::with_capacity(64 * 1024, file)),
    ])
    .map_err(std::io::Error::other)?;
    std::thread::Builder::new().name("log-flush".to_owned()).spawn(|| {
        loop {
            std::thread::sleep(LOG_FLUSH_INTERVAL);
            log::logger().flush();
        }
    })?;
    Ok(())
}

fn serve(config: &Config) -> Result<(), String> {
    log::info!("starting guidstore-server {}: {}", env!("CARGO_PKG_VERSION"), config.summary());
    let auth = match &config.auth_token_file {
        Some(path) => {
            let auth = Auth::from_file(path).map_err(|error| error.to_string())?;
            log::info!("authentication on: {} bearer tokens accepted", auth.len());
            Some(auth)
        }
        None => None,
    };
    let mut settings = config.settings();
    if let Some(files) = config.tls_files() {
        let tls = Tls::load(files).map_err(|error| format!("TLS: {error}"))?;
        log::info!("TLS on: {}", tls.describe());
        settings.tls = Some(tls);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let listener = runtime
        .block_on(async { bind(config.listen) })
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let address = listener.local_addr().map_err(|error| format!("cannot read the bound address: {error}"))?;
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{address}");
    // Opened on the main thread, outside the runtime: no SQLite work on a runtime thread.
    let store = Store::open_with(&config.db, config.store_options(&url))
        .map_err(|error| format!("cannot open database {}: {error}", config.db.display()))?;
    let store = Arc::new(store);
    runtime.block_on(async {
        let shutdown = shutdown_signal().map_err(|error| format!("cannot install signal handlers: {error}"))?;
        if let Some(tls) = &settings.tls {
            reload_on_hangup(tls.clone()).map_err(|error| format!("cannot install the SIGHUP handler: {error}"))?;
        }
        let state = AppState::new(Arc::clone(&store), settings, auth);
        println!("listening on {url}");
        log::info!("listening on {url}, database {}", config.db.display());
        run(listener, state, shutdown).await;
        Ok::<_, String>(())
    })?;
    // Stops whatever blocking reads are left, dropping their clones of the store.
    runtime.shutdown_timeout(Duration::from_secs(5));
    log::info!("closing database {}: committing queued writes", config.db.display());
    match Arc::try_unwrap(store) {
        Ok(store) => match store.close() {
            Ok(()) => log::info!("database {} closed; shutdown complete", config.db.display()),
            Err(error) => return Err(format!("closing database {} failed: {error}", config.db.display())),
        },
        Err(store) => {
            log::warn!("the store is still in use at exit; it closes when dropped");
            drop(store);
        }
    }
    Ok(())
}

/// Binds with a listen backlog of [`LISTEN_BACKLOG`] (tokio's `bind` uses 128, which overflows
/// when thousands of clients connect at once, and their SYNs are then retried only after 1 s).
/// Must run inside the runtime.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Completes on the first SIGINT or SIGTERM. The handlers are installed before it returns.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        log::info!("received {name}: shutting down");
    })
}

/// Reloads the TLS files on every SIGHUP. The handler is installed before it returns.
fn reload_on_hangup(tls: Tls) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            log::info!("received SIGHUP: reloading the TLS files");
            tls.reload_now().await;
        }
    });
    Ok(())
}
