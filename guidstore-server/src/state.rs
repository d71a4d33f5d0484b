//! [`AppState`]: what every request handler shares: the store, the settings, the metrics and the
//! accepted tokens. Built once, by [`Application::build`](crate::Application::build) (or by a
//! caller of [`run`](crate::run) that wires its own).

use std::sync::Arc;

use guidstore::Store;

use crate::auth::Auth;
use crate::config::Settings;
use crate::fanout::Fanout;
use crate::metrics::Metrics;

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The registry.
    pub store: Arc<Store>,
    /// Limits and intervals.
    pub settings: Settings,
    /// Request counters.
    pub metrics: Metrics,
    /// The accepted bearer tokens, when authentication is on.
    pub auth: Option<Auth>,
    /// Set when the server starts shutting down: long polls answer and event streams end, so
    /// that graceful shutdown does not wait for them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The change feed rendered once for every `/events` consumer.
    pub fanout: Arc<Fanout>,
}

impl AppState {
    /// The state of a server over `store`.
    pub fn new(store: Arc<Store>, settings: Settings, auth: Option<Auth>) -> Arc<AppState> {
        let stopping = tokio::sync::watch::Sender::new(false);
        let fanout = Fanout::new(Arc::clone(&store), stopping.subscribe());
        Arc::new(AppState { store, settings, metrics: Metrics::default(), auth, stopping, fanout })
    }
}
