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

    /// A timer for pauses well under a millisecond (tokio's timers tick in milliseconds) on this
    /// runtime's reactor: see [`FineTimer`].
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn fine_timer(&self) -> FineTimer {
        FineTimer { handle: self.handle(), fd: None, failed: false }
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

/// A timer precise to microseconds: a Linux `timerfd` (opened at its first use, kept for the next
/// ones) watched by the runtime's reactor, so a pause costs a `timerfd_settime` and a `read`, and
/// the worker sleeps in its `epoll_wait` meanwhile. Elsewhere, or if the timerfd cannot be had,
/// a pause returns at once (it is an optimisation, never needed for correctness).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) struct FineTimer {
    handle: Option<tokio::runtime::Handle>,
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    #[cfg(not(target_os = "linux"))]
    fd: Option<()>,
    /// Whether opening it failed (not tried again).
    failed: bool,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl crate::backend::PauseTimer for FineTimer {
    fn sleep_until(&mut self, until: Instant) -> crate::backend::BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(pause) = until.checked_duration_since(Instant::now()).filter(|pause| !pause.is_zero()) else {
                return;
            };
            if let Err(error) = self.pause(pause).await {
                log::debug!("guidstore: a fine timer failed ({error}); rounds are not paced");
                self.fd = None;
                self.failed = true;
            }
        })
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl FineTimer {
    #[cfg(target_os = "linux")]
    async fn pause(&mut self, pause: Duration) -> std::io::Result<()> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        if self.failed {
            return Ok(());
        }
        let fd = match &mut self.fd {
            Some(fd) => fd,
            empty => {
                let Some(handle) = &self.handle else { return Ok(()) };
                // SAFETY: timerfd_create takes no pointers; it returns a new descriptor or -1.
                let raw =
                    unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
                if raw < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: `raw` is a descriptor just opened, owned by nothing else.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                let _entered = handle.enter();
                // SAFETY: the AsyncFd owns `owned`, so the descriptor stays open and the same for
                // as long as it lives.
                let registered =
                    unsafe { tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) };
                empty.insert(registered?)
            }
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(pause.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(pause.subsec_nanos().cast_signed()),
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call's duration; the old value is not asked for.
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut ready = fd.readable().await?;
            // Reading the expiration count clears the timer; an old readiness reads nothing
            // (WouldBlock) and is waited past.
            let read = ready.try_io(|fd| {
                let mut expirations = [0_u8; 8];
                // SAFETY: reads at most 8 bytes into the 8-byte buffer.
                let read = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), expirations.len()) };
                if read < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            });
            if let Ok(result) = read {
                return result;
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    async fn pause(&mut self, _pause: Duration) -> std::io::Result<()> {
        let _ = (&self.handle, &self.fd, self.failed);
        Ok(())
    }
}
