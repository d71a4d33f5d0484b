//! [`Application`]: the one way to turn a [`Config`] into a running server. `main.rs` and every test
//! harness build the server here, so there is no second wiring of listener, store and state.
//!
//! [`Application::build`] reads the token file, binds the listener (with a large backlog), opens
//! the store on a blocking thread (recording the server's URL in the database's lock file; a
//! database not reachable yet is retried for `--db-wait`, every request meanwhile answered 503)
//! and builds the [`AppState`]. [`Application::run_until_stopped`] serves with [`run`] until a shutdown
//! future completes and hands back the store as [`Stopped`], whose [`Stopped::close`] commits the
//! queued writes and releases the file. Logging, signals and the exit code stay in `main.rs`.
//!
//! A test changes what a flag cannot express through [`ApplicationBuilder`]: bearer tokens given
//! directly, a hook over the store's [`Options`] (a `ManualClock`, say) and one over the server's
//! [`Settings`] (a short TLS reload interval, say).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use guidstore::{Code, Options, Store};
use tokio::net::{TcpListener, TcpSocket};

use crate::auth::{Auth, AuthError};
use crate::config::{Config, Settings};
use crate::server::{answer_while_opening, run};
use crate::state::AppState;
use crate::tls::{Tls, TlsError};

/// Pending connections the kernel queues before `accept` (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The token file cannot be used.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The listening address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The database cannot be opened (or is held by another process, named in the message).
    #[error("cannot open database {db}: {source}")]
    Open {
        /// The database, its password redacted.
        db: String,
        /// The cause.
        source: guidstore::Error,
    },
    /// The TLS certificate, key or client CA cannot be used (the error names the file).
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The blocking task that opens the database panicked.
    #[error("opening the database failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A hook over the store's options, applied after those of the [`Config`].
type StoreOptionsHook = Box<dyn FnOnce(Options) -> Options + Send>;

/// A bound, ready server: its listener is open, its store opened.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    url: String,
    db: String,
    state: Arc<AppState>,
}

/// [`Application::build`] with what a test injects beside the [`Config`].
pub struct ApplicationBuilder {
    config: Config,
    auth: Option<Auth>,
    store_options: Option<StoreOptionsHook>,
    settings: Option<SettingsHook>,
}

/// A hook over the server's settings, applied after those of the [`Config`].
type SettingsHook = Box<dyn FnOnce(Settings) -> Settings + Send>;

impl std::fmt::Debug for ApplicationBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplicationBuilder")
            .field("config", &self.config)
            .field("auth", &self.auth)
            .field("store_options", &self.store_options.as_ref().map(|_| "hook"))
            .field("settings", &self.settings.as_ref().map(|_| "hook"))
            .finish()
    }
}

impl ApplicationBuilder {
    /// Accept these bearer tokens instead of those of `--auth-token-file`.
    pub fn auth(mut self, auth: Auth) -> ApplicationBuilder {
        self.auth = Some(auth);
        self
    }

    /// Change the store's options after the configuration has set them (e.g.
    /// `|options| options.clock(clock)`).
    pub fn store_options(mut self, hook: impl FnOnce(Options) -> Options + Send + 'static) -> ApplicationBuilder {
        self.store_options = Some(Box::new(hook));
        self
    }

    /// Change the server's settings after the configuration has set them, TLS loaded from its
    /// files included (e.g. a shorter TLS reload interval).
    pub fn settings(mut self, hook: impl FnOnce(Settings) -> Settings + Send + 'static) -> ApplicationBuilder {
        self.settings = Some(Box::new(hook));
        self
    }

    /// Binds, opens the store (on a blocking thread: SQLite's open blocks) and builds the state.
    /// Must run inside a tokio runtime.
    pub async fn build(self) -> Result<Application, StartupError> {
        let ApplicationBuilder { config, auth, store_options, settings: settings_hook } = self;
        let auth = match (auth, &config.auth_token_file) {
            (Some(auth), _) => Some(auth),
            (None, Some(path)) => Some(Auth::from_file(path)?),
            (None, None) => None,
        };
        if let Some(auth) = &auth {
            log::info!("authentication on: {} bearer tokens accepted", auth.len());
        }
        let mut settings = config.settings();
        if let Some(files) = config.tls_files() {
            // Before anything else starts: a bad file is one clear error, and nothing is opened.
            let tls = Tls::load(files)?;
            log::info!("TLS on: {}", tls.describe());
            settings.tls = Some(tls);
        }
        if let Some(hook) = settings_hook {
            settings = hook(settings);
        }
        let bind_error = |source| StartupError::Bind { address: config.listen, source };
        let listener = bind(config.listen).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{address}");
        let mut options = config.store_options(&url);
        if let Some(hook) = store_options {
            options = hook(options);
        }
        let db = guidstore::redact_url(&config.db);
        // Until the store is open (a database may take up to --db-wait to come), every request is
        // answered 503: health checks see "not ready" instead of a connection that hangs.
        let (ready, ready_seen) = tokio::sync::watch::channel(false);
        let opening = answer_while_opening(&listener, settings.tls.clone(), settings.header_timeout, ready_seen);
        let store = tokio::select! {
            opened = open_store(config.db.clone(), options, config.db_wait) => opened?,
            never = opening => match never {},
        };
        ready.send_replace(true);
        let state = AppState::new(Arc::new(store), settings, auth);
        Ok(Application { listener, address, url, db, state })
    }
}

impl Application {
    /// The server `config` describes, bound and ready (see [`ApplicationBuilder::build`]).
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        Application::builder(config).build().await
    }

    /// A builder, for what a test sets beside the configuration.
    pub fn builder(config: Config) -> ApplicationBuilder {
        ApplicationBuilder { config, auth: None, store_options: None, settings: None }
    }

    /// The bound address (the real port when the configuration asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://ADDRESS` (`https://` with TLS), as recorded in the database's lock file.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The state every request shares (the store, settings, metrics).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes (see [`run`]); then hands back the store.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Stopped {
        let Application { listener, db, state, .. } = self;
        let store = Arc::clone(&state.store);
        run(listener, state, shutdown).await;
        Stopped { store, db }
    }
}

/// A server that has stopped serving; its store is still open.
#[derive(Debug)]
pub struct Stopped {
    store: Arc<Store>,
    db: String,
}

impl Stopped {
    /// Commits the queued writes and releases the database file. Blocks: call it after the
    /// runtime has shut down, when no blocking read holds the store any more. A store still
    /// shared (a test kept the state) is left to close when its last holder drops it.
    pub fn close(self) -> Result<(), guidstore::Error> {
        let Stopped { store, db } = self;
        log::info!("closing database {db}: committing queued writes");
        match Arc::try_unwrap(store) {
            Ok(store) => {
                store.close()?;
                log::info!("database {db} closed; shutdown complete");
            }
            Err(store) => {
                log::warn!("the store is still in use at exit; it closes when dropped");
                drop(store);
            }
        }
        Ok(())
    }
}

/// Opens the store at `db` on a blocking thread (opening blocks). A database that cannot be reached
/// yet (a transient error: down, restarting, refusing connections) is retried with backoff, each
/// failure logged, for at most `wait`; any other error is final at once, `Locked` included (another
/// live process holds the file: waiting for it is not what `--db-wait` is for).
async fn open_store(db: String, options: Options, wait: Duration) -> Result<Store, StartupError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let (url, attempt_options) = (db.clone(), options.clone());
        let opened = tokio::task::spawn_blocking(move || Store::open_url(&url, attempt_options)).await?;
        match opened {
            Ok(store) => return Ok(store),
            Err(error)
                if error.code() == Code::Unavailable
                    && !matches!(error, guidstore::Error::Locked { .. })
                    && started.elapsed() + pause < wait =>
            {
                log::warn!(
                    "cannot reach database {} ({error}); retrying in {pause:?} (giving up after {wait:?})",
                    guidstore::redact_url(&db)
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(source) => return Err(StartupError::Open { db: guidstore::redact_url(&db), source }),
        }
    }
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
