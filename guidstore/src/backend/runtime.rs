//! [`DbRuntime`]: the private tokio runtime on which the network backends drive their async
//! drivers, and the one place that bounds how long any database call may take.
//!
//! The store's threads (the writer, and whoever calls a read) block on it; the runtime's one
//! worker thread runs the drivers' connection tasks. Nothing of it leaks into the public API: a
//! program that embeds guidstore needs no runtime of its own.

use std::future::Future;
use std::time::{Duration, Instant};

pub(crate) use crate::pending::park_on;
use crate::{Result, StorageError};

#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(dead_code, reason = "the redis level uses only park_on")
)]
pub(crate) struct DbRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(dead_code, reason = "the redis level uses only park_on")
)]
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

    /// When a call starting now must have ended: now + the timeout. A request that makes several
    /// calls (a write transaction: begin, load, commit) passes one deadline to all of them, so it
    /// waits for an unanswering database once, not once per call.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// The runtime's handle, for work that must go on after its caller stopped waiting (closing
    /// a connection that timed out).
    pub(crate) fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|runtime| runtime.handle().clone())
    }

    /// Runs `future` to completion on the calling thread, at most the timeout: past it, a
    /// transient error saying what did not answer.
    pub(crate) fn run<T>(&self, what: &str, future: impl Future<Output = Result<T>>) -> Result<T> {
        self.run_until(self.deadline(), what, future)
    }

    /// Runs `future` to completion on the calling thread, until `deadline` at most: past it (or
    /// if it has passed already), a transient error saying what did not answer. The future is
    /// then dropped, and with it whatever it held: a connection it used must not go back to its
    /// pool (see the backends' `Pooled` guards).
    ///
    /// The calling thread polls the future itself and sleeps while it waits (the runtime's worker
    /// drives the sockets and timers and wakes it). Unlike tokio's `block_on`, this never panics
    /// when the caller is itself a task of some other runtime (an embedder calling the store's
    /// blocking methods from async code): it only blocks that task's thread, as any blocking call
    /// would.
    pub(crate) fn run_until<T>(
        &self,
        deadline: Instant,
        what: &str,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        park_on(self.bound(deadline, what, future))
    }

    /// `future` bounded by `deadline` (past it, a transient error saying what did not answer),
    /// as a future any executor can poll — a task of the caller's own runtime, whatever it is,
    /// or [`park_on`]: every poll runs inside this runtime's context, so the timers, pools and
    /// connection tasks the drivers create belong to it (its worker drives the sockets and wakes
    /// the caller), and no thread is blocked while the database answers.
    pub(crate) fn bound<'a, T: 'a>(
        &'a self,
        deadline: Instant,
        what: &'a str,
        future: impl Future<Output = Result<T>> + 'a,
    ) -> InContext<impl Future<Output = Result<T>> + 'a> {
        let handle = self.handle();
        let stopped = handle.is_none();
        let bounded = async move {
            if stopped {
                return Err(StorageError::transient("the database runtime has stopped").into());
            }
            if Instant::now() >= deadline {
                return Err(self.late(what));
            }
            match tokio::time::timeout_at(deadline.into(), future).await {
                Ok(result) => result,
                Err(_) => Err(self.late(what)),
            }
        };
        InContext::new(handle, bounded)
    }

    fn late(&self, what: &str) -> crate::Error {
        StorageError::transient(format!("the database did not answer within {:?} ({what})", self.timeout)).into()
    }
}

/// A future polled inside a tokio runtime's context (when it has one), whichever executor polls it:
/// what the future creates (timers, spawned connection tasks) belongs to that runtime, not to the
/// caller's. Entering a context nests, unlike `block_on`: it is allowed on a worker thread of
/// another runtime.
pub(crate) struct InContext<F> {
    handle: Option<tokio::runtime::Handle>,
    future: std::pin::Pin<Box<F>>,
}

impl<F: Future> InContext<F> {
    pub(crate) fn new(handle: Option<tokio::runtime::Handle>, future: F) -> InContext<F> {
        InContext { handle, future: Box::pin(future) }
    }
}

impl<F: Future> Future for InContext<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.as_ref().map(tokio::runtime::Handle::enter);
        this.future.as_mut().poll(context)
    }
}

#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(dead_code, reason = "the redis level uses only park_on")
)]
impl DbRuntime {
    /// A future that resolves at `deadline`, on this runtime's timer, whoever polls it (never,
    /// once the runtime has stopped).
    pub(crate) fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        let handle = self.handle();
        let stopped = handle.is_none();
        InContext::new(handle, async move {
            if stopped {
                return std::future::pending().await;
            }
            tokio::time::sleep_until(deadline.into()).await;
        })
    }

    /// Starts `future` on the runtime without waiting for it; it ends with the runtime.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(future);
        }
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
