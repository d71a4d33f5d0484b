//! The `guidstore-server` binary: glue only. It parses the configuration, opens server.log,
//! installs the signal handlers, builds the server with [`Application::build`] (which binds, and
//! opens the store recording the server's URL in the database's lock file so the CLI can find it),
//! prints `listening on http://ADDR` (`https://` with TLS) on stdout, serves until SIGINT or
//! SIGTERM (which also end a wait for the database at startup), then closes the store and exits 0
//! (1 on any failure, logged). With TLS, SIGHUP reloads
//! the certificate and key.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use guidstore_server::config::Config;
use guidstore_server::{Application, Tls, logfile};
use tokio::signal::unix::{Signal, SignalKind, signal};

fn main() -> ExitCode {
    let config = Config::parse();
    // Every line to the log file (appended; request lines too), all but request lines to stderr.
    if let Err(error) = logfile::init(&config.log_file, config.log_level, std::io::stderr().is_terminal()) {
        eprintln!("guidstore-server: cannot open log file {}: {error}", config.log_file.display());
        return ExitCode::FAILURE;
    }
    let code = match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    };
    // Writes out every buffered line: a clean exit loses none.
    log::logger().flush();
    code
}

fn serve(config: Config) -> Result<(), String> {
    log::info!("starting guidstore-server {}: {}", env!("CARGO_PKG_VERSION"), config.summary());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let db = guidstore::redact_url(&config.db);
    let stopped = runtime.block_on(async {
        let shutdown = shutdown_signal().map_err(|error| format!("cannot install signal handlers: {error}"))?;
        // Before the build, which may wait up to --db-wait for the database: a SIGHUP meanwhile (a
        // certificate renewal hook) must not end the process, as SIGHUP's default action would.
        let hangup = config
            .tls_files()
            .map(|_| signal(SignalKind::hangup()))
            .transpose()
            .map_err(|error| format!("cannot install the SIGHUP handler: {error}"))?;
        // SIGINT or SIGTERM while the database is awaited (--db-wait) stops the server at once.
        let mut shutdown = std::pin::pin!(shutdown);
        let app = tokio::select! {
            app = Application::build(config) => app.map_err(|error| error.to_string())?,
            () = &mut shutdown => {
                log::info!("stopped before database {db} was open");
                return Ok(None);
            }
        };
        if let (Some(hangup), Some(tls)) = (hangup, &app.state().settings.tls) {
            reload_on_hangup(hangup, tls.clone());
        }
        println!("listening on {}", app.url());
        log::info!("listening on {}, database {db}", app.url());
        Ok::<_, String>(Some(app.run_until_stopped(shutdown).await))
    })?;
    let Some(stopped) = stopped else {
        runtime.shutdown_timeout(Duration::from_secs(5));
        return Ok(());
    };
    // Stops whatever blocking reads are left, dropping their clones of the store.
    runtime.shutdown_timeout(Duration::from_secs(5));
    stopped.close().map_err(|error| format!("closing database {db} failed: {error}"))
}

/// Completes on the first SIGINT or SIGTERM. The handlers are installed before it returns.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
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

/// Reloads the TLS files on every SIGHUP (one received since `hangup` was installed included).
fn reload_on_hangup(mut hangup: Signal, tls: Tls) {
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            log::info!("received SIGHUP: reloading the TLS files");
            tls.reload_now().await;
        }
    });
}
