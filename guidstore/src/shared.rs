//! [`Shared`]: the state a [`Store`](crate::Store) shares with its writer thread and, on a shared
//! database, its tailer — the backend, the cache levels, the change feed, the clock, the counters —
//! and the tailer's work: reading the change log and applying it to the cache and the feed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::cache::Cache;
use crate::coherence::Coherence;
use crate::feed::Feed;
use crate::pending::Pending;
use crate::{Clock, Result, StorageError};

/// Changes read from the log per query.
const PAGE: usize = 1_000;

/// How long a gap in the revisions (a change committed but not yet visible) is waited for.
const GAP_WAIT: Duration = Duration::from_millis(200);

/// What the store's callers, its writer thread and its tailer share.
pub(crate) struct Shared {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) cache: Cache,
    /// On a shared database, the tailer that keeps `cache` current.
    pub(crate) coherence: Option<Coherence>,
    /// The shared cache level between `cache` and the backend.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::cache::redis::RedisLevel>,
    /// The change feed's fan-out to waiting consumers.
    pub(crate) feed: Feed,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) default_ttl: u64,
    pub(crate) max_record_bytes: usize,
    pub(crate) purged: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) storage_errors: AtomicU64,
    pub(crate) storage_reads: AtomicU64,
    /// The timer that paces freshness rounds, kept between the tasks that run them (one at a
    /// time) so that it is made once (`None`: not made yet, or a task holds it).
    pub(crate) pause_timer: std::sync::Mutex<Option<Box<dyn crate::backend::PauseTimer>>>,
}

impl Shared {
    /// `result`, counted in `storage_errors` if it failed for a reason other than the caller's.
    pub(crate) fn count_error<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result
            && !error.is_client_error()
        {
            self.storage_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Resolves once the cache reflects every change committed before the call, by any process
    /// (see `coherence.rs`): at once without a shared database; else with the next freshness
    /// round, which this call starts (as a task on the backend's runtime) if none is in flight.
    pub(crate) fn sync(shared: &Arc<Shared>) -> Pending<()> {
        let Some(coherence) = &shared.coherence else { return Pending::ready(Ok(())) };
        let (result, start) = coherence.join();
        if start {
            let rounds = Arc::clone(shared);
            shared.backend.spawn(Box::pin(async move { rounds.freshness_rounds().await }));
        }
        result
    }

    /// Runs freshness rounds while reads wait for one, each after the pause that pacing asks for
    /// (see `Coherence::pace`): each asks for the newest revision once,
    /// bounded by the round's deadline; reads left waiting for the tailer are failed at that
    /// deadline by a watchdog task (see `coherence.rs` for why no read waits longer).
    async fn freshness_rounds(&self) {
        let Some(coherence) = &self.coherence else { return };
        // Taken at the first pause (made the first time): a task whose rounds carry one read each
        // never needs it.
        let mut timer = None;
        let mut first = true;
        loop {
            // The first round begins at once; the next ones may wait a little for more reads (see
            // `Coherence::pace`). A round's query is still sent after every read it serves arrived.
            if !std::mem::take(&mut first)
                && let Some(until) = coherence.pace(Instant::now())
                && let Some(timer) = timer.get_or_insert_with(|| self.take_pause_timer())
            {
                timer.sleep_until(until).await;
            }
            let Some(round) = coherence.begin_round() else { break };
            let newest = self.backend.revision_until(round.deadline()).await;
            let watch = coherence.end_round(round, newest, self.cache.applied());
            if let Some(watch) = watch
                && let Some(timer) = self.backend.timer(watch.deadline())
            {
                self.backend.spawn(Box::pin(watch.run(timer)));
            }
        }
        if let Some(Some(timer)) = timer {
            *self.pause_timer.lock().unwrap_or_else(PoisonError::into_inner) = Some(timer);
        }
    }

    /// The pacing timer kept by the last task that ran rounds, or a new one.
    fn take_pause_timer(&self) -> Option<Box<dyn crate::backend::PauseTimer>> {
        let kept = self.pause_timer.lock().unwrap_or_else(PoisonError::into_inner).take();
        kept.or_else(|| self.backend.pause_timer())
    }

    /// On a shared database, starts the tailer that keeps the cache current, and has the backend
    /// wake it when another process announces a commit (PostgreSQL `NOTIFY`).
    pub(crate) fn start_tailer(shared: &Arc<Shared>) -> Result<()> {
        if shared.coherence.is_none() {
            return Ok(());
        }
        Coherence::start(shared, |shared| shared.coherence.as_ref(), Shared::tail)?;
        // The backend holds the callback: a weak reference, or the store would never be freed.
        let weak = Arc::downgrade(shared);
        shared.backend.listen(Box::new(move || {
            if let Some(shared) = weak.upgrade()
                && let Some(coherence) = &shared.coherence
            {
                coherence.wake();
            }
        }));
        Ok(())
    }

    /// Reads the log after `applied` to its end and applies it to the cache (and the feed); the
    /// revision applied then.
    fn tail(&self) -> Result<u64> {
        let mut gap_since: Option<Instant> = None;
        loop {
            let applied = self.cache.applied();
            let changes = self.backend.changes_after(applied, PAGE)?;
            let consecutive = changes
                .iter()
                .zip(applied + 1..)
                .take_while(|(change, expected)| change.revision() == *expected)
                .count();
            if let Some(applied) = changes.get(..consecutive).filter(|applied| !applied.is_empty()) {
                // The shared cache's proof first: a read that waits for this round relies on it.
                #[cfg(feature = "redis")]
                if let Some(redis) = &self.redis {
                    redis.observe(applied);
                }
                self.cache.apply_log(applied);
                self.feed.publish(applied);
                gap_since = None;
            }
            if consecutive == changes.len() {
                if changes.len() < PAGE {
                    return Ok(self.cache.applied());
                }
                continue;
            }
            // The next change is missing: trimmed from the log, or committed but not yet visible.
            let applied = self.cache.applied();
            match self.backend.oldest_revision()? {
                Some(oldest) if oldest > applied + 1 => {
                    log::warn!(
                        "guidstore: the change log was trimmed past revision {applied} (oldest kept: {oldest}); \
                         the cache starts over"
                    );
                    // The shared cache's proof first, as for `observe`: once the cache says it
                    // applied `oldest - 1`, a round may let reads use Redis, and a sketch still
                    // at `applied` would prove entries current that changed in the trimmed part.
                    #[cfg(feature = "redis")]
                    if let Some(redis) = &self.redis {
                        redis.restart(oldest - 1);
                    }
                    self.cache.reset(oldest - 1);
                }
                _ => {
                    let since = *gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > GAP_WAIT {
                        return Err(StorageError::transient(format!(
                            "revision {} is missing from the change log",
                            applied + 1
                        ))
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}
