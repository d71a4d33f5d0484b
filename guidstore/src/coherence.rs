//! [`Coherence`]: how a process keeps its cache current when other processes write to the same
//! database, so that it can answer reads from memory and still be linearizable.
//!
//! One thread per store, the tailer, reads the change log after `applied` and applies it to the
//! cache, in revision order: when a read needs it, when it is woken (PostgreSQL `NOTIFY`, a local
//! commit), and every poll interval otherwise.
//!
//! A linearizable read first joins a *freshness round* ([`Coherence::join`]), as etcd's ReadIndex
//! does: a round that starts after the read arrived asks the database for its newest committed
//! revision R (one tiny query, run as a task on the backend's runtime), and every read that arrived
//! while the previous round ran shares the next one. Revisions are dense and commit in order (the
//! write transactions serialize on one row), so every change committed before the round began —
//! every write acknowledged anywhere before the read started — is at or below R. If the cache has
//! applied R already (the hot case: nothing changed), the round answers its reads at once, on the
//! runtime's thread: one wake-up per read, no other thread involved. The reads of a round share
//! one outcome (a `Broadcast`: one allocation per round, not per read). Otherwise its reads wait,
//! with R, until the tailer (woken) has applied the log up to R. Either way every cached entry then
//! reflects all changes up to R, and a miss reads the database itself, so a read sees that write or
//! a later one. A round that fails (the database is unreachable) fails its reads and those that
//! arrived while it ran; a tailer round that fails fails the reads waiting for it: no read is
//! served that cannot be proven current, and none waits for two failing rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pending::{Broadcast, Pending};
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
    /// Reads waiting for the next freshness round (it starts after they arrived): one outcome
    /// they all share (`None`: no read waits).
    next: Option<Broadcast>,
    /// Whether a freshness round is in flight: its task runs the next one when it ends.
    asking: bool,
    /// Reads whose round found revisions the cache had not applied: they wait for the tailer.
    behind: Vec<Behind>,
    woken: bool,
    stop: bool,
    /// Whether the tailer waits for work (only then does waking it signal the condvar).
    idle: bool,
    /// Whether the last round failed (to log a lost and a regained database once each).
    failing: bool,
}

/// Reads of one round that wait until the tailer has applied `revision`.
struct Behind {
    revision: u64,
    /// When their round began (nanoseconds since `origin`).
    started: u64,
    reads: Broadcast,
}

/// The reads a freshness round serves, from [`Coherence::begin_round`].
pub(crate) struct Round {
    reads: Broadcast,
    started: u64,
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
    /// there) and everything `tail` needs to read the log after what was applied and apply it
    /// (`tail` answers the revision applied then); the thread keeps `owner` alive until
    /// [`Coherence::stop`].
    pub(crate) fn start<T: Send + Sync + 'static>(
        owner: &Arc<T>,
        coherence: fn(&T) -> Option<&Coherence>,
        tail: fn(&T) -> Result<u64>,
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

    /// Joins the next freshness round: the result resolves once the cache reflects every change
    /// committed before this call. `true` with it: no round is in flight, the caller must run
    /// one ([`Coherence::begin_round`] … [`Coherence::end_round`], until `begin_round` finds
    /// no read waiting).
    pub(crate) fn join(&self) -> (Pending<()>, bool) {
        let mut state = self.lock();
        if state.stop {
            return (Pending::ready(Err(Error::Closed)), false);
        }
        let result = state.next.get_or_insert_with(Broadcast::new).subscribe();
        let start = !std::mem::replace(&mut state.asking, true);
        (result, start)
    }

    /// Starts a round: it serves the reads waiting now. `None` (and no round is in flight any
    /// more) when none wait.
    pub(crate) fn begin_round(&self) -> Option<Round> {
        let mut state = self.lock();
        let reads = state.next.take();
        match reads {
            Some(reads) if !state.stop => Some(Round { reads, started: self.now_nanos() }),
            // Stopped: dropping the broadcast answers Closed.
            _ => {
                state.asking = false;
                None
            }
        }
    }

    /// Ends a round with the newest committed revision it read (or why it could not), given the
    /// revision the cache has applied now.
    pub(crate) fn end_round(&self, round: Round, newest: Result<u64>, applied: u64) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let Round { reads, started } = round;
        match newest {
            Ok(newest) if newest <= applied => {
                // Nothing the cache lacks: the reads are current.
                self.synced_at.fetch_max(started, Ordering::AcqRel);
                reads.complete(Ok(()));
            }
            Ok(newest) => {
                let mut state = self.lock();
                if state.stop {
                    return;
                }
                state.behind.push(Behind { revision: newest, started, reads });
                state.woken = true;
                let idle = state.idle;
                drop(state);
                if idle {
                    self.signal.notify_one();
                }
            }
            Err(error) => {
                // Reads that arrived while it ran fail with it rather than wait for another round
                // against a database that just did not answer: each read waits for an unreachable
                // database once at most.
                let late = self.lock().next.take();
                if let Some(late) = late {
                    late.complete(Err(error.clone()));
                }
                reads.complete(Err(error));
            }
        }
    }

    /// Asks for a tailer round soon (a change was committed somewhere).
    pub(crate) fn wake(&self) {
        let mut state = self.lock();
        state.woken = true;
        let idle = state.idle;
        drop(state);
        if idle {
            self.signal.notify_one();
        }
    }

    fn now_nanos(&self) -> u64 {
        (self.origin.elapsed().as_nanos() as u64).max(1)
    }

    /// How long ago the last successful round began (`None`: none has yet).
    pub(crate) fn staleness(&self) -> Option<Duration> {
        match self.synced_at.load(Ordering::Acquire) {
            0 => None,
            at => Some(self.origin.elapsed().saturating_sub(Duration::from_nanos(at))),
        }
    }

    /// Rounds run so far: freshness rounds and the tailer's reads of the change log.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Stops the tailer; reads waiting for a round are answered [`Error::Closed`].
    pub(crate) fn stop(&self) {
        {
            let mut state = self.lock();
            state.stop = true;
            state.next = None;
            state.behind.clear();
        }
        self.signal.notify_all();
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            log::error!("guidstore: tailer thread panicked");
        }
    }

    fn run(&self, mut tail: impl FnMut() -> Result<u64>) {
        loop {
            {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        // Dropping the completers answers Closed.
                        state.behind.clear();
                        log::debug!("guidstore: tailer stopped");
                        return;
                    }
                    if !state.behind.is_empty() || state.woken {
                        break;
                    }
                    state.idle = true;
                    let (next, timeout) =
                        self.signal.wait_timeout(state, self.poll_interval).unwrap_or_else(PoisonError::into_inner);
                    state = next;
                    state.idle = false;
                    if timeout.timed_out() {
                        break;
                    }
                }
                state.woken = false;
            }
            let started = self.now_nanos();
            let result = tail();
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let failing = result.is_err();
            let was_failing = std::mem::replace(&mut self.lock().failing, failing);
            match &result {
                Ok(_) => {
                    self.synced_at.fetch_max(started, Ordering::AcqRel);
                    if was_failing {
                        log::warn!("guidstore: the change log can be read again; reads are served");
                    }
                }
                Err(error) if !was_failing => {
                    log::error!("guidstore: cannot read the change log ({error}); reads fail until it can")
                }
                Err(_) => {}
            }
            // The reads waiting for a revision this round applied are current; if it failed, all
            // of them fail with it.
            let (ready, result) = {
                let mut state = self.lock();
                let behind = std::mem::take(&mut state.behind);
                match result {
                    Ok(applied) => {
                        let (ready, waiting): (Vec<_>, Vec<_>) =
                            behind.into_iter().partition(|behind| behind.revision <= applied);
                        state.woken |= !waiting.is_empty();
                        state.behind = waiting;
                        (ready, Ok(()))
                    }
                    Err(error) => (behind, Err(error)),
                }
            };
            for behind in ready {
                if result.is_ok() {
                    self.synced_at.fetch_max(behind.started, Ordering::AcqRel);
                }
                behind.reads.complete(result.clone());
            }
        }
    }
}
