//! [`Coherence`]: how a process keeps its cache current when other processes write to the same
//! database, so that it can answer reads from memory and still be linearizable.
//!
//! One thread per store, the tailer, reads the change log after `applied` and applies it to the
//! cache, in revision order. It runs a *round* when a reader asks for one, when it is woken
//! (PostgreSQL `NOTIFY`), and every poll interval otherwise.
//!
//! A linearizable read first calls [`Coherence::sync`]: it registers for the next round that starts
//! after the call, as etcd's ReadIndex does, so one small query serves every read that arrived
//! while the previous round ran. A round that succeeds has read the log up to a revision R that
//! includes every change committed before the round began (revisions are dense and commit in
//! order: the write transactions serialize on one row); once it has applied them, every cached
//! entry reflects all changes up to R, and a miss reads the database itself. So a read that starts
//! after a write was acknowledged anywhere sees that write or a later one. A round that fails
//! (the database is unreachable) fails the reads waiting on it, and those that arrived while it
//! ran: no read is served that cannot be proven current, and none waits for two failing rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pending::{Completer, Pending, pending};
use crate::{Error, Result};

pub(crate) struct Coherence {
    state: Mutex<State>,
    signal: Condvar,
    poll_interval: Duration,
    origin: Instant,
    /// When the last successful round began, in nanoseconds since `origin` (0: never).
    synced_at: AtomicU64,
    rounds: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Completer<()>>,
    woken: bool,
    stop: bool,
    /// Whether the last round failed (to log a lost and a regained database once each).
    failing: bool,
}

impl Coherence {
    pub(crate) fn new(poll_interval: Duration) -> Coherence {
        Coherence {
            state: Mutex::new(State::default()),
            signal: Condvar::new(),
            poll_interval,
            origin: Instant::now(),
            synced_at: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            thread: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the tailer on a thread of its own. `owner` holds this coherence (`coherence` finds it
    /// there) and everything `tail` needs to read the log after what was applied and apply it; the
    /// thread keeps `owner` alive until [`Coherence::stop`].
    pub(crate) fn start<T: Send + Sync + 'static>(
        owner: &Arc<T>,
        coherence: fn(&T) -> Option<&Coherence>,
        tail: fn(&T) -> Result<()>,
    ) -> Result<()> {
        let Some(this) = coherence(owner) else { return Ok(()) };
        let held = Arc::clone(owner);
        let thread = std::thread::Builder::new()
            .name("guidstore-tailer".to_owned())
            .spawn(move || {
                if let Some(coherence) = coherence(&held) {
                    coherence.run(|| tail(&held));
                }
            })
            .map_err(|source| Error::open("<tailer thread>", source))?;
        *this.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(())
    }

    /// Resolves once a round that started after this call has applied the log.
    pub(crate) fn sync(&self) -> Pending<()> {
        let (done, result) = pending();
        let mut state = self.lock();
        if state.stop {
            return Pending::ready(Err(Error::Closed));
        }
        state.waiting.push(done);
        drop(state);
        self.signal.notify_one();
        result
    }

    /// Asks for a round soon (a change was committed somewhere).
    pub(crate) fn wake(&self) {
        self.lock().woken = true;
        self.signal.notify_one();
    }

    /// How long ago the last successful round began (`None`: none has yet).
    pub(crate) fn staleness(&self) -> Option<Duration> {
        match self.synced_at.load(Ordering::Acquire) {
            0 => None,
            at => Some(self.origin.elapsed().saturating_sub(Duration::from_nanos(at))),
        }
    }

    /// Rounds run so far.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Stops the tailer; reads waiting for a round are answered [`Error::Closed`].
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.signal.notify_all();
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            log::error!("guidstore: tailer thread panicked");
        }
    }

    fn run(&self, mut tail: impl FnMut() -> Result<()>) {
        loop {
            let waiting = {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        // Dropping the completers answers Closed.
                        state.waiting.clear();
                        log::debug!("guidstore: tailer stopped");
                        return;
                    }
                    if !state.waiting.is_empty() || state.woken {
                        break;
                    }
                    let (next, timeout) =
                        self.signal.wait_timeout(state, self.poll_interval).unwrap_or_else(PoisonError::into_inner);
                    state = next;
                    if timeout.timed_out() {
                        break;
                    }
                }
                state.woken = false;
                std::mem::take(&mut state.waiting)
            };
            let started = self.origin.elapsed();
            let result = tail();
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let failing = result.is_err();
            let was_failing = std::mem::replace(&mut self.lock().failing, failing);
            match &result {
                Ok(()) => {
                    self.synced_at.store(started.as_nanos().max(1) as u64, Ordering::Release);
                    if was_failing {
                        log::warn!("guidstore: the change log can be read again; reads are served");
                    }
                }
                Err(error) if !was_failing => {
                    log::error!("guidstore: cannot read the change log ({error}); reads fail until it can")
                }
                Err(_) => {}
            }
            // Reads that arrived while a failing round ran fail with it rather than wait for
            // another round against a database that just did not answer: each read waits for an
            // unreachable database once at most.
            let waiting = match &result {
                Ok(()) => waiting,
                Err(_) => waiting.into_iter().chain(std::mem::take(&mut self.lock().waiting)).collect(),
            };
            for done in waiting {
                done.complete(result.clone());
            }
        }
    }
}
