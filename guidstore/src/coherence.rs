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
//!
//! **Pacing** (group commit for reads). Under load rounds run back to back, one per round trip,
//! each carrying only the few reads that arrived during the previous one. So when reads already
//! wait as a round ends and that round carried several reads, the next one begins a little later
//! ([`Coherence::pace`]: [`pause_for`] grows with the reads the last round carried, up to
//! [`MAX_PAUSE`], and never runs past the waiting reads' deadline), and one query serves the
//! reads that arrive meanwhile too. After a round of one read (a lone client) the next begins at
//! once. The argument above is untouched: a round still takes its reads when it begins and only
//! then sends its query, so every read it serves arrived before the query was sent.
//!
//! **The round carries the timeout**, not the read: a read arms no timer of its own. Each round
//! has a deadline, `opened + timeout`, where `opened` is when its first read arrived (the clock
//! read by the read that found the round's list of reads empty, so none is failed before the
//! first has waited the timeout). Its query is bounded
//! by that deadline, and if the cache is behind, a watchdog ([`Watch`], one timer per such round) fails its reads at the deadline unless the tailer has
//! caught up first. Why a read that joins at instant `a` is answered by `a + timeout`:
//! - Its round's `opened` is at most `a`: `opened` is set, under the lock, by the read that finds
//!   the round's list of waiting reads empty (the previous round took it, or none was in flight),
//!   and every other read joins that list under the same lock, later. So the deadline
//!   `D = opened + timeout ≤ a + timeout`.
//! - Its round begins once the previous round ended, after a pause that ends by `D` at the
//!   latest; the previous round's query was bounded by its own deadline, which is no later than
//!   `D` (its first read arrived before it began, so before this round's list was started). A
//!   round that begins at or after `D` fails at once; a previous round that fails fails this
//!   round's reads with it.
//! - Once begun, the round ends by `D`: its query answers, or fails at `D`; if the cache is
//!   behind, the tailer completes its reads, or the watchdog fails them at `D` (the first outcome
//!   wins; the other is ignored).
//!
//! The only waits past `D` are the runtime's scheduling of the round's task and timers: CPU time,
//! never a database. A front-end that must also bound a cache miss after the round gives it what is
//! left of the read's own budget (see guidstore-server's `store_io::get`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pending::{Broadcast, Pending};
use crate::{Error, Result};

/// How long a round waits before it begins per read that the previous round carried beyond the
/// first (see [`pause_for`]).
const PAUSE_PER_READ: Duration = Duration::from_micros(20);

/// The longest wait before a round begins (see [`pause_for`]).
const MAX_PAUSE: Duration = Duration::from_micros(200);

/// How long to wait before beginning a round that follows one that carried `carried` reads, so
/// that one query serves more reads under load (group commit for reads): nothing after a round of
/// one read (a lone client pays no latency), then [`PAUSE_PER_READ`] per further read, up to
/// [`MAX_PAUSE`]. The busier the rounds, the longer the pause, and so the more reads the next one
/// carries: under load rounds settle at one per `MAX_PAUSE` plus a round trip.
pub(crate) fn pause_for(carried: usize) -> Duration {
    let extra = u32::try_from(carried.saturating_sub(1)).unwrap_or(u32::MAX);
    PAUSE_PER_READ.saturating_mul(extra).min(MAX_PAUSE)
}

pub(crate) struct Coherence {
    state: Mutex<State>,
    signal: Condvar,
    poll_interval: Duration,
    /// How long a read may wait for its round in all (`None`: unbounded).
    timeout: Option<Duration>,
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
    /// When the first read in `next` joined (nanoseconds since `origin`): no read in it arrived
    /// before.
    opened: u64,
    /// How many reads `next` holds.
    joined: usize,
    /// How many reads the last round carried (to pace the next one: see [`pause_for`]).
    carried: usize,
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
    /// When its reads must have been answered (`None`: no timeout).
    deadline: Option<Instant>,
}

impl Round {
    /// When the round's query must have answered, and its reads been answered.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// The reads of a round that wait for the tailer, to be failed at their round's deadline if the
/// tailer has not answered them by then (see [`Watch::run`]).
pub(crate) struct Watch {
    reads: Pending<()>,
    expire: Expire,
    deadline: Instant,
}

/// Fails a round's reads (a broadcast answers its first outcome only).
struct Expire(crate::pending::BroadcastHandle);

impl Watch {
    /// When the reads fail unless answered before.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Waits until the reads are answered or `timer` (which resolves at [`Watch::deadline`]) fires;
    /// in the latter case fails them as unavailable.
    pub(crate) async fn run(self, timer: crate::backend::BoxFuture<'static, ()>) {
        let Watch { mut reads, expire, .. } = self;
        let mut timer = timer;
        let expired = std::future::poll_fn(|context| {
            if std::pin::Pin::new(&mut reads).poll(context).is_ready() {
                return std::task::Poll::Ready(false);
            }
            timer.as_mut().poll(context).map(|()| true)
        })
        .await;
        if expired {
            expire.0.finish(Err(crate::StorageError::transient(
                "the database did not answer in time (the change log was not applied by the read's deadline)",
            )
            .into()));
        }
    }
}

impl Coherence {
    /// A coherence that polls the log every `poll_interval` and whose rounds answer their reads
    /// within `timeout` of their arrival (see the module's comment).
    pub(crate) fn new(poll_interval: Duration, timeout: Option<Duration>) -> Coherence {
        Coherence {
            state: Mutex::new(State::default()),
            signal: Condvar::new(),
            poll_interval,
            timeout,
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
        let start = !std::mem::replace(&mut state.asking, true);
        if state.next.is_none() {
            // The first read of the next round: its deadline counts from now (one clock read per
            // round, not per read).
            state.opened = self.now_nanos();
        }
        state.joined += 1;
        let result = state.next.get_or_insert_with(Broadcast::new).subscribe();
        (result, start)
    }

    /// Starts a round: it serves the reads waiting now. `None` (and no round is in flight any
    /// more) when none wait.
    pub(crate) fn begin_round(&self) -> Option<Round> {
        let mut state = self.lock();
        let reads = state.next.take();
        state.carried = std::mem::take(&mut state.joined);
        match reads {
            Some(reads) if !state.stop => {
                let started = self.now_nanos();
                let deadline = self.deadline(&state);
                Some(Round { reads, started, deadline })
            }
            // Stopped: dropping the broadcast answers Closed.
            _ => {
                state.asking = false;
                None
            }
        }
    }

    /// Ends a round with the newest committed revision it read (or why it could not), given the
    /// revision the cache has applied now. A [`Watch`] when its reads wait for the tailer and the
    /// round has a deadline: the caller runs it, so that they fail at the deadline at the latest.
    #[must_use = "the reads waiting for the tailer are bounded only if the watch runs"]
    pub(crate) fn end_round(&self, round: Round, newest: Result<u64>, applied: u64) -> Option<Watch> {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let Round { reads, started, deadline } = round;
        match newest {
            Ok(newest) if newest <= applied => {
                // Nothing the cache lacks: the reads are current.
                self.synced_at.fetch_max(started, Ordering::AcqRel);
                reads.complete(Ok(()));
                None
            }
            Ok(newest) => {
                let watch = deadline.map(|deadline| Watch {
                    reads: reads.subscribe(),
                    expire: Expire(reads.handle()),
                    deadline,
                });
                let mut state = self.lock();
                if state.stop {
                    return None;
                }
                state.behind.push(Behind { revision: newest, started, reads });
                state.woken = true;
                let idle = state.idle;
                drop(state);
                if idle {
                    self.signal.notify_one();
                }
                watch
            }
            Err(error) => {
                // Reads that arrived while it ran fail with it rather than wait for another round
                // against a database that just did not answer: each read waits for an unreachable
                // database once at most.
                let late = {
                    let mut state = self.lock();
                    state.joined = 0;
                    state.next.take()
                };
                if let Some(late) = late {
                    late.complete(Err(error.clone()));
                }
                reads.complete(Err(error));
                None
            }
        }
    }

    /// When the reads waiting for the next round must have been answered (`None`: no timeout).
    fn deadline(&self, state: &State) -> Option<Instant> {
        self.timeout.map(|timeout| self.origin + Duration::from_nanos(state.opened) + timeout)
    }

    /// Until when the caller, about to begin a round at `now`, should wait first so that the round
    /// serves more reads (`None`: begin at once): [`pause_for`] the reads the last round carried,
    /// and never past the waiting reads' deadline. Only while reads already wait (rounds back to
    /// back): a read that finds no round in flight starts one at once.
    pub(crate) fn pace(&self, now: Instant) -> Option<Instant> {
        let state = self.lock();
        if state.next.is_none() || state.stop {
            return None;
        }
        let pause = pause_for(state.carried);
        if pause.is_zero() {
            return None;
        }
        let until = now + pause;
        Some(self.deadline(&state).map_or(until, |deadline| until.min(deadline)))
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
            state.joined = 0;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::{park_on, pending};

    /// A timer for [`Watch::run`] that fires `after` from now, on a thread of its own.
    fn timer(after: Duration) -> crate::backend::BoxFuture<'static, ()> {
        let (completer, fired) = pending::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            completer.complete(Ok(()));
        });
        Box::pin(async move {
            let _ = fired.await;
        })
    }

    #[test]
    fn a_round_is_due_one_timeout_after_its_first_read_arrived_however_late_it_begins() {
        let timeout = Duration::from_millis(400);
        let coherence = Coherence::new(Duration::from_secs(3600), Some(timeout));
        let before = Instant::now();
        let (_read, start) = coherence.join();
        assert!(start, "no round was in flight");
        let after = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let round = coherence.begin_round().expect("a read waits");
        let deadline = round.deadline().expect("bounded");
        assert!(deadline >= before + timeout && deadline <= after + timeout, "{deadline:?}");
        // A read that joins while the round runs starts the next round's list: due one timeout
        // after it joined (not after this round began, which would cut its wait short).
        let joining = Instant::now();
        let (_late, start) = coherence.join();
        assert!(!start, "a round is in flight");
        let began = Instant::now();
        assert!(coherence.end_round(round, Ok(0), 0).is_none(), "the cache is current");
        std::thread::sleep(Duration::from_millis(50));
        let next = coherence.begin_round().expect("the late read waits");
        let due = next.deadline().expect("bounded");
        assert!(due >= joining + timeout && due <= began + timeout, "{due:?}");
        assert!(coherence.end_round(next, Ok(0), 0).is_none());
        assert!(coherence.begin_round().is_none(), "no read waits");
    }

    #[test]
    fn the_pause_grows_with_the_reads_the_last_round_carried_up_to_a_bound() {
        assert_eq!(pause_for(0), Duration::ZERO);
        assert_eq!(pause_for(1), Duration::ZERO, "a lone client pays no latency");
        assert_eq!(pause_for(2), PAUSE_PER_READ);
        assert_eq!(pause_for(11), PAUSE_PER_READ * 10);
        assert_eq!(pause_for(10_000), MAX_PAUSE);
        assert_eq!(pause_for(usize::MAX), MAX_PAUSE);
        assert!(MAX_PAUSE <= Duration::from_micros(300), "a pause stays short: {MAX_PAUSE:?}");
    }

    /// `count` reads join; a round begins and carries them; `late` more join while it runs; it
    /// ends (the cache is current). The reads that joined, first the round's, then the late ones.
    fn run_round(coherence: &Coherence, count: usize, late: usize) -> (Vec<Pending<()>>, Vec<Pending<()>>) {
        let carried: Vec<_> = (0..count).map(|_| coherence.join().0).collect();
        let round = coherence.begin_round().expect("reads wait");
        let late: Vec<_> = (0..late).map(|_| coherence.join().0).collect();
        assert!(coherence.end_round(round, Ok(0), 0).is_none());
        (carried, late)
    }

    #[test]
    fn a_round_is_paced_only_after_a_round_of_several_reads_and_while_reads_wait() {
        let coherence = Coherence::new(Duration::from_secs(3600), Some(Duration::from_secs(2)));
        // The clock is the caller's: any instant will do.
        let now = Instant::now() + Duration::from_secs(1);
        assert_eq!(coherence.pace(now), None, "no read waits");
        // A round of one read, another waiting: the next round begins at once.
        let (carried, _late) = run_round(&coherence, 1, 1);
        assert!(carried.into_iter().all(|read| read.wait().is_ok()));
        assert_eq!(coherence.pace(now), None, "the last round carried one read");
        // That one now begins; five more join meanwhile.
        let round = coherence.begin_round().expect("the late read waits");
        let late: Vec<_> = (0..5).map(|_| coherence.join().0).collect();
        assert!(coherence.end_round(round, Ok(0), 0).is_none());
        assert_eq!(coherence.pace(now), None, "the last round carried one read");
        // A round of five reads: the next one waits four steps for more.
        let round = coherence.begin_round().expect("five reads wait");
        assert!(coherence.pace(now).is_none(), "no read waits while the round runs");
        let _waiting = coherence.join().0;
        assert!(coherence.end_round(round, Ok(0), 0).is_none());
        assert!(late.into_iter().all(|read| read.wait().is_ok()));
        assert_eq!(coherence.pace(now), Some(now + PAUSE_PER_READ * 4));
        assert_eq!(coherence.pace(now + MAX_PAUSE), Some(now + MAX_PAUSE + PAUSE_PER_READ * 4), "from the given now");
        // Once no read waits, nothing to pace.
        let round = coherence.begin_round().expect("a read waits");
        assert!(coherence.end_round(round, Ok(0), 0).is_none());
        assert_eq!(coherence.pace(now), None);
    }

    #[test]
    fn a_pause_never_runs_past_the_waiting_reads_deadline() {
        let timeout = Duration::from_millis(100);
        let coherence = Coherence::new(Duration::from_secs(3600), Some(timeout));
        let (_carried, _late) = run_round(&coherence, 50, 0);
        let before = Instant::now();
        let _waiting = coherence.join().0;
        let after = Instant::now();
        // Long after the read joined (a clock that jumped, a stalled thread): the pause ends at its deadline.
        let late = after + timeout;
        let until = coherence.pace(late).expect("reads wait after a busy round");
        assert!(until >= before + timeout && until <= after + timeout, "{until:?}");
        assert!(until < late + MAX_PAUSE);
        // Well before it: the full pause.
        assert_eq!(coherence.pace(before), Some(before + MAX_PAUSE));
    }

    #[test]
    fn a_failed_round_leaves_no_count_of_the_reads_it_failed() {
        let coherence = Coherence::new(Duration::from_secs(3600), Some(Duration::from_secs(2)));
        let (_reads, _) = (coherence.join().0, ());
        let round = coherence.begin_round().expect("a read waits");
        let late: Vec<_> = (0..7).map(|_| coherence.join().0).collect();
        assert!(coherence.end_round(round, Err(crate::StorageError::transient("down").into()), 0).is_none());
        assert!(late.into_iter().all(|read| read.wait().is_err()), "the late reads fail with the round");
        // The next round carries only the read that joins after: one read, so no pause after it.
        let _next = coherence.join().0;
        let round = coherence.begin_round().expect("a read waits");
        let _after = coherence.join().0;
        assert!(coherence.end_round(round, Ok(0), 0).is_none());
        assert_eq!(coherence.pace(Instant::now()), None);
    }

    #[test]
    fn reads_left_behind_with_no_tailer_fail_at_their_rounds_deadline() {
        let timeout = Duration::from_millis(200);
        let coherence = Coherence::new(Duration::from_secs(3600), Some(timeout));
        let joined = Instant::now();
        let (read, _) = coherence.join();
        let round = coherence.begin_round().expect("a read waits");
        // The database is at revision 5, the cache at 0, and no tailer runs to catch up.
        let watch = coherence.end_round(round, Ok(5), 0).expect("its reads wait for the tailer");
        let deadline = watch.deadline();
        park_on(watch.run(timer(deadline.saturating_duration_since(Instant::now()))));
        let error = read.wait().unwrap_err();
        assert_eq!(error.code(), crate::Code::Unavailable, "{error}");
        let waited = joined.elapsed();
        assert!(waited >= timeout && waited < timeout + Duration::from_secs(1), "{waited:?}");
    }

    #[test]
    fn a_watch_whose_reads_were_answered_leaves_them_answered() {
        let coherence = Coherence::new(Duration::from_secs(3600), Some(Duration::from_secs(60)));
        let (read, _) = coherence.join();
        let round = coherence.begin_round().expect("a read waits");
        let watch = coherence.end_round(round, Ok(5), 0).expect("its reads wait for the tailer");
        // What the tailer does once it has applied revision 5.
        let behind = std::mem::take(&mut coherence.lock().behind);
        for behind in behind {
            behind.reads.complete(Ok(()));
        }
        // Returns at once (the reads are answered), not after the minute-long timer.
        let started = Instant::now();
        park_on(watch.run(timer(Duration::from_secs(60))));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(read.wait().is_ok());
    }
}
