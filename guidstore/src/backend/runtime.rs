//! [`DbRuntime`]: the private tokio runtime on which the network backends drive their async
//! drivers, and the one place that bounds how long any database call may take.
//!
//! The store's threads (the writer, and whoever calls a read) block on it; the runtime's one
//! worker thread runs the drivers' connection tasks. Nothing of it leaks into the public API: a
//! program that embeds guidstore needs no runtime of its own.

use std::future::Future;
use std::time::Duration;

use crate::{Result, StorageError};

pub(crate) struct DbRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

impl DbRuntime {
    /// A runtime whose calls give up after `timeout`.
    pub(crate) fn new(name: &str, timeout: Duration) -> Result<DbRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|error| StorageError::permanent("cannot start the database runtime").with_source(error))?;
        Ok(DbRuntime { runtime: Some(runtime), timeout })
    }

    /// Runs `future` to completion on the calling thread, at most the timeout: past it, a
    /// transient error saying what did not answer. Must not be called from an async task.
    pub(crate) fn run<T>(&self, what: &str, future: impl Future<Output = Result<T>>) -> Result<T> {
        let Some(runtime) = &self.runtime else {
            return Err(StorageError::transient("the database runtime has stopped").into());
        };
        let timeout = self.timeout;
        runtime.block_on(async {
            match tokio::time::timeout(timeout, future).await {
                Ok(result) => result,
                Err(_) => {
                    Err(StorageError::transient(format!("the database did not answer within {timeout:?} ({what})"))
                        .into())
                }
            }
        })
    }
}

impl Drop for DbRuntime {
    fn drop(&mut self) {
        // Connection tasks may be blocked on a database that stopped answering: do not wait.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
