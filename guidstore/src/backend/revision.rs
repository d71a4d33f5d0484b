//! The connection on which a network backend's freshness rounds read the newest revision: one of
//! its own, outside the pool, with its statement prepared once, so that a round is the
//! statement's one round trip and nothing else (no pool checkout, no statement lookup, none of a
//! pool's reset statements). Rounds run one at a time per store, so one connection serves them
//! all; a caller that finds it busy (a `/metrics` scrape during a round) uses the pool instead.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::BoxFuture;
use crate::{Error, Result};

/// A revision connection given up: after a call on it failed or was abandoned (a connection in
/// an unknown state is not used again), or when the store closed while a call held it.
pub(crate) trait Discard {
    /// Closes it without waiting.
    fn discard(self);
}

/// Where the revision connection is.
enum State<C> {
    /// Not connected (yet, or since a call on it failed): the next round connects.
    Empty,
    /// Connected and idle.
    Idle(C),
    /// A call is using it.
    Busy,
}

/// The revision connection's slot.
pub(crate) struct RevisionSlot<C: Discard>(Mutex<State<C>>);

impl<C: Discard> RevisionSlot<C> {
    pub(crate) fn new() -> RevisionSlot<C> {
        RevisionSlot(Mutex::new(State::Empty))
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // The state is replaced whole under the lock: a poisoned lock still holds a valid one.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection for one call (its `connection` is `None` when not connected yet), or
    /// `None` while another call holds it.
    fn lease(&self) -> Option<RevisionLease<'_, C>> {
        let connection = match std::mem::replace(&mut *self.lock(), State::Busy) {
            State::Idle(connection) => Some(connection),
            State::Empty => None,
            State::Busy => return None,
        };
        Some(RevisionLease { slot: self, connection, released: false })
    }

    /// Empties the slot (the store closes): the idle connection, for the caller to close. A call
    /// holding it discards it when it ends.
    pub(crate) fn take_idle(&self) -> Option<C> {
        match std::mem::replace(&mut *self.lock(), State::Empty) {
            State::Idle(connection) => Some(connection),
            State::Empty | State::Busy => None,
        }
    }

    /// The newest committed revision, one round trip (a freshness round): `query` of `backend` on
    /// the revision connection (made by `connect` first if there is none), or `pooled` while
    /// another call holds it. A failure that `retryable` accepts is tried once more on a new
    /// connection, as the backends' pooled calls are.
    pub(crate) async fn read<'a, B: Sync>(
        &'a self,
        backend: &'a B,
        retryable: fn(&Error) -> bool,
        connect: for<'b> fn(&'b B) -> BoxFuture<'b, Result<C>>,
        query: for<'b> fn(&'b B, &'b mut C) -> BoxFuture<'b, Result<u64>>,
        pooled: impl FnOnce() -> BoxFuture<'a, Result<u64>>,
    ) -> Result<u64> {
        let mut retried = false;
        loop {
            let Some(mut lease) = self.lease() else { return pooled().await };
            let answer = async {
                let connection = match &mut lease.connection {
                    Some(connection) => connection,
                    empty => empty.insert(connect(backend).await?),
                };
                query(backend, connection).await
            };
            match answer.await {
                Ok(revision) => {
                    lease.release();
                    return Ok(revision);
                }
                Err(error) if !retried && retryable(&error) => {
                    log::debug!(
                        "guidstore: reading the revision failed ({error}); trying once more on a new connection"
                    );
                    retried = true;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// [`State::Busy`] for as long as a call holds the revision connection: it goes back to the slot
/// only through [`RevisionLease::release`] after a call that succeeded. Dropped otherwise (the
/// call failed, or was abandoned when its deadline passed), the connection is discarded and the
/// next round makes a new one.
struct RevisionLease<'a, C: Discard> {
    slot: &'a RevisionSlot<C>,
    connection: Option<C>,
    released: bool,
}

impl<C: Discard> RevisionLease<'_, C> {
    fn release(mut self) {
        self.released = true;
        let connection = self.connection.take();
        let mut state = self.slot.lock();
        // Only while the slot still says the lease has it: a close emptied it meanwhile.
        if matches!(*state, State::Busy) {
            *state = connection.map_or(State::Empty, State::Idle);
        } else if let Some(connection) = connection {
            drop(state);
            connection.discard();
        }
    }
}

impl<C: Discard> Drop for RevisionLease<'_, C> {
    fn drop(&mut self) {
        if !self.released {
            *self.slot.lock() = State::Empty;
            if let Some(connection) = self.connection.take() {
                connection.discard();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::StorageError;
    use crate::pending::park_on;

    struct Connection(Arc<AtomicUsize>);

    impl Discard for Connection {
        fn discard(self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A backend whose query fails its first `failures` tries.
    #[derive(Default)]
    struct Backend {
        discarded: Arc<AtomicUsize>,
        connects: AtomicUsize,
        tries: AtomicUsize,
        failures: usize,
    }

    impl Backend {
        fn connect(&self) -> BoxFuture<'_, Result<Connection>> {
            self.connects.fetch_add(1, Ordering::Relaxed);
            let connection = Connection(Arc::clone(&self.discarded));
            Box::pin(async move { Ok(connection) })
        }

        fn query(&self) -> BoxFuture<'_, Result<u64>> {
            let tried = self.tries.fetch_add(1, Ordering::Relaxed);
            let answer = if tried < self.failures { Err(StorageError::transient("lost").into()) } else { Ok(7) };
            Box::pin(async move { answer })
        }

        fn counts(&self) -> (usize, usize) {
            (self.connects.load(Ordering::Relaxed), self.discarded.load(Ordering::Relaxed))
        }
    }

    fn transient(_: &Error) -> bool {
        true
    }

    fn read(slot: &RevisionSlot<Connection>, backend: &Backend) -> Result<u64> {
        park_on(slot.read(
            backend,
            transient,
            |backend| backend.connect(),
            |backend, _| backend.query(),
            || Box::pin(async { Ok(5) }),
        ))
    }

    #[test]
    fn a_connection_is_kept_after_a_success_and_discarded_after_a_failure_then_tried_once_more() {
        let slot = RevisionSlot::new();
        let backend = Backend::default();
        assert_eq!(read(&slot, &backend).unwrap(), 7);
        assert_eq!(read(&slot, &backend).unwrap(), 7);
        assert_eq!(backend.counts(), (1, 0), "the idle connection served the second read");
        // The first try fails: its connection is discarded, the retry connects a new one.
        let backend = Backend { failures: 1, ..Backend::default() };
        assert_eq!(read(&slot, &backend).unwrap(), 7);
        assert_eq!(backend.counts(), (1, 0), "the slot's idle connection failed, the retry connected");
        // Two failures: the error, both connections discarded (the idle one counted by the
        // backend that made it), the slot empty.
        let (made_it, backend) = (backend, Backend { failures: 2, ..Backend::default() });
        assert!(read(&slot, &backend).is_err());
        assert_eq!(made_it.counts(), (1, 1));
        assert_eq!(backend.counts(), (1, 1), "the retry connected, and its connection was discarded");
        assert!(slot.take_idle().is_none());
    }

    #[test]
    fn a_busy_slot_sends_the_caller_to_the_pool_and_a_close_meanwhile_discards_the_connection() {
        let slot = RevisionSlot::new();
        let backend = Backend::default();
        let mut lease = slot.lease().expect("free");
        assert!(slot.lease().is_none(), "busy");
        assert_eq!(read(&slot, &backend).unwrap(), 5, "answered by the pool");
        assert_eq!(backend.counts(), (0, 0));
        lease.connection = Some(Connection(Arc::clone(&backend.discarded)));
        assert!(slot.take_idle().is_none(), "a close while the call holds it");
        lease.release();
        assert_eq!(backend.counts(), (0, 1), "released after the close: discarded");
        assert!(slot.take_idle().is_none());
        // A lease dropped without release (a failed or abandoned call) discards and empties.
        let mut lease = slot.lease().expect("free");
        lease.connection = Some(Connection(Arc::clone(&backend.discarded)));
        drop(lease);
        assert_eq!(backend.counts(), (0, 2));
        assert!(slot.lease().is_some_and(|lease| lease.connection.is_none()), "empty: the next round connects");
    }
}
