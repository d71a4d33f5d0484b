//! [`Feed`]: the change feed's fan-out inside one process. Every change this process learns of —
//! its own commits on SQLite, the change log as the tailer reads it on a shared database — is
//! published here once, in revision order. Consumers wait on the feed (no database query while
//! nothing happens: one tail per process serves all of them) and read recent changes from its
//! ring; a consumer further behind reads the change log itself.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::Change;
use crate::pending::{Completer, Pending, pending};

/// Changes kept in memory for consumers that are nearly caught up.
const RING: usize = 10_000;

pub(crate) struct Feed {
    inner: Mutex<Inner>,
}

struct Inner {
    /// The newest changes, consecutive, oldest first.
    recent: VecDeque<Change>,
    /// The newest revision published.
    newest: u64,
    /// Consumers waiting for a revision above theirs.
    waiting: Vec<(u64, Completer<()>)>,
    /// Changes published since the feed was made.
    published: u64,
}

impl Feed {
    /// A feed whose next change is `newest + 1`.
    pub(crate) fn new(newest: u64) -> Feed {
        Feed { inner: Mutex::new(Inner { recent: VecDeque::new(), newest, waiting: Vec::new(), published: 0 }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes changes that continue the feed (the first is `newest + 1`, consecutive) and wakes
    /// the consumers waiting for them. Changes at or below `newest` are ignored; a gap (changes
    /// the process will never see, trimmed from the log) starts the ring over after it.
    pub(crate) fn publish(&self, changes: &[Change]) {
        let mut inner = self.lock();
        let mut woken = false;
        for change in changes {
            if change.revision() <= inner.newest {
                continue;
            }
            if change.revision() != inner.newest + 1 {
                inner.recent.clear();
            }
            if inner.recent.len() == RING {
                inner.recent.pop_front();
            }
            inner.newest = change.revision();
            inner.recent.push_back(change.clone());
            inner.published += 1;
            woken = true;
        }
        if !woken {
            return;
        }
        let newest = inner.newest;
        let (ready, still): (Vec<_>, Vec<_>) =
            std::mem::take(&mut inner.waiting).into_iter().partition(|(after, _)| *after < newest);
        inner.waiting = still;
        drop(inner);
        for (_, done) in ready {
            done.complete(Ok(()));
        }
    }

    /// Resolves once a change after `after` has been published (at once if one has).
    pub(crate) fn wait_after(&self, after: u64) -> Pending<()> {
        let mut inner = self.lock();
        if inner.newest > after {
            return Pending::ready(Ok(()));
        }
        // Consumers that went away leave completed-to-nobody entries: drop them as they come.
        inner.waiting.retain(|(_, done)| !done.is_abandoned());
        let (done, result) = pending();
        inner.waiting.push((after, done));
        result
    }

    /// Up to `limit` changes after `after` from the ring, if the ring reaches back that far
    /// (`None`: read the change log).
    pub(crate) fn recent_after(&self, after: u64, limit: usize) -> Option<Vec<Change>> {
        let inner = self.lock();
        if after >= inner.newest {
            return Some(Vec::new());
        }
        let first = inner.recent.front()?.revision();
        if after + 1 < first {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        Some(inner.recent.iter().skip(skip).take(limit).cloned().collect())
    }

    /// Forgets the changes below `oldest` (the change log no longer keeps them), so that a
    /// consumer behind them is told so rather than served from memory.
    pub(crate) fn forget_before(&self, oldest: u64) {
        let mut inner = self.lock();
        while inner.recent.front().is_some_and(|change| change.revision() < oldest) {
            inner.recent.pop_front();
        }
    }

    /// The newest revision published.
    pub(crate) fn newest(&self) -> u64 {
        self.lock().newest
    }

    /// Consumers waiting now, and changes published so far.
    pub(crate) fn counts(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.waiting.len(), inner.published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Guid, Op};

    fn change(revision: u64) -> Change {
        Change::remove(revision, Op::Delete, 0, Guid::random())
    }

    fn revisions(changes: &[Change]) -> Vec<u64> {
        changes.iter().map(Change::revision).collect()
    }

    #[test]
    fn waiting_consumers_wake_on_the_next_change_and_read_it_from_the_ring() {
        let feed = Feed::new(5);
        let waiting = feed.wait_after(5);
        let thread = std::thread::spawn(move || waiting.wait());
        feed.publish(&[change(5), change(6), change(7)]);
        thread.join().unwrap().unwrap();
        assert!(matches!(feed.wait_after(6).wait(), Ok(())));
        assert_eq!(revisions(&feed.recent_after(5, 10).unwrap()), [6, 7]);
        assert_eq!(revisions(&feed.recent_after(6, 10).unwrap()), [7]);
        assert_eq!(feed.recent_after(7, 10).unwrap().len(), 0);
        assert!(feed.recent_after(4, 10).is_none(), "revision 5 was never in the ring");
    }

    #[test]
    fn the_ring_keeps_the_newest_changes_and_a_gap_starts_it_over() {
        let feed = Feed::new(0);
        let changes: Vec<_> = (1..=RING as u64 + 10).map(change).collect();
        feed.publish(&changes);
        assert!(feed.recent_after(5, 1).is_none());
        assert_eq!(revisions(&feed.recent_after(10, 2).unwrap()), [11, 12]);
        feed.publish(&[change(RING as u64 + 100)]);
        assert!(feed.recent_after(RING as u64 + 10, 5).is_none());
        assert_eq!(revisions(&feed.recent_after(RING as u64 + 99, 5).unwrap()), [RING as u64 + 100]);
        assert_eq!(feed.counts(), (0, RING as u64 + 11));
    }
}
